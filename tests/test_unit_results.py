"""unit_evaluation.json is read back exactly as it was written (NaN AUCs of one-class slices as null)."""
import json
import math

import pytest

from mammo_tfx import names
from mammo_tfx.evaluation.unit_results import (ModelUnits, UnitEvaluation, UnitFigures, read_unit_evaluation,
                                               write_unit_evaluation)


def _evaluation() -> UnitEvaluation:
    overall = UnitFigures(slice=(), count=12, positives=4, negatives=8, auc=0.75, auc_interval=(0.5, 0.95),
                          operating={"threshold": 0.3, "tp": 3, "fp": 2, "tn": 6, "fn": 1})
    one_class = UnitFigures(slice=((names.DATASET, "mias"),), count=2, positives=0, negatives=2, auc=math.nan)
    candidate = ModelUnits(predictions_file="candidate/predictions.csv", thresholds={"image": 0.3, "breast": 0.25},
                           ece={"before": 0.2, "after": 0.05},
                           figures={"breast": {overall.slice: overall, one_class.slice: one_class}},
                           roc={"breast": [{"fpr": 0.0, "tpr": 0.0, "threshold": 1.0}]})
    return UnitEvaluation(uri="", split="test", breast_rule="mean", bootstrap_samples=100,
                          models={"candidate": candidate, "baseline": ModelUnits("baseline/predictions.csv")})


def test_round_trip(tmp_path):
    path = write_unit_evaluation(_evaluation(), str(tmp_path))
    json.loads(open(path).read())  # strict JSON
    read = read_unit_evaluation(str(tmp_path))
    assert read.uri == str(tmp_path)
    figures = read.candidate.figures["breast"]
    assert figures[()].auc_interval == (0.5, 0.95) and figures[()].operating["tp"] == 3
    assert math.isnan(figures[((names.DATASET, "mias"),)].auc)
    assert read.candidate.thresholds == {"image": 0.3, "breast": 0.25}
    assert read.baseline.predictions_file == "baseline/predictions.csv"


def test_a_document_without_a_candidate_is_refused(tmp_path):
    (tmp_path / names.UNIT_EVALUATION_FILE).write_text(json.dumps({"split": "test", "models": {}}))
    with pytest.raises(ValueError, match="not a unit evaluation"):
        read_unit_evaluation(str(tmp_path))
