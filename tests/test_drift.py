"""Drift of the acquisition statistics with a real shift: the same phantoms through another acquisition (a gamma,
another bit depth, MONOCHROME1, another device) raise drift on the features that moved and on no other; the same
acquisition raises nothing. In the pipeline's ExampleValidator (StatisticsGen and the validator's executors on
ingested examples, against statistics pushed beside a served version) and from request logs (`mammo-tfx monitor`
against logs the built-in server writes during the test)."""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.drift_validator import executor as drift_executor
from components.model_card.executor import copy_statistics
from mammo_tfx import cli, names
from mammo_tfx.ingest.image_statistics import decode_display_image, image_statistics
from mammo_tfx.ingest.layouts import list_records
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.monitoring.drift import read_results
from mammo_tfx.monitoring.options import DriftOptions
from mammo_tfx.predict import prepare_model_input
from mammo_tfx.serving.request_log import RequestLogger, RequestLogOptions, read_request_logs
from mammo_tfx.serving.server import ModelServer
from mammo_tfx.serving.tiny_model import export_tiny_model
from mammo_tfx.synth.phantom import PhantomRequest, quantize, render_phantom
from pipeline.paths import SCHEMA_FILE
from pipeline.pipeline import statistics_options
from tests.conftest import write_dicom_file

ROWS, COLS = 240, 180
PATIENTS = 20
# The working size is the phantoms' own: ingestion keeps every source pixel, so its statistics and those of a request
# carrying the same image are equal, and any distance comes from the acquisition alone.
OPTIONS = IngestOptions(height=ROWS, width=COLS, patient_salt="test-salt")
MODEL_NAME = "mammo"


@dataclasses.dataclass(frozen=True)
class Acquisition:
    bits: int = 12
    gamma: float = 1.0
    monochrome1: bool = False
    manufacturer: str = "Vendor A"


BASELINE = Acquisition()
SHIFTS = {
    # A gamma brightens the breast and lifts its faint edge above the breast cut: every pixel statistic moves.
    "gamma": (Acquisition(gamma=0.6), set(names.IMAGE_STATISTICS)),
    "bits": (Acquisition(bits=10), {names.BITS_STORED}),
    "monochrome1": (Acquisition(monochrome1=True), {names.PHOTOMETRIC_INTERPRETATION}),
    "device": (Acquisition(manufacturer="Vendor B"), {names.DEVICE}),
}


def _phantom(index: int) -> np.ndarray:
    """Phantom `index` of the population: breasts of every density and exposures over a factor of two, so that the
    population spreads as a site's does (TFDV's histograms adapt their buckets to the spread of the values)."""
    request = PhantomRequest(height=ROWS, width=COLS, laterality="LR"[index % 2], view="CC", density=1 + index % 4)
    exposure = 0.5 + 0.5 * index / (PATIENTS - 1)
    return render_phantom(request, np.random.default_rng(index)).image * exposure


def write_acquisition(root: Path, acquisition: Acquisition) -> list[Path]:
    """The same phantoms as DICOM files of the folder layout, through `acquisition`."""
    paths = []
    for index in range(PATIENTS):
        pixels = quantize(_phantom(index) ** acquisition.gamma, acquisition.bits)
        if acquisition.monochrome1:
            pixels = ((1 << acquisition.bits) - 1 - pixels).astype(pixels.dtype)
        paths.append(write_dicom_file(
            root / ("neg", "pos")[index % 2] / f"scan{index}.dcm", pixels, bits_stored=acquisition.bits,
            photometric="MONOCHROME1" if acquisition.monochrome1 else "MONOCHROME2", PatientID=f"P{index}",
            Manufacturer=acquisition.manufacturer, ManufacturerModelName="Unit 1"))
    return paths


def ingested_statistics(root: Path, out: Path) -> standard_artifacts.ExampleStatistics:
    """Ingest `root` into one split and run StatisticsGen's executor on it with the pipeline's options."""
    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    os.makedirs(os.path.join(examples.uri, "Split-train"))
    with tf.io.TFRecordWriter(os.path.join(examples.uri, "Split-train", "data.gz"), "GZIP") as writer:
        for record in list_records("folder", str(root), OPTIONS):
            example = process_record(record, OPTIONS)
            assert isinstance(example, tf.train.Example), example
            writer.write(example.SerializeToString())
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(out / "statistics")
    from tfx.components.statistics_gen import executor as statistics_executor
    statistics_executor.Executor().Do({"examples": [examples]}, {"statistics": [statistics]},
                                      {"stats_options_json": statistics_options().to_json(), "exclude_splits": "[]"})
    return statistics


def push_baseline(statistics: standard_artifacts.ExampleStatistics, base_path: Path) -> Path:
    """A served version (the tiny model) with the baseline's statistics beside it, as ModelCardWriter writes them."""
    version = base_path / "1"
    export_tiny_model(str(version))
    copy_statistics(statistics, str(version / names.SERVING_EXTRAS_DIR / names.TRAINING_STATISTICS_DIR))
    return version


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """The baseline acquisition ingested, its statistics pushed beside a served version."""
    root = tmp_path_factory.mktemp("drift")
    files = write_acquisition(root / "baseline", BASELINE)
    statistics = ingested_statistics(root / "baseline", root / "baseline-run")
    base_path = root / "serving" / MODEL_NAME
    push_baseline(statistics, base_path)
    return {"root": root, "base_path": base_path, "files": files}


def validate(served: dict, name: str, acquisition: Acquisition, stop: bool = False):
    """The drift validator's executor on `acquisition`'s ingested statistics; its results and the executor error."""
    root = served["root"]
    write_acquisition(root / name, acquisition)
    statistics = ingested_statistics(root / name, root / f"{name}-run")
    schema = standard_artifacts.Schema()
    schema.uri = str(root / f"{name}-schema")
    os.makedirs(schema.uri)
    shutil.copy(SCHEMA_FILE, os.path.join(schema.uri, "schema.pbtxt"))
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(root / f"{name}-anomalies")
    properties = {"exclude_splits": "[]", drift_executor.BASELINE_DIR_KEY: str(served["base_path"]),
                  drift_executor.DRIFT_OPTIONS_KEY: json.dumps(DriftOptions(stop_run_on_drift=stop).to_dict()),
                  drift_executor.REPORTS_DIR_KEY: str(root / f"{name}-reports")}
    error = None
    try:
        drift_executor.Executor().Do({"statistics": [statistics], "schema": [schema]}, {"anomalies": [anomalies]},
                                     properties)
    except drift_executor.DriftError as raised:
        error = raised
    return read_results(anomalies.uri), error


def test_statistics_are_those_of_the_pixels_whatever_size_the_image_arrives_at():
    image = np.round(_phantom(0) * 65535).astype(np.uint16)
    statistics = image_statistics(image)
    assert 0.0 < statistics.intensity_p05 < statistics.intensity_p50 < statistics.intensity_p95 <= 1.0
    assert 0.2 < statistics.breast_fraction < 0.9
    doubled = np.kron(image, np.ones((2, 2), dtype=np.uint16))  # the same picture at twice the size
    assert image_statistics(doubled).as_features() == pytest.approx(statistics.as_features(), abs=0.01)
    eight_bit = tf.io.encode_png((image // 257).astype(np.uint8)[..., None]).numpy()
    assert image_statistics(decode_display_image(eight_bit)).as_features() == pytest.approx(
        statistics.as_features(), abs=0.01)
    assert image_statistics(np.zeros((8, 8), np.uint16)).breast_fraction == 0.0


@pytest.mark.e2e  # StatisticsGen's Beam pipeline per acquisition
def test_the_same_acquisition_raises_no_drift(served):
    results, error = validate(served, "same", BASELINE, stop=True)
    assert error is None
    assert results.rows and not results.drifted, results.drifted
    assert results.baseline == str(served["base_path"] / "1")
    compared = {row.feature for row in results.rows}
    assert set(names.DRIFT_FEATURES) <= compared
    assert {row.slice for row in results.rows} >= {"All Examples", "dataset_folder", "device_Vendor A Unit 1"}


@pytest.mark.e2e  # StatisticsGen's Beam pipeline per acquisition
@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_another_acquisition_drifts_on_the_features_that_moved_only(served, shift):
    acquisition, moved = SHIFTS[shift]
    results, error = validate(served, shift, acquisition)
    assert error is None  # reported, not stopping: monitoring.stop_run_on_drift is off
    drifted = {row.feature for row in results.drifted if row.slice == "All Examples"}
    assert drifted == moved, results.drifted
    if shift == "device":
        assert any("device_Vendor B Unit 1" in note and "new" in note for note in results.notes), results.notes


@pytest.mark.e2e  # StatisticsGen's Beam pipeline per acquisition
def test_a_drift_stops_the_run_when_configured(served):
    results, error = validate(served, "gamma-stop", SHIFTS["gamma"][0], stop=True)
    assert error is not None and "intensity_p50" in str(error) and "stop_run_on_drift" in str(error)
    kept = list((served["root"] / "gamma-stop-reports").glob("*/drift.json"))
    assert len(kept) == 1 and read_results(str(kept[0].parent)).drifted


def _predict(server: ModelServer, png: bytes) -> None:
    body = json.dumps({"instances": [{"b64": base64.b64encode(png).decode()}]}).encode()
    with urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/v1/models/{MODEL_NAME}:predict", data=body, method="POST")) as response:
        assert response.status == 200


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _serve_and_log(served: dict, log_dir: Path, windows: list[list[Path]]) -> None:
    """Send each window's files (as `mammo-tfx predict` sends them) to the built-in server, a day apart."""
    clock = _Clock()
    logger = RequestLogger(str(log_dir), str(served["base_path"]), RequestLogOptions(sampling_rate=1.0), clock=clock)
    with ModelServer(str(served["base_path"]), MODEL_NAME, request_logger=logger) as server:
        for files in windows:
            for path in files:
                _predict(server, prepare_model_input(str(path), None).image_bytes)
            clock.now += 25 * 3600


def _monitor(served: dict, log_dir: Path, out: Path) -> tuple[int, dict]:
    code = cli.main(["monitor", "--logs", str(log_dir), "--model-dir", str(served["base_path"]), "--out", str(out),
                     "--profile", "test"])
    return code, read_results(str(out))


@pytest.mark.e2e  # StatisticsGen's Beam pipeline per acquisition
def test_requests_of_the_training_acquisition_raise_nothing(served, tmp_path):
    _serve_and_log(served, tmp_path / "logs", [served["files"], served["files"]])
    logs = list(read_request_logs(str(tmp_path / "logs")))
    assert len(logs) == 2 * PATIENTS
    assert logs[0].predict_log.response.outputs[names.PROBABILITY].float_val
    assert logs[0].log_metadata.model_spec.version.value == 1
    code, results = _monitor(served, tmp_path / "logs", tmp_path / "report")
    assert code == 0, results.drifted
    assert {row.kind for row in results.rows} == {"skew", "drift"}
    assert (tmp_path / "report" / "monitoring.html").exists() and (tmp_path / "report" / "distributions.png").exists()


@pytest.mark.e2e  # StatisticsGen's Beam pipeline per acquisition
def test_requests_of_another_acquisition_raise_skew_and_drift_on_the_intensities(served, tmp_path):
    shifted = write_acquisition(tmp_path / "gamma", SHIFTS["gamma"][0])
    _serve_and_log(served, tmp_path / "logs", [served["files"], shifted])
    code, results = _monitor(served, tmp_path / "logs", tmp_path / "report")
    assert code == cli.MONITOR_DRIFT_EXIT
    skewed = {row.feature for row in results.drifted if row.kind == "skew"}
    assert SHIFTS["gamma"][1] <= skewed <= set(names.IMAGE_STATISTICS), results.drifted
    assert SHIFTS["gamma"][1] <= {row.feature for row in results.drifted if row.kind == "drift"}
    page = (tmp_path / "report" / "monitoring.html").read_text()
    assert "comparison(s) above the threshold" in page and page.count('class="status-failed">drifted') == len(
        results.drifted)


def test_request_logs_stay_out_of_the_model_folder_and_rotate(tmp_path):
    base_path = tmp_path / "serving" / MODEL_NAME
    with pytest.raises(ValueError, match="inside the model folder"):
        RequestLogger(str(base_path / "1" / "logs"), str(base_path), RequestLogOptions(1.0))
    logger = RequestLogger(str(tmp_path / "logs"), str(base_path),
                           RequestLogOptions(sampling_rate=1.0, max_file_mb=1e-6, max_files=2))
    image = {names.IMAGE_BYTES_INPUT: np.array([b"png"], dtype=object)}
    for _ in range(4):
        logger.log(MODEL_NAME, 1, names.DEFAULT_SIGNATURE, image, {names.PROBABILITY: np.array([0.5], np.float32)})
    logger.close()
    assert len(list((tmp_path / "logs").iterdir())) == 2
    assert len(list(read_request_logs(str(tmp_path / "logs")))) == 2


def test_serve_passes_the_request_logging_config_to_tensorflow_model_server(tmp_path, monkeypatch):
    # An executable that records its arguments stands in for the binary, which cannot be installed here.
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from mammo_tfx.serving.server import serve

    binary = tmp_path / "bin" / "tensorflow_model_server"
    binary.parent.mkdir()
    recorded = tmp_path / "args.txt"
    binary.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{recorded}'\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ['PATH']}")
    base = tmp_path / "serving" / MODEL_NAME
    base.mkdir(parents=True)
    options = RequestLogOptions(sampling_rate=0.25)
    with pytest.raises(ValueError, match="inside the model folder"):
        serve(str(base), MODEL_NAME, port=8501, request_log_dir=str(base / "logs"), request_log=options)

    assert serve(str(base), MODEL_NAME, port=8501, request_log_dir=str(tmp_path / "logs"), request_log=options) == 0
    flags = dict(line.lstrip("-").split("=", 1) for line in recorded.read_text().splitlines())
    assert "model_name" not in flags and "model_base_path" not in flags
    config = text_format.Parse(Path(flags["model_config_file"]).read_text(),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path) == (MODEL_NAME, str(base))
    assert model.logging_config.sampling_config.sampling_rate == 0.25
    assert model.logging_config.log_collector_config.filename_prefix.startswith(str(tmp_path / "logs"))


def test_training_waits_for_the_validator_which_compares_with_the_push_directory(tmp_path):
    from pipeline.config import load_config
    from pipeline.pipeline import EXAMPLE_VALIDATOR_ID, create_components

    config = load_config("test", overrides=["monitoring.stop_run_on_drift=true"])
    components = {component.id: component for component in
                  create_components(config, str(tmp_path / "manifest"), str(tmp_path / "root"))}
    validator = components[EXAMPLE_VALIDATOR_ID]
    assert validator in components["Transform"].upstream_nodes
    assert validator.exec_properties[drift_executor.BASELINE_DIR_KEY] == config.evaluation.push_base_directory(
        str(tmp_path / "root"))
    assert json.loads(validator.exec_properties[drift_executor.DRIFT_OPTIONS_KEY])["stop_run_on_drift"] is True
    slicing = json.loads(components["StatisticsGen"].exec_properties["stats_options_json"])
    assert "slicing_config" in json.dumps(slicing)
