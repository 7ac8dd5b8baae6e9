"""The screening evaluation in Beam: a model's per-image predictions on one split, and its figures per unit (image,
breast, exam) and slice.

TFMA scores examples one by one and cannot group them into breasts and exams, so this runs the export's
`serving_examples` signature itself: one prediction row per example (written as a CSV sorted by image key, so a
rerun writes the same file), images grouped by breast key into breasts and breasts by exam key into exams with the
rules of `screening.py`, then per unit and slice the counts, AUC with its bootstrap interval and the figures at the
model's threshold for the unit. The document (`unit_evaluation.json`) is written by `unit_results.py`.
The ScreeningEvaluator component (components/screening_evaluator) only wires artifacts to `add_unit_evaluation`.
"""
from __future__ import annotations

import csv
import io
import math
import os
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging

from mammo_tfx import names
from mammo_tfx.evaluation import screening
from mammo_tfx.evaluation.calibration import ScreeningRecord
from mammo_tfx.evaluation.screening import BREAST_UNIT, EXAM_UNIT, IMAGE_UNIT, BreastRule, ScoredUnit
from mammo_tfx.evaluation.tfma_results import OVERALL_SLICE, SliceKey
from mammo_tfx.evaluation.unit_results import BASELINE, CANDIDATE, ModelUnits, UnitEvaluation, UnitFigures
from mammo_tfx.evaluation.unit_results import write_unit_evaluation

# Columns of predictions.csv: the keys (salted hashes, as in the examples), the label, the slice features, the
# model's outputs (`recall` is empty for an export without an operating point).
KEY_COLUMNS = (names.IMAGE_KEY, names.BREAST_KEY, names.EXAM_KEY)
OUTPUT_COLUMNS = (names.PROBABILITY, names.PROBABILITY_SINGLE, names.SCORE, names.RECALL)
PREDICTION_COLUMNS = (*KEY_COLUMNS, names.LABEL, *names.SLICE_FEATURES, *OUTPUT_COLUMNS)
# Mean examples per call of the signature (calls vary in size around it): the whole-image graph holds 4 flips of
# each image in memory.
BATCH_SIZE = 8
# One fixed seed: a rerun on the same predictions gives the same intervals.
BOOTSTRAP_SEED = 0

Row = Dict[str, Any]


@dataclass(frozen=True)
class ModelUnderTest:
    """One evaluated model: `candidate` or `baseline`, its SavedModel directory and its screening record (None for
    an export without one: no thresholds, `score` = `probability`)."""

    name: str
    export_dir: str
    record: Optional[ScreeningRecord]


def _value(feature: tf.train.Feature) -> Optional[str]:
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def example_columns(serialized: bytes, source: str) -> Row:
    """The keys, label and slice values of one serialized example (slice features it lacks are empty)."""
    try:
        features = tf.train.Example.FromString(serialized).features.feature
    except Exception as error:  # protobuf raises DecodeError or RuntimeWarning-like errors by version
        raise ValueError(f"{source}: a record is not a tf.train.Example ({error})") from error
    row: Row = {}
    for column in (*KEY_COLUMNS, names.LABEL):
        value = _value(features[column]) if column in features else None
        if not value:
            which = f"example {row[names.IMAGE_KEY]}" if row.get(names.IMAGE_KEY) else "an example"
            raise ValueError(f"{source}: {which} has no '{column}' (examples written before breast and exam keys "
                             "were added? ingest the data again)")
        row[column] = value
    row[names.LABEL] = int(row[names.LABEL])
    for column in names.SLICE_FEATURES:
        row[column] = (_value(features[column]) if column in features else None) or ""
    return row


def batch_of(row: Row, batches: int) -> int:
    """The batch an example is scored in: a stable hash of its image key. Fixed batches make reruns identical: the
    model's float results depend (in the last bit) on which examples share a call."""
    return zlib.crc32(row[names.IMAGE_KEY].encode("utf-8")) % batches


def batch_count(examples: int) -> int:
    return max(1, math.ceil(examples / BATCH_SIZE))


class PredictImages(beam.DoFn):
    """A batch of (columns, serialized example) -> prediction rows, through the export's `serving_examples`."""

    def __init__(self, export_dir: str) -> None:
        self._export_dir = export_dir
        self._loaded = None
        self._signature = None

    def setup(self) -> None:
        # Loaded once per worker; the loaded object is kept, or its variables would be freed under the signature.
        self._loaded = tf.saved_model.load(self._export_dir)
        if names.EXAMPLES_SIGNATURE not in self._loaded.signatures:
            raise ValueError(f"{self._export_dir}: the model has no '{names.EXAMPLES_SIGNATURE}' signature "
                             f"(it has {sorted(self._loaded.signatures)})")
        self._signature = self._loaded.signatures[names.EXAMPLES_SIGNATURE]

    def process(self, batch: Sequence[Tuple[Row, bytes]]) -> Iterator[Row]:
        outputs = self._signature(**{names.EXAMPLES_INPUT: tf.constant([serialized for _, serialized in batch])})
        if names.PROBABILITY not in outputs:
            raise ValueError(f"{self._export_dir}: '{names.EXAMPLES_SIGNATURE}' has no output '{names.PROBABILITY}' "
                             f"(it has {sorted(outputs)})")
        columns = {name: np.reshape(outputs[name].numpy(), [-1]) for name in OUTPUT_COLUMNS if name in outputs}
        # An export from before calibration: its probability is the uncalibrated score, and it has no decision.
        columns.setdefault(names.SCORE, columns[names.PROBABILITY])
        for index, (columns_of_example, _) in enumerate(batch):
            row = dict(columns_of_example)
            row.update({name: float(columns[name][index])
                        for name in (names.PROBABILITY, names.PROBABILITY_SINGLE, names.SCORE)})
            row[names.RECALL] = int(columns[names.RECALL][index]) if names.RECALL in columns else None
            yield row


def _csv_value(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def write_predictions(rows: Iterable[Row], path: str, what: str) -> str:
    """Writes the rows as `path` (a CSV with a header, sorted by image key); refuses an empty split."""
    ordered = sorted(rows, key=lambda row: row[names.IMAGE_KEY])
    if not ordered:
        raise ValueError(f"{what}: no examples to evaluate")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    writer.writerows([_csv_value(row[column]) for column in PREDICTION_COLUMNS] for row in ordered)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(buffer.getvalue())
    return path


def read_predictions(path: str) -> List[Row]:
    """The rows of a predictions.csv as written above (numbers parsed, `recall` None where empty)."""
    with tf.io.gfile.GFile(path) as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != PREDICTION_COLUMNS:
            raise ValueError(f"{path}: not a predictions file (columns {reader.fieldnames}, expected "
                             f"{list(PREDICTION_COLUMNS)})")
        rows = []
        for row in reader:
            parsed: Row = dict(row)
            parsed[names.LABEL] = int(row[names.LABEL])
            for column in (names.PROBABILITY, names.PROBABILITY_SINGLE, names.SCORE):
                parsed[column] = float(row[column])
            parsed[names.RECALL] = int(row[names.RECALL]) if row[names.RECALL] else None
            rows.append(parsed)
    return rows


def image_unit(row: Row) -> ScoredUnit:
    """A prediction row as an image unit: its score is the calibrated `probability` (what every unit is judged on)."""
    return ScoredUnit(key=row[names.IMAGE_KEY], label=row[names.LABEL], score=row[names.PROBABILITY],
                      breast_key=row[names.BREAST_KEY], exam_key=row[names.EXAM_KEY],
                      slices={feature: row[feature] for feature in names.SLICE_FEATURES if row[feature]})


def slice_keys(unit: str, slices: Mapping[str, str]) -> List[SliceKey]:
    """The slices a unit counts in: overall, each slice feature it has a value for (except those describing one
    image, for a breast or exam), and each crossed slice; columns in TFMA's order (by name)."""
    features = [f for f in names.SLICE_FEATURES if f not in screening.PER_IMAGE_FEATURES.get(unit, ())]
    keys: List[SliceKey] = [OVERALL_SLICE]
    keys += [((feature, slices[feature]),) for feature in features if slices.get(feature)]
    keys += [tuple(sorted((feature, slices[feature]) for feature in cross))
             for cross in names.CROSSED_SLICES if all(slices.get(feature) for feature in cross)]
    return keys


def _arrays(members: Iterable[Tuple[str, int, float]]) -> Tuple[np.ndarray, np.ndarray]:
    ordered = sorted(members)
    return (np.array([label for _, label, _ in ordered], dtype=np.int64),
            np.array([score for _, _, score in ordered], dtype=np.float64))


def unit_figures(slice_key: SliceKey, members: Iterable[Tuple[str, int, float]], threshold: Optional[float],
                 bootstrap_samples: int) -> UnitFigures:
    """Figures of the (key, label, score) units of one slice; members are ordered by key first, so the bootstrap
    resamples the same units whatever order Beam grouped them in."""
    labels, scores = _arrays(members)
    positives = int(np.sum(labels > 0))
    return UnitFigures(
        slice=slice_key, count=len(labels), positives=positives, negatives=len(labels) - positives,
        auc=screening.auc(labels, scores),
        auc_interval=screening.bootstrap_auc_interval(labels, scores, samples=bootstrap_samples, seed=BOOTSTRAP_SEED),
        operating=None if threshold is None else screening.operating_figures(labels, scores, threshold).to_dict())


def calibration_errors(rows: Iterable[Row]) -> Dict[str, float]:
    """Expected calibration error of the image answers before (`score`) and after (`probability`) calibration."""
    rows = list(rows)
    labels = np.array([row[names.LABEL] for row in rows], dtype=np.int64)
    return {"before": screening.expected_calibration_error(labels, np.array([r[names.SCORE] for r in rows])),
            "after": screening.expected_calibration_error(labels, np.array([r[names.PROBABILITY] for r in rows]))}


def evaluated_breast_rule(candidate: Optional[ScreeningRecord], configured: BreastRule) -> BreastRule:
    """The rule breasts are scored by: the candidate's own (its breast threshold was chosen with it), else the
    configured one."""
    if candidate is None:
        return BreastRule(configured)
    exported = BreastRule(candidate.options.breast_rule)
    if exported != BreastRule(configured):
        logging.warning("ScreeningEvaluator: the candidate was exported with breast rule %s, the configuration says "
                        "%s; breasts are scored with the candidate's rule", exported.value, BreastRule(configured).value)
    return exported


def unit_thresholds(model: ModelUnderTest, rule: BreastRule) -> Dict[str, float]:
    """The model's threshold per unit; none for an export without a record, and no breast or exam threshold for a
    model whose own breast rule differs from `rule` (its breast threshold means nothing for these breast scores)."""
    if model.record is None:
        return {}
    thresholds = dict(model.record.thresholds)
    if BreastRule(model.record.options.breast_rule) != rule:
        logging.warning("ScreeningEvaluator: the %s model's breast threshold was chosen with breast rule %s, "
                        "breasts are scored with %s here: no breast or exam operating point for it", model.name,
                        BreastRule(model.record.options.breast_rule).value, rule.value)
        thresholds = {unit: value for unit, value in thresholds.items() if unit == IMAGE_UNIT}
    return thresholds


def _group_key(unit: ScoredUnit, unit_name: str) -> str:
    return unit.breast_key if unit_name == BREAST_UNIT else unit.exam_key


def _combined(members: Iterable[ScoredUnit], unit_name: str, rule: BreastRule) -> ScoredUnit:
    # Sorted so that float sums, and so a rerun's scores, do not depend on Beam's grouping order.
    ordered = sorted(members, key=lambda member: member.key)
    grouped = screening.breasts(ordered, rule) if unit_name == BREAST_UNIT else screening.exams(ordered)
    if len(grouped) != 1:
        raise AssertionError(f"one {unit_name} key gave {len(grouped)} units")
    return grouped[0]


def _assemble(figures: Iterable[Tuple[str, UnitFigures]], roc: Iterable[Tuple[str, List[Dict[str, float]]]],
              ece: Dict[str, float], predictions_file: str, thresholds: Dict[str, float]) -> ModelUnits:
    by_unit: Dict[str, Dict[SliceKey, UnitFigures]] = {unit: {} for unit in screening.UNITS}
    for unit, item in sorted(figures, key=lambda pair: (screening.UNITS.index(pair[0]), repr(pair[1].slice))):
        by_unit[unit][item.slice] = item
    return ModelUnits(predictions_file=predictions_file, thresholds=thresholds, ece=ece, figures=by_unit,
                      roc=dict(roc))


def _model_units(rows: beam.PCollection, model: ModelUnderTest, rule: BreastRule, bootstrap_samples: int,
                 predictions_file: str) -> beam.PCollection:
    """(model name, ModelUnits) of one model's prediction rows."""
    name = model.name
    thresholds = unit_thresholds(model, rule)
    units = {IMAGE_UNIT: rows | f"Images[{name}]" >> beam.Map(image_unit)}
    for unit_name, members in ((BREAST_UNIT, IMAGE_UNIT), (EXAM_UNIT, BREAST_UNIT)):
        units[unit_name] = (units[members]
                            | f"Key{unit_name}[{name}]" >> beam.Map(lambda u, n=unit_name: (_group_key(u, n), u))
                            | f"Group{unit_name}[{name}]" >> beam.GroupByKey()
                            | f"Combine{unit_name}[{name}]" >> beam.MapTuple(
                                lambda _, group, n=unit_name: _combined(group, n, rule)))
    per_slice = []
    for unit_name, collection in units.items():
        per_slice.append(collection | f"Slice{unit_name}[{name}]" >> beam.FlatMap(
            lambda u, n=unit_name: [((n, key), (u.key, u.label, u.score)) for key in slice_keys(n, u.slices)]))
    grouped = (per_slice | f"AllSlices[{name}]" >> beam.Flatten()
               | f"GroupSlices[{name}]" >> beam.GroupByKey())
    figures = grouped | f"Figures[{name}]" >> beam.MapTuple(
        lambda unit_slice, members: (unit_slice[0], unit_figures(unit_slice[1], members,
                                                                 thresholds.get(unit_slice[0]), bootstrap_samples)))
    roc = (grouped
           | f"Overall[{name}]" >> beam.Filter(lambda item: item[0][1] == OVERALL_SLICE)
           | f"Roc[{name}]" >> beam.MapTuple(lambda unit_slice, members: (
               unit_slice[0], screening.roc_points(*_arrays(members)))))
    ece = (rows | f"CollectRows[{name}]" >> beam.combiners.ToList()
           | f"Ece[{name}]" >> beam.Map(calibration_errors))
    return (figures | f"CollectFigures[{name}]" >> beam.combiners.ToList()
            | f"Assemble[{name}]" >> beam.Map(
                lambda collected, roc_points, errors: (name, _assemble(collected, roc_points, errors,
                                                                       predictions_file, thresholds)),
                roc_points=beam.pvalue.AsList(roc), errors=beam.pvalue.AsSingleton(ece)))


def _write_document(models: Dict[str, ModelUnits], directory: str, split: str, rule: BreastRule,
                    bootstrap_samples: int, external_datasets: Tuple[str, ...]) -> str:
    evaluation = UnitEvaluation(uri=directory, split=split, breast_rule=rule.value,
                                bootstrap_samples=bootstrap_samples, models=models, external_datasets=external_datasets)
    tf.io.gfile.makedirs(directory)
    return write_unit_evaluation(evaluation, directory)


def predictions_path(predictions_dir: str, model_name: str) -> str:
    """`<predictions artifact>/<candidate|baseline>/predictions.csv`."""
    return os.path.join(predictions_dir, model_name, names.PREDICTIONS_FILE)


def add_unit_evaluation(pipeline: beam.Pipeline, example_files: Sequence[str], models: Sequence[ModelUnderTest],
                        split: str, breast_rule: BreastRule, bootstrap_samples: int, predictions_dir: str,
                        evaluation_dir: str, external_datasets: Sequence[str] = ()) -> None:
    """Adds the whole evaluation to `pipeline` (run it afterwards): each model's predictions on the GZIP TFRecord
    `example_files` of `split` to `predictions_path(predictions_dir, name)`, and the unit evaluation of all models
    to `<evaluation_dir>/unit_evaluation.json`, which marks the slices of `external_datasets` (held out of
    training)."""
    names_given = [model.name for model in models]
    if CANDIDATE not in names_given or not set(names_given) <= {CANDIDATE, BASELINE} or len(set(names_given)) != len(
            names_given):
        raise ValueError(f"models must be one {CANDIDATE!r} and at most one {BASELINE!r}, got {names_given}")
    if not example_files:
        raise ValueError(f"no example files of split '{split}' to evaluate")
    examples = (pipeline
                | "Files" >> beam.Create(sorted(example_files))
                | "Read" >> beam.io.ReadAllFromTFRecord(
                    compression_type=beam.io.filesystem.CompressionTypes.GZIP, with_filename=True)
                | "Columns" >> beam.MapTuple(lambda source, serialized: (example_columns(serialized, source),
                                                                          serialized)))
    total = examples | "Count" >> beam.combiners.Count.Globally()
    batches = (examples
               | "BatchKey" >> beam.Map(lambda example, count: (batch_of(example[0], batch_count(count)), example),
                                        count=beam.pvalue.AsSingleton(total))
               | "Batch" >> beam.GroupByKey()
               | "OrderBatch" >> beam.MapTuple(lambda _, members: sorted(
                   members, key=lambda member: (member[0][names.IMAGE_KEY], member[1]))))
    results = []
    for model in models:
        rows = batches | f"Predict[{model.name}]" >> beam.ParDo(PredictImages(model.export_dir))
        path = predictions_path(predictions_dir, model.name)
        _ = (rows | f"CollectPredictions[{model.name}]" >> beam.combiners.ToList()
             | f"WritePredictions[{model.name}]" >> beam.Map(
                 write_predictions, path, f"split '{split}' ({len(example_files)} files, e.g. {example_files[0]})"))
        relative = os.path.relpath(path, evaluation_dir)
        results.append(_model_units(rows, model, breast_rule, bootstrap_samples, relative))
    _ = (results | "AllModels" >> beam.Flatten()
         | "ByModel" >> beam.combiners.ToDict()
         | "WriteEvaluation" >> beam.Map(_write_document, evaluation_dir, split, breast_rule, bootstrap_samples,
                                                tuple(external_datasets)))
