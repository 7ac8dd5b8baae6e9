"""benchmarks/gpu_check.py: the no-GPU answer, and its real code path on a CPU with the test profile's tiny models."""
from __future__ import annotations

import pytest

from benchmarks import gpu_check


def test_without_a_gpu_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "gpu_devices", lambda: [])  # whatever this machine has
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.strip() == gpu_check.NO_GPU_MESSAGE


def test_it_needs_a_transform_graph(monkeypatch):
    monkeypatch.setattr(gpu_check, "gpu_devices", lambda: [])
    with pytest.raises(SystemExit):
        gpu_check.main(["--allow-cpu"])


@pytest.mark.e2e
def test_small_geometry_on_a_cpu_measures_every_row(toy_data, tmp_path, capsys):
    table_file = tmp_path / "gpu.md"
    assert gpu_check.main(["--allow-cpu", "--geometry", "small", "--steps", "2", "--eval-images", "4",
                           "--transform-graph", toy_data["transform_graph"], "--markdown", str(table_file)]) == 0
    table = table_file.read_text()
    assert table in capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| patch") or line.startswith("| whole image")]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| patch", "float32", "8"], ["| patch", "mixed float16", "8"],
        ["| whole image", "float32", "4"], ["| whole image", "mixed float16", "4"]]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert float(cells[3]) > 0 and float(cells[4]) > 0  # steps/s, images/s
        assert cells[5] == "n/a"  # no GPU memory on a CPU
        assert cells[6].endswith("%") and cells[7] in ("yes", "input-bound")
    assert "Evaluation pass (whole-image model, 4 flips, profile precision): 4 images in" in table
    assert "Op determinism (one whole-image step): ok." in table
