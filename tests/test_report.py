"""The evaluation report built from a real TFMA run: a tiny SavedModel scored on a few hundred tf.Examples.

The model's `serving_examples` signature returns two features of the example as `probability` and
`probability_single`, so every count TFMA reports can be recomputed here from the generated data.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from PIL import Image

from mammo_tfx import names
from mammo_tfx.evaluation.config import EvaluationConfig
from mammo_tfx.evaluation.calibration import fit_screening_record
from mammo_tfx.evaluation.gates import GateReport, GateResult, write_gate_report
from mammo_tfx.evaluation.screening import ScoredUnit, ScreeningOptions
from mammo_tfx.evaluation.tfma_results import roc_from_calibration_histogram, slice_name
from mammo_tfx.report import ReportFiles, format_console_summary, write_report, write_report_from_artifacts
from mammo_tfx.report.html import FAIRNESS_TABLE_ID, GATE_TABLE_ID, METRIC_TABLE_ID, SCREENING_TABLE_ID
from pipeline.evaluation import slicing_specs
from tests.conftest import unit_evaluation_document

pytestmark = pytest.mark.e2e  # every test reads a TFMA evaluation run on Beam

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
THRESHOLDS = (0.25, 0.5, 0.75)
# Scans per dataset: MIAS gets only normals (a one-class slice), "folder" too few scans for an AUC.
DATASET_SIZES = {"cbis-ddsm": 130, "inbreast": 110, "mias": 50, "folder": 8}
# Population features: MIAS says nothing of them ("unknown", one class); "70+", site 3 and implant "yes" are
# groups too small for the gate's rule below.
DEVICES = {"cbis-ddsm": "HOLOGIC, Inc. Selenia Dimensions", "inbreast": "SIEMENS Mammomat Inspiration",
           "mias": "unknown", "folder": "GE MEDICAL SYSTEMS Senographe Essential"}
SMALL_GROUPS = ("age_group=70+", "site=3", "implant=yes")

EVAL_CONFIG = """
model_specs { signature_name: "serving_examples" label_key: "label" model_type: "tf_generic" }
metrics_specs {
  output_names: ["probability", "probability_single"]
  metrics { class_name: "ExampleCount" }
  metrics { class_name: "AUC" config: '"num_thresholds": 200' }
  metrics { class_name: "AUCPrecisionRecall" config: '"num_thresholds": 200' }
  metrics { class_name: "SensitivityAtSpecificity" config: '"specificity": 0.9, "num_thresholds": 200' }
  metrics { class_name: "SpecificityAtSensitivity" config: '"sensitivity": 0.9, "num_thresholds": 200' }
  metrics { class_name: "Calibration" }
  metrics { class_name: "FallOut" config: '"thresholds": [0.25, 0.5, 0.75]' }
  metrics { class_name: "MissRate" config: '"thresholds": [0.25, 0.5, 0.75]' }
  metrics { class_name: "ConfusionMatrixAtThresholds" config: '"thresholds": [0.25, 0.5, 0.75]' }
  metrics { class_name: "ConfusionMatrixPlot" config: '"num_thresholds": 100' }
  metrics { class_name: "CalibrationPlot" config: '"num_buckets": 100' }
}
options {
  compute_confidence_intervals { value: true }
  include_default_metrics { value: false }
}
"""

GATE_CONFIG = EvaluationConfig(min_slice_size=20, min_examples_per_class=2, min_overall_auc=0.75)


def _gate(name: str, slice_key: tuple, value: float | None, bound: float, status: str, blocks: bool,
          detail: str) -> GateResult:
    return GateResult(name=name, unit="image", output=names.PROBABILITY, slice=slice_name(slice_key), metric="auc",
                      value=value, bound=bound, status=status, blocks_blessing=blocks, detail=detail,
                      margin=None if value is None else value - bound)


GATES = [
    _gate("overall_auc", (), 0.8, 0.75, "passed", False, "AUC above bound"),
    _gate("dataset_auc[inbreast]", (("dataset", "inbreast"),), 0.7, 0.9, "failed", True, "AUC below bound"),
    _gate("dataset_auc[mias]", (("dataset", "mias"),), None, 0.7, "insufficient", False, "one class only"),
    _gate("cross_auc", (("dataset", "inbreast"), ("density", 2)), 0.95, 0.5, "passed", False, ""),
]
GATE_REPORT = GateReport(blessed=False, gates=GATES, settings=GATE_CONFIG.gate_settings(),
                         evaluation_uri="unused-by-the-report", baseline_evaluated=False)
MIN_EXAMPLES = GATE_CONFIG.min_slice_size


@dataclass(frozen=True)
class Evaluation:
    uri: str
    scans: pd.DataFrame  # one row per example with its label, features and both model outputs


def _synthetic_scans(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for dataset, size in DATASET_SIZES.items():
        for index in range(size):
            label = 0 if dataset == "mias" else int(rng.random() < 0.4)
            spread = 0.12 if dataset == "inbreast" else 0.2
            score = float(np.clip(rng.normal(0.68 if label else 0.35, spread), 0.0, 1.0))
            single = float(np.clip(score + rng.normal(0.0, 0.15), 0.0, 1.0))
            known = dataset != "mias"
            rows.append({
                "label": label, "dataset": dataset, "density": index % 5, "view": ("CC", "MLO")[index % 2],
                "laterality": ("L", "R")[(index // 2) % 2],
                "abnormality_type": ("mass", "calcification")[index % 2] if label else ("none", "mass")[index % 3 == 0],
                "age_group": ("70+" if index % 40 == 39 else ("<50", "50-59", "60-69")[index % 3]) if known else "unknown",
                "site": ("3" if dataset == "folder" else ("1", "2")[index % 2]) if known else "unknown",
                "device": DEVICES[dataset],
                "implant": ("yes" if index % 25 == 7 else "no") if known else "unknown",
                "score": score, "score_single": single,
            })
    scans = pd.DataFrame(rows)
    # float32 as the model returns them; nudge values off the thresholds so "> threshold" cannot be a tie.
    for column in ("score", "score_single"):
        values = scans[column].to_numpy(np.float32)
        for threshold in THRESHOLDS:
            values[np.abs(values - threshold) < 1e-3] += np.float32(2e-3)
        scans[column] = values
    return scans


def _example(row: pd.Series) -> bytes:
    def ints(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def text(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    def floats(value: float) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))

    features = {"label": ints(row.label), "density": ints(row.density), "dataset": text(row.dataset),
                "view": text(row.view), "laterality": text(row.laterality),
                "abnormality_type": text(row.abnormality_type), "age_group": text(row.age_group),
                "site": text(row.site), "device": text(row.device), "implant": text(row.implant),
                "score": floats(row.score), "score_single": floats(row.score_single)}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


class _FeatureEchoModel(tf.Module):
    """Stands in for the whole-image model: the same signature name, input and output names."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        spec = {"score": tf.io.FixedLenFeature([], tf.float32), "score_single": tf.io.FixedLenFeature([], tf.float32)}
        parsed = tf.io.parse_example(examples, spec)
        return {"probability": parsed["score"], "probability_single": parsed["score_single"]}


@pytest.fixture(scope="session")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    root = tmp_path_factory.mktemp("tfma")
    scans = _synthetic_scans(np.random.default_rng(7))
    data_path = str(root / "test.tfrecord")
    with tf.io.TFRecordWriter(data_path) as writer:
        for row in scans.itertuples(index=False):
            writer.write(_example(row))
    model = _FeatureEchoModel()
    model_path = str(root / "model")
    tf.saved_model.save(model, model_path, signatures={"serving_examples": model.serve_examples})
    eval_config = text_format.Parse(EVAL_CONFIG, tfma.EvalConfig())
    eval_config.slicing_specs.extend(slicing_specs())  # the pipeline's own slices
    output_path = str(root / "evaluation")
    tfma.run_model_analysis(
        eval_shared_model=tfma.default_eval_shared_model(model_path, eval_config=eval_config),
        eval_config=eval_config, data_location=data_path, output_path=output_path)
    return Evaluation(uri=output_path, scans=scans)


@pytest.fixture(scope="session")
def gate_results_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Written by the ModelGate's own writer, as in a blessing artifact.
    return write_gate_report(GATE_REPORT, str(tmp_path_factory.mktemp("blessing")))


@pytest.fixture(scope="session")
def report(evaluation: Evaluation, gate_results_path: str, tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    # No explicit slice-size rule: the report must take the gate's (min_slice_size 20, 2 per class).
    return write_report(evaluation.uri, str(tmp_path_factory.mktemp("report")), gate_results_path)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Headless Chromium; installed through the project script when missing (the rendering check never skips)."""
    if not CHROMIUM.exists():
        subprocess.run(["sh", str(REPO_ROOT / "scripts" / "ensure_chromium.sh")], check=True, timeout=900)
    assert CHROMIUM.exists(), "scripts/ensure_chromium.sh did not install /usr/bin/chromium"
    return CHROMIUM


class _PageParser(HTMLParser):
    """Collects <img src> values and the cell texts of every <table id=...>."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        elif tag == "table" and attributes.get("id"):
            self._table = attributes["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse_page(html_path: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(Path(html_path).read_text(encoding="utf-8"))
    return parser


def _table_rows(parser: _PageParser, table_id: str) -> list[dict[str, str]]:
    header, *rows = parser.tables[table_id]
    return [dict(zip(header, row)) for row in rows]


def _tfma_metrics(evaluation_uri: str, output: str) -> dict[str, dict]:
    """TFMA's own view of the metrics (EvalResult), keyed by the report's slice label."""
    result = tfma.load_eval_result(evaluation_uri)
    by_label = {}
    for slice_key, _ in result.slicing_metrics:
        label = " & ".join(f"{column}={value}" for column, value in slice_key) or "Overall"
        by_label[label] = result.get_metrics_for_slice(slice_name=slice_key, output_name=output)
    return by_label


def _tfma_double(metrics: dict, name: str) -> float:
    value = metrics[name]
    return value["doubleValue"] if "doubleValue" in value else value["boundedValue"]["value"]


def test_report_writes_page_and_every_image_is_a_png(report: ReportFiles) -> None:
    page = _parse_page(report.html)
    assert sorted(page.images) == sorted(["roc_by_dataset.png", "auc_by_slice.png"]
                                         + [f"fairness_by_{feature}.png" for feature in names.FAIRNESS_FEATURES])
    for source in page.images:
        path = Path(report.html).parent / source  # relative to the page, as a browser resolves it
        assert str(path) == report.plots[source]
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width >= 400 and image.height >= 300
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 5.0, f"{source} looks blank"


def test_metric_table_holds_tfma_auc_and_counts(report: ReportFiles, evaluation: Evaluation) -> None:
    rows = {row["Slice"]: row for row in _table_rows(_parse_page(report.html), METRIC_TABLE_ID)}
    scans = evaluation.scans
    assert rows["Overall"]["n"] == str(len(scans))
    assert rows["Overall"]["Positives"] == str(int(scans["label"].sum()))
    for dataset, size in DATASET_SIZES.items():
        assert rows[f"dataset={dataset}"]["n"] == str(size)
    cross = scans[(scans["dataset"] == "cbis-ddsm") & (scans["density"] == 2)]
    assert rows["dataset=cbis-ddsm & density=2"]["n"] == str(len(cross))

    for output, column in (("probability", "AUC flip (TTA)"), ("probability_single", "AUC single")):
        tfma_metrics = _tfma_metrics(evaluation.uri, output)
        for label in ("Overall", "dataset=cbis-ddsm", "dataset=inbreast", "view=CC", "density=3"):
            cell = rows[label][column]
            assert cell.startswith(f"{_tfma_double(tfma_metrics[label], 'auc'):.3f} ["), (label, cell)
            lower, upper = (float(bound) for bound in cell.split("[")[1].rstrip("]").split(","))
            assert lower < float(cell.split()[0]) < upper  # the confidence interval brackets the value
    # AUC differs between the outputs (the single output has extra noise), so the columns are not swapped.
    assert rows["Overall"]["AUC flip (TTA)"] != rows["Overall"]["AUC single"]
    sens_column = "Sens@Spec flip (TTA)"
    expected = _tfma_double(_tfma_metrics(evaluation.uri, "probability")["Overall"], "sensitivity_at_specificity")
    assert rows["Overall"][sens_column].startswith(f"{expected:.3f}")


def test_one_class_and_tiny_slices_read_insufficient_not_tfma_zero(report: ReportFiles,
                                                                   evaluation: Evaluation) -> None:
    rows = {row["Slice"]: row for row in _table_rows(_parse_page(report.html), METRIC_TABLE_ID)}
    tfma_auc = _tfma_double(_tfma_metrics(evaluation.uri, "probability")["dataset=mias"], "auc")
    assert tfma_auc == 0.0  # what the report must not show as a result
    assert rows["dataset=mias"]["AUC flip (TTA)"] == "insufficient"
    assert rows["dataset=mias"]["AUC single"] == "insufficient"
    assert rows["dataset=mias"]["Note"] == "one class only"
    assert rows["dataset=folder"]["AUC flip (TTA)"] == "insufficient"
    assert rows["dataset=folder"]["Note"] == f"{DATASET_SIZES['folder']} examples < {MIN_EXAMPLES}"
    assert rows["dataset=inbreast"]["AUC flip (TTA)"] != "insufficient"


def _group(scans: pd.DataFrame, slice_label: str) -> pd.DataFrame:
    """The scans of a single-feature slice such as 'density=3' or 'age_group=60-69'."""
    column, value = slice_label.split("=", 1)
    return scans[scans[column].astype(str) == value]


def test_fairness_section_shows_auc_and_rates_per_group_of_each_population_feature(report: ReportFiles,
                                                                                   evaluation: Evaluation) -> None:
    rows = _table_rows(_parse_page(report.html), FAIRNESS_TABLE_ID)
    scans = evaluation.scans
    expected_groups = [f"{feature}={value}" for feature in names.FAIRNESS_FEATURES
                       for value in sorted(scans[feature].astype(str).unique(), key=lambda v: (not v.isdigit(), v))]
    # Every group of density, age group, site, device and implant, in the report's order, one row per output.
    assert [row["Slice"] for row in rows[::2]] == [row["Slice"] for row in rows[1::2]]
    assert sorted(row["Slice"] for row in rows[::2]) == sorted(expected_groups)
    assert [row["Slice"].split("=")[0] for row in rows[::2]] == sorted(
        (group.split("=")[0] for group in expected_groups), key=names.FAIRNESS_FEATURES.index)
    assert [row["Slice"] for row in rows[::2] if row["Slice"].startswith("age_group=")] == [
        "age_group=<50", "age_group=50-59", "age_group=60-69", "age_group=70+", "age_group=unknown"]
    tfma_by_output = {output: _tfma_metrics(evaluation.uri, output) for output in names.MODEL_OUTPUTS}
    checked_sufficient = set()
    for row in rows:
        group = _group(scans, row["Slice"])
        positives, negatives = group["label"] == 1, group["label"] == 0
        assert (row["n"], row["Positives"], row["Negatives"]) == (str(len(group)), str(positives.sum()),
                                                                  str(negatives.sum()))
        rate_columns = [f"{rate}@{threshold:g}" for threshold in THRESHOLDS for rate in ("FPR", "FNR")]
        if len(group) < MIN_EXAMPLES or min(positives.sum(), negatives.sum()) < GATE_CONFIG.min_examples_per_class:
            assert all(row[column] == "insufficient" for column in ["AUC", *rate_columns]), row
            assert row["Note"], row
            continue
        checked_sufficient.add(row["Slice"])
        output = names.PROBABILITY if row["Output"] == "flip (TTA)" else names.PROBABILITY_SINGLE
        score_column = "score" if output == names.PROBABILITY else "score_single"
        assert row["AUC"].startswith(f"{_tfma_double(tfma_by_output[output][row['Slice']], 'auc'):.3f} [")
        for threshold in THRESHOLDS:
            flagged = group[score_column] > threshold
            fp, fn = int((flagged & negatives).sum()), int((~flagged & positives).sum())
            assert row[f"FPR@{threshold:g}"] == f"{fp / negatives.sum():.3f} ({fp}/{negatives.sum()})"
            assert row[f"FNR@{threshold:g}"] == f"{fn / positives.sum():.3f} ({fn}/{positives.sum()})"
        assert row["Note"] == ""
    assert {"age_group=60-69", "site=1", "site=2", f"device={DEVICES['inbreast']}", "implant=no",
            "density=3"} <= checked_sufficient


def test_small_and_one_class_population_groups_read_insufficient(report: ReportFiles, evaluation: Evaluation) -> None:
    rows = {row["Slice"]: row for row in _table_rows(_parse_page(report.html), FAIRNESS_TABLE_ID)}
    for label in SMALL_GROUPS:
        size = len(_group(evaluation.scans, label))
        assert 0 < size < MIN_EXAMPLES
        assert rows[label]["AUC"] == rows[label]["FNR@0.5"] == "insufficient"
        assert rows[label]["Note"] == f"{size} examples < {MIN_EXAMPLES}"
    for label in ("age_group=unknown", "site=unknown", "implant=unknown"):  # MIAS alone: normals only
        assert rows[label]["Note"] == "one class only"
    # The metric table and the console summary judge these slices by the same rule.
    metric_rows = {row["Slice"]: row for row in _table_rows(_parse_page(report.html), METRIC_TABLE_ID)}
    assert all(metric_rows[label]["AUC flip (TTA)"] == "insufficient" for label in SMALL_GROUPS)
    assert metric_rows["age_group=60-69"]["AUC flip (TTA)"] != "insufficient"
    summary = {line.split()[0]: line.split() for line in format_console_summary(report.tables).splitlines()[2:]}
    assert summary["age_group=70+"][2:4] == ["insufficient", "insufficient"]
    assert summary["site=1"][2] != "insufficient"


def test_gate_results_are_listed_and_summarised_per_slice(report: ReportFiles) -> None:
    page = _parse_page(report.html)
    gates = _table_rows(page, GATE_TABLE_ID)
    assert [(gate["Gate"], gate["Status"]) for gate in gates] == [(g.name, g.status) for g in GATES]
    assert gates[1] == {"Gate": "dataset_auc[inbreast]", "Unit": "image", "Output": "probability", "Slice": "dataset=inbreast",
                        "Metric": "auc", "Value": "0.700", "Bound": "0.900", "Status": "failed",
                        "Blocks blessing": "yes", "Reason": "AUC below bound"}
    assert gates[2]["Value"] == "n/a"
    assert "Gate verdict: <b>NOT blessed</b>" in Path(report.html).read_text(encoding="utf-8")
    metric_rows = {row["Slice"]: row for row in _table_rows(page, METRIC_TABLE_ID)}
    assert metric_rows["Overall"]["Gate"] == "passed"
    assert metric_rows["dataset=inbreast"]["Gate"] == "failed"
    assert metric_rows["dataset=mias"]["Gate"] == "insufficient"
    assert metric_rows["dataset=inbreast & density=2"]["Gate"] == "passed"  # gate wrote "dataset=inbreast, density=2"
    assert metric_rows["dataset=cbis-ddsm"]["Gate"] == ""


def test_console_summary_lists_slices_with_both_aucs_and_gate(report: ReportFiles, evaluation: Evaluation) -> None:
    summary = format_console_summary(report.tables, report.gates, blessed=report.blessed)
    *lines, verdict = summary.splitlines()
    assert verdict == "gate verdict: NOT blessed (every bound per image)"
    assert lines[0].split() == ["slice", "n", "AUC", "flip", "(TTA)", "AUC", "single", "gate"]
    by_slice = {line.split()[0]: line.split() for line in lines[2:] if "&" not in line}
    overall = report.tables.metrics.query("slice == 'Overall' and metric == 'auc'").set_index("output")["value"]
    assert by_slice["Overall"] == ["Overall", str(sum(DATASET_SIZES.values())),
                                   f"{overall['probability']:.3f}", f"{overall['probability_single']:.3f}", "passed"]
    assert by_slice["dataset=mias"][2:] == ["insufficient", "insufficient", "insufficient"]
    assert by_slice["dataset=inbreast"][-1] == "failed"
    # Crosses only on request or when a gate looks at them.
    assert [line.split()[0:3] for line in lines if "&" in line] == [["dataset=inbreast", "&", "density=2"]]
    crosses = [line for line in format_console_summary(report.tables, include_crosses=True).splitlines() if "&" in line]
    assert len(crosses) == len(DATASET_SIZES) * 5 + len(evaluation.scans.groupby(["dataset", "age_group"]))


def test_report_from_artifacts_reads_gates_from_the_blessing(evaluation: Evaluation, gate_results_path: str,
                                                             tmp_path: Path) -> None:
    files = write_report_from_artifacts(evaluation.uri, str(tmp_path / "with_gates"),
                                        blessing_uri=str(Path(gate_results_path).parent))
    assert [gate.status for gate in files.gates] == [gate.status for gate in GATES]
    without = write_report_from_artifacts(evaluation.uri, str(tmp_path / "without_gates"),
                                          blessing_uri=str(tmp_path))  # a blessing without gate_results.json
    assert without.gates == () and without.blessed is None
    # Without the gate's settings the default rule (30 examples, 5 per class) applies.
    scans = evaluation.scans
    cross_size = int(((scans["dataset"] == "cbis-ddsm") & (scans["density"] == 2)).sum())
    assert cross_size < 30
    assert without.tables.slices.set_index("slice").loc["dataset=cbis-ddsm & density=2", "insufficient_reason"] \
        == f"{cross_size} examples < 30"
    assert files.tables.slices.set_index("slice").loc["dataset=cbis-ddsm & density=2", "insufficient_reason"] is None
    assert GATE_TABLE_ID not in _parse_page(without.html).tables
    assert "No gate results were given." in Path(without.html).read_text(encoding="utf-8")


def _scored_images(scans: pd.DataFrame) -> list[ScoredUnit]:
    """The evaluated scans as screening units: consecutive scans of a dataset are the two views of one breast, two
    breasts one exam."""
    images = []
    for dataset, group in scans.groupby("dataset", sort=False):
        for position, row in enumerate(group.itertuples()):
            images.append(ScoredUnit(key=f"{dataset}-{row.Index}", label=int(row.label), score=float(row.score),
                                     breast_key=f"{dataset}-{position // 2}", exam_key=f"{dataset}-{position // 4}",
                                     slices={"dataset": dataset}))
    return images


def test_report_shows_the_screening_units_beside_tfma_and_old_runs_render_as_before(
        evaluation: Evaluation, gate_results_path: str, report: ReportFiles, tmp_path: Path) -> None:
    images = _scored_images(evaluation.scans)
    record = fit_screening_record(images, ScreeningOptions(target_value=0.9))
    units = unit_evaluation_document(str(tmp_path / "units"), {"candidate": images}, thresholds=record.thresholds)
    files = write_report(evaluation.uri, str(tmp_path / "report"), gate_results_path,
                         unit_evaluation_path=units.uri, screening_record=record.to_dict())
    assert set(files.plots) == set(report.plots) | {"roc_by_unit.png"}
    assert Image.open(files.plots["roc_by_unit.png"]).format == "PNG"
    page = _parse_page(files.html)
    assert "roc_by_unit.png" in page.images
    rows = {row["Slice"]: row for row in _table_rows(page, SCREENING_TABLE_ID)}
    assert set(rows) == {"Overall"} | {f"dataset={name}" for name in DATASET_SIZES}
    breasts = units.candidate.figures["breast"][()]
    assert rows["Overall"]["breast n"] == str(breasts.count) == str(sum((n + 1) // 2 for n in DATASET_SIZES.values()))
    assert rows["Overall"]["image n"] == str(len(evaluation.scans))
    assert rows["Overall"]["breast AUC"] == \
        f"{breasts.auc:.3f} [{breasts.auc_interval[0]:.3f}, {breasts.auc_interval[1]:.3f}]"
    assert rows["Overall"]["breast sensitivity"].startswith(f"{breasts.operating['sensitivity']:.3f} [")
    # A one-class dataset has no AUC at any unit.
    assert rows["dataset=mias"]["breast AUC"] == "n/a"
    text = Path(files.html).read_text(encoding="utf-8")
    assert "<h2>Screening units</h2>" in text and "sensitivity 0.9 on the eval split" in text
    # The console reads the same document.
    summary = format_console_summary(files.tables, files.gates, blessed=files.blessed, units=files.units,
                                     screening_record=files.screening_record)
    assert "screening units (test split" in summary and f"breast {record.thresholds['breast']:.4f}" in summary
    # A run without a screening evaluation: the page as before.
    assert files.units is not None and report.units is None
    assert "Screening units" not in Path(report.html).read_text(encoding="utf-8")
    assert "roc_by_unit.png" not in report.plots


def test_roc_from_calibration_histogram_matches_the_scores(evaluation: Evaluation) -> None:
    """The ROC fallback for evaluations with CalibrationPlot but no ConfusionMatrixPlot."""
    overall = next(plots for plots in tfma.load_plots(evaluation.uri) if not plots.slice_key.single_slice_keys)
    (histogram,) = [kv.value.calibration_histogram_buckets.buckets for kv in overall.plot_keys_and_values
                    if kv.key.output_name == "probability" and kv.value.HasField("calibration_histogram_buckets")]
    rows = roc_from_calibration_histogram(histogram)
    scores, labels = evaluation.scans["score"].to_numpy(np.float64), evaluation.scans["label"].to_numpy()
    assert len(rows) == len(histogram) > 50
    for row in rows:
        flagged = scores >= row["threshold"]
        assert row["tp"] == pytest.approx(np.sum(flagged & (labels == 1)), abs=1e-6)
        assert row["fp"] == pytest.approx(np.sum(flagged & (labels == 0)), abs=1e-6)
        assert row["tp"] + row["fn"] == labels.sum() and row["fp"] + row["tn"] == len(labels) - labels.sum()
        if row["fp"] + row["tn"]:
            assert row["fpr"] == pytest.approx(row["fp"] / (row["fp"] + row["tn"]))


def _chromium_command(chromium: Path, profile_dir: Path, *arguments: str) -> list[str]:
    return [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile_dir}", *arguments]


def test_report_renders_in_headless_chromium(report: ReportFiles, chromium: Path, tmp_path: Path) -> None:
    page = Path(report.html)
    screenshot = tmp_path / "report.png"
    subprocess.run(_chromium_command(chromium, tmp_path / "profile-shot", f"--screenshot={screenshot}",
                                     "--window-size=1280,2000", page.as_uri()),
                   check=True, timeout=120, capture_output=True)
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20.0, "the screenshot is (nearly) blank"

    # The same page plus a script that records each image's decoded width once everything has loaded;
    # written next to report.html so that the relative image paths resolve exactly as for the report.
    probe = page.with_name("report_probe.html")
    marker = ("<script>window.addEventListener('load', function () {"
              "for (const img of document.images) img.setAttribute('data-natural-width', img.naturalWidth);"
              "document.body.setAttribute('data-loaded', 'yes');});</script></body>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", marker), encoding="utf-8")
    dom = subprocess.run(_chromium_command(chromium, tmp_path / "profile-dom", "--virtual-time-budget=10000",
                                           "--dump-dom", probe.as_uri()),
                         check=True, timeout=120, capture_output=True, text=True).stdout
    probe.unlink()
    assert 'data-loaded="yes"' in dom
    widths = [int(part.split('"')[0]) for part in dom.split('data-natural-width="')[1:]]
    assert len(widths) == len(report.plots) == 2 + len(names.FAIRNESS_FEATURES)
    assert all(width > 0 for width in widths), f"broken image(s) in the rendered page: {widths}"
