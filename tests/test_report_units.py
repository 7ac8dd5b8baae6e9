"""The report's and the console's screening units, rendered from a unit_evaluation.json written by the real writer
(synthetic exams) and a real screening record fitted on synthetic eval exams."""
from __future__ import annotations

import dataclasses
import io
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
from PIL import Image

from mammo_tfx.evaluation.calibration import fit_screening_record
from mammo_tfx.evaluation.screening import ScreeningOptions
from mammo_tfx.report.console import format_units_summary
from mammo_tfx.report.plots import roc_by_unit_png
from mammo_tfx.report.units import operating_point_text, units_table
from tests.conftest import screening_images, unit_evaluation_document

DATASETS = {"cbis-ddsm": 120, "inbreast": 80}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    record = fit_screening_record(screening_images(np.random.default_rng(31), DATASETS, views_showing=2),
                                  ScreeningOptions(target_value=0.85))
    test_images = screening_images(np.random.default_rng(32), DATASETS, views_showing=2)
    units = unit_evaluation_document(str(tmp_path_factory.mktemp("units")), {"candidate": test_images},
                                     thresholds=record.thresholds)
    return record, units


def test_console_prints_auc_per_dataset_per_unit_and_the_operating_point(written) -> None:
    record, units = written
    text = format_units_summary(units, record.to_dict())
    lines = text.splitlines()
    assert lines[0] == "screening units (test split; breast = mean of its views, exam = max of its breasts):"
    assert lines[1].split() == ["slice", "images", "breasts", "exams", "AUC", "image", "AUC", "breast", "AUC", "exam"]
    for slice_name, key in (("Overall", ()), ("dataset=inbreast", (("dataset", "inbreast"),))):
        row = next(line for line in lines if line.startswith(slice_name + " "))
        breast = units.candidate.figures["breast"][key]
        image = units.candidate.figures["image"][key]
        assert f"{breast.auc:.3f} [{breast.auc_interval[0]:.3f}, {breast.auc_interval[1]:.3f}]" in row
        assert f"{image.auc:.3f} [" in row
        assert row.split()[1:4] == [str(image.count), str(breast.count), str(units.candidate.figures["exam"][key].count)]
    # Datasets at exam level too (a woman's exam lies in one dataset).
    assert any(line.startswith("dataset=cbis-ddsm") for line in lines)
    assert ("operating point: sensitivity 0.85 on the eval split; calibration platt (fitted on the eval split); "
            "breast score = mean of its views") in lines
    assert f"thresholds: image {record.thresholds['image']:.4f}, breast {record.thresholds['breast']:.4f}, " \
           f"exam {record.thresholds['exam']:.4f}" in lines
    operating = units.candidate.figures["breast"][()].operating
    low, high = operating["sensitivity_interval"]
    assert (f"  test breast: sensitivity {operating['sensitivity']:.3f} [{low:.3f}, {high:.3f}], specificity "
            f"{operating['specificity']:.3f}") in text
    # Without the export's record, the thresholds of the document, and no invented target.
    assert operating_point_text(units, None)[0] == \
        "operating point: thresholds of the unit evaluation (the export records no target)"


def test_unit_table_and_roc_figure(written) -> None:
    _, units = written
    table = units_table(units)
    assert list(table["Slice"]) == ["Overall", "dataset=cbis-ddsm", "dataset=inbreast"]
    overall = table.iloc[0]
    assert (overall["image n"], overall["breast n"]) == (str(2 * sum(DATASETS.values())), str(sum(DATASETS.values())))
    assert overall["breast positives"] == str(units.candidate.figures["breast"][()].positives)
    assert overall["exam sensitivity"].startswith(f"{units.candidate.figures['exam'][()].operating['sensitivity']:.3f} [")
    png = roc_by_unit_png(units)
    assert Image.open(io.BytesIO(png)).format == "PNG"
    # No curves (e.g. one-class units): no figure rather than an empty one.
    empty = dataclasses.replace(units.candidate, roc={})
    assert roc_by_unit_png(dataclasses.replace(units, models={"candidate": empty})) is None
