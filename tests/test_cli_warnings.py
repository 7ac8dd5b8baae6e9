"""Without --verbose, the notices the pinned stack prints are hidden in this process and in the worker processes
a run starts (Beam's DirectRunner workers inherit the environment)."""
import os
import subprocess
import sys

from mammo_tfx import cli

# google-api-core warns at import that Python 3.11 support ends in 2027: one of the notices every worker printed.
IMPORT_THAT_WARNS = "import google.api_core"


def _stderr_of_a_child() -> str:
    return subprocess.run([sys.executable, "-c", IMPORT_THAT_WARNS], capture_output=True, text=True,
                          env=dict(os.environ), check=True).stderr


def test_quiet_warnings_reach_child_processes_and_keep_the_users_own_filters(monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "default::ResourceWarning")
    assert "FutureWarning" in _stderr_of_a_child()
    cli.quiet_warnings()
    cli.quiet_warnings()  # idempotent: a second run in the same process adds nothing
    specs = os.environ["PYTHONWARNINGS"].split(",")
    assert specs[0] == "default::ResourceWarning" and specs[1:] == list(cli.QUIET_WARNINGS)
    assert "FutureWarning" not in _stderr_of_a_child()
