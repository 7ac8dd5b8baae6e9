"""Files of this checkout that the pipeline reads at run time (the project is installed editable, so `__file__`
is inside the checkout here and inside the image's copy on Kubeflow)."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(REPO_ROOT, "schemas", "schema.pbtxt")
SETUP_FILE = os.path.join(REPO_ROOT, "setup.py")
