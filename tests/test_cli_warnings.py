"""Without --verbose a command's console holds only the tool's own lines: the quieting is set before anything heavy
is imported and reaches the processes a run starts; a failed check reads as one sentence."""
import contextlib
import io
import os
import re
import subprocess
import sys

import pytest

from mammo_tfx import cli
from pipeline.config import load_config
from tests.conftest import user_console

# google-api-core warns at import that Python 3.11 support ends in 2027: one of the notices every worker printed.
IMPORT_THAT_WARNS = "import google.api_core"
# A sentence, not a Python repr: no quotes, no brackets of a printed list.
REPR_MARKS = re.compile(r"['\"\[\]]")


def _stderr_of_a_child() -> str:
    return subprocess.run([sys.executable, "-c", IMPORT_THAT_WARNS], capture_output=True, text=True,
                          env=dict(os.environ), check=True).stderr


def test_quiet_warnings_reach_child_processes_where_the_users_own_filters_keep_precedence(monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "default::ResourceWarning")
    assert "FutureWarning" in _stderr_of_a_child()
    cli.quiet_warnings()
    cli.quiet_warnings()  # idempotent: a second run in the same process adds nothing
    assert os.environ["PYTHONWARNINGS"].split(",") == [cli.QUIET_WARNINGS, "default::ResourceWarning"]
    assert "FutureWarning" not in _stderr_of_a_child()


def _parser_output(args: list) -> str:
    """What the tool's own parser writes for `args`, in this process."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit):
        cli.build_parser().parse_args(args)
    return stderr.getvalue()


@pytest.mark.parametrize("args", [["synth", "--layout", "ddsm", "--out", "x"],
                                  ["synth", "--layout", "mias", "--out", "x", "--patients", "a few"],
                                  ["nope"]], ids=["wrong choice", "not a number", "unknown command"])
def test_a_failed_argument_check_prints_the_usage_and_one_sentence(monkeypatch, args):
    monkeypatch.setenv("COLUMNS", "100")  # as user_console's
    run = user_console(*args)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == _parser_output(args)
    error = run.stderr.splitlines()[-1]
    assert re.fullmatch(r"mammo-tfx( \S+)?: error: argument \S+: .+", error) and not REPR_MARKS.search(error), error


def test_an_unknown_profile_is_one_sentence_and_nothing_else(tmp_path):
    run = user_console("run", "--profile", "nope", "--data", f"folder={tmp_path}", "--out", str(tmp_path / "out"))
    with pytest.raises(KeyError) as raised:
        load_config("nope")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [cli.error_line(raised.value)]
    assert not REPR_MARKS.search(run.stderr), run.stderr


def test_error_lines_carry_the_message_not_its_repr():
    assert cli.error_line(KeyError("unknown profile nope")) == f"{cli.ERROR_PREFIX}unknown profile nope"
    missing = FileNotFoundError(2, "No such file or directory", "/data/overrides.yaml")
    assert cli.error_line(missing) == f"{cli.ERROR_PREFIX}/data/overrides.yaml: No such file or directory"
    assert cli.error_line(ValueError("--data expects LAYOUT=ROOT")) == f"{cli.ERROR_PREFIX}--data expects LAYOUT=ROOT"
