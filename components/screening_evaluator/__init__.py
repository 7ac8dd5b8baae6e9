"""TFX component that evaluates the whole-image model per screening unit (image, breast, exam) and slice.

Only the artifact types are imported here (as for MammoExampleGen's), so that `components/__init__.py` can export
them without importing Beam and TensorFlow; the component is in `.component`.
"""
