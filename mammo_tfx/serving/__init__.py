"""Model serving: a TF Serving-compatible REST server for the pushed model versions, and warm-up files.

`serve()` runs `tensorflow_model_server` when it is installed and the built-in `ModelServer` otherwise.
"""
from mammo_tfx.serving.limits import RequestLimits
from mammo_tfx.serving.server import ModelServer, serve
from mammo_tfx.serving.warmup import write_warmup_file

__all__ = ["ModelServer", "RequestLimits", "serve", "write_warmup_file"]
