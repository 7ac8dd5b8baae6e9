"""A run that stops on bad input names a report that still exists afterwards and shows the causes on the console."""
import csv
import os
import re
import subprocess
import sys

import pytest

from mammo_tfx import synth

pytestmark = pytest.mark.e2e  # the CLI's pipeline run in a child process


def test_a_run_where_every_record_is_broken_names_an_existing_report_and_shows_grouped_causes(tmp_path) -> None:
    data = tmp_path / "cbis"
    synth.generate("cbis-ddsm", data, patients=2, seed=1, scale=0.25)
    for scan in data.rglob("*.dcm"):
        scan.unlink()
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "mammo_tfx.cli", "run", "--profile", "test", "--data", f"cbis-ddsm={data}",
         "--out", str(out)], capture_output=True, text=True, timeout=600)
    console = run.stdout + run.stderr
    assert run.returncode == 2, console
    listed = int(re.search(r"none of the (\d+) listed records could be ingested", console).group(1))
    report = re.search(r"see the quarantine report (\S+)\.", console).group(1)
    # Outside the artifact folders that TFX removed with the failed execution.
    assert report.startswith(os.path.join(str(out), "pipeline_root", "reports", "MammoExampleGen", ""))
    with open(report) as f:
        rows = list(csv.DictReader(f))
    assert listed > 0 and len(rows) == listed
    assert {row["status"] for row in rows} == {"quarantined"}
    # One group for all records: the listing finds every full image missing from the download.
    assert f"\n  {listed} x file not found: missing from the download (" in console, console
    assert os.path.exists(os.path.join(os.path.dirname(report), "summary.json"))
    # One reason for more than half of a dataset: said first, as a likely mismatch between data and rule.
    warning = (f"Likely a mismatch between the data and a rule: {listed} of the {listed} records listed for cbis-ddsm "
               "were quarantined for one reason")
    assert warning in console and console.index(warning) < console.index("none of the"), console
