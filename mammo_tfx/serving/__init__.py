"""Model serving: a TF Serving-compatible REST server for the pushed model versions, and warm-up files.

Import the submodules (`mammo_tfx.serving.server` for `serve()` and `ModelServer`, `.warmup`, `.limits`, ...):
the package itself imports nothing, so the Trainer writing a warm-up file does not load the HTTP server.
"""
