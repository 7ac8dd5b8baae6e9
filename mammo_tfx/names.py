"""The names parts of mammo-tfx agree on: example features, model outputs, signatures and artifact files.

Every producer and consumer imports them from here (as the TFX template's `features.py` does); their meanings are in
docs/contracts.md. Changing a value here changes a contract with stored data, served models or clients.
"""
from __future__ import annotations

# Scan examples written by MammoExampleGen (one example = one scan).
IMAGE_PNG = "image_png"
MASK_PNG = "mask_png"
LABEL = "label"
ABNORMALITY_TYPE = "abnormality_type"
PATHOLOGY = "pathology"
DATASET = "dataset"
DENSITY = "density"
VIEW = "view"
LATERALITY = "laterality"
PATIENT_KEY = "patient_key"
IMAGE_KEY = "image_key"
# Salted keys of the screening units an image belongs to: one breast (dataset, patient, study where the dataset has
# one, laterality) and one exam (the same without laterality).
BREAST_KEY = "breast_key"
EXAM_KEY = "exam_key"
SOURCE_SPLIT = "source_split"
HEIGHT = "height"
WIDTH = "width"
ORIGINAL_HEIGHT = "original_height"
ORIGINAL_WIDTH = "original_width"
PIXEL_SPACING_MM = "pixel_spacing_mm"
CONTENT_BOX = "content_box"
RESIZE_MODE = "resize_mode"
# Its values: how ingestion brought a scan to the working size (mammo_tfx/ingest/resize.py), which every serving
# signature of a model trained on those scans repeats (trainer_module/image_decoding.py).
STRETCH = "stretch"
PAD = "pad"
RESIZE_MODES = (STRETCH, PAD)
BITS_STORED = "bits_stored"
MASK_RESIZED = "mask_resized"
MASK_COMPLETE = "mask_complete"
# Population features for fairness slices ("unknown" where the dataset does not say): an age band, never the age.
AGE_GROUP = "age_group"
SITE = "site"
DEVICE = "device"
IMPLANT = "implant"
# Acquisition statistics (mammo_tfx/ingest/image_statistics.py): numbers that move when the images change under the
# model (another device, vendor software, processing, bit depth). Pixel ones are computed on the display image
# (full 16-bit range, bright = dense) inside the breast, by one function for ingestion and for served requests.
INTENSITY_P05 = "intensity_p05"
INTENSITY_P50 = "intensity_p50"
INTENSITY_P95 = "intensity_p95"
INTENSITY_MEAN = "intensity_mean"
BREAST_FRACTION = "breast_fraction"
PHOTOMETRIC_INTERPRETATION = "photometric_interpretation"

# The pixel statistics, computed alike on ingested scans and on the images of served requests.
IMAGE_STATISTICS = (INTENSITY_P05, INTENSITY_P50, INTENSITY_P95, INTENSITY_MEAN, BREAST_FRACTION)
# The features whose drift from the served model's training data is watched (docs/monitoring.md): the pixel
# statistics and the acquisition header values. Labels and population mix are left out: they move with case mix.
DRIFT_FEATURES = (*IMAGE_STATISTICS, ORIGINAL_HEIGHT, ORIGINAL_WIDTH, PIXEL_SPACING_MM, BITS_STORED,
                  PHOTOMETRIC_INTERPRETATION, DEVICE)
# Statistics are computed per split and per value of each of these features as well as over all examples.
STATISTICS_SLICE_FEATURES = (DATASET, SITE, DEVICE)

# Patch examples written by PatchSampler (besides IMAGE_PNG, LABEL and DATASET).
PATCH_CLASS = "patch_class"
SOURCE_IMAGE_KEY = "source_image_key"
OVERLAP = "overlap"

# The Transform output the models read (ragged float32 [B, (H), (W), 1]).
TRANSFORMED_IMAGE = "image"

# Evaluation slices, in the order the report shows their columns; crossed slices are (column, column) pairs.
# Age is crossed with the dataset because datasets differ in age mix and case mix alike: an age band's pooled AUC
# would mostly compare datasets. Site and device are not crossed: most of their values occur in one dataset only,
# so a cross would repeat the single-feature slices.
SLICE_FEATURES = (DATASET, DENSITY, AGE_GROUP, SITE, DEVICE, IMPLANT, VIEW, LATERALITY, ABNORMALITY_TYPE)
CROSSED_SLICES = ((DENSITY, DATASET), (AGE_GROUP, DATASET))
# The slices the report's fairness section compares groups of (AUC, FPR and FNR per group).
FAIRNESS_FEATURES = (DENSITY, AGE_GROUP, SITE, DEVICE, IMPLANT)

# Outputs of the exported whole-image model: the mean malignant probability over 4 flips (the gated one) and
# the unflipped probability; the heatmap signature's output.
# `probability` is calibrated on the eval split (the served answer); `score` is the same flip mean uncalibrated;
# `recall` is the operating point's decision (`probability` at or above the image threshold).
PROBABILITY = "probability"
PROBABILITY_SINGLE = "probability_single"
SCORE = "score"
RECALL = "recall"
MODEL_OUTPUTS = (PROBABILITY, PROBABILITY_SINGLE)
HEATMAP = "heatmap"
# Outputs of the exam signature: per image as above, and per breast (one row per distinct breast id of the request,
# in order of first appearance): the breast score (the configured rule over its images' `probability`) and its
# decision at the breast threshold; `breast_index` gives each image's row among the breasts.
BREAST_IDS = "breast_ids"
BREAST_INDEX = "breast_index"
BREAST_SCORE = "breast_score"
BREAST_RECALL = "breast_recall"

# Signatures of the exported model and their input keys.
SERVING_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"
HEATMAP_SIGNATURE = "heatmap"
EXAM_SIGNATURE = "serving_exam"
IMAGE_BYTES_INPUT = "image_bytes"
BREAST_ID_INPUT = "breast_id"
EXAMPLES_INPUT = "examples"

# Files inside artifacts and exports.
SOURCES_MANIFEST_FILE = "sources.json"
# An Examples split's files, as TFX names them: <split dir>/data_tfrecord-00000-of-00002.gz (GZIP TFRecords).
EXAMPLES_FILE_PREFIX = "data_tfrecord"
EXAMPLES_FILE_SUFFIX = ".gz"
QUARANTINE_FILE = "quarantine.csv"
INGEST_SUMMARY_FILE = "summary.json"
PATCH_COUNTS_FILE = "patch_counts.json"
TRAINING_SUMMARY_FILE = "training_summary.json"
KERAS_DIR = "keras"
MODEL_INFO_FILE = "model_info.json"
SERVING_EXTRAS_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
GATE_RESULTS_FILE = "gate_results.json"
PREDICTIONS_FILE = "predictions.csv"
UNIT_EVALUATION_FILE = "unit_evaluation.json"
MODEL_CARD_MARKDOWN = "model_card.md"
MODEL_CARD_JSON = "model_card.json"
# The statistics of the data a pushed model was trained on, beside the version (<version>/assets.extra/<this>/
# Split-<name>/FeatureStats.pb, as StatisticsGen writes them); the baseline of drift checks and `mammo-tfx monitor`.
TRAINING_STATISTICS_DIR = "training_statistics"
# Drift results (mammo_tfx/monitoring/drift.py): in the ExampleValidator's anomalies artifact and in monitor output.
DRIFT_RESULTS_FILE = "drift.json"
# Files of a Trainer's epoch checkpoints (trainer_module/checkpoints.py), outside the artifacts: the progress of the
# schedule, and the weights (+ optimizer) of an epoch as a TensorFlow checkpoint `epoch-<epochs done>`.
TRAINING_STATE_FILE = "training_state.json"
EPOCH_CHECKPOINT_PREFIX = "epoch-"
