"""Typed hyperparameters of the two Trainer stages (patch classifier, whole-image classifier).

They travel through the Trainer's `custom_config` as plain JSON (`to_dict()` / `from_dict()`, the rule of
mammo_tfx/options.py), so a typo in a pipeline config fails at the start of training instead of silently using a
default. The defaults are the paper's values (Shen et al. 2019); the profiles of pipeline/config.py state how the
demo and test runs differ, and docs/training.md says why.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping, Optional, Type, TypeVar

from mammo_tfx.evaluation.screening import ScreeningOptions
from mammo_tfx.ingest.records import VIEWS
from mammo_tfx.names import RESIZE_MODES, STRETCH
from mammo_tfx.options import Options, check_known_keys
from mammo_tfx.serving.limits import ImageLimits
from trainer_module.backbone_weights import IMAGENET, IMAGENET_NOTOP

# Keys of the Trainer's custom_config.
HPARAMS_CONFIG_KEY = "hparams"
# ImageLimits fields the export's serving graph enforces (the configuration's `serving.image`).
IMAGE_LIMITS_CONFIG_KEY = "image_limits"
# ScreeningOptions fields of the whole-image export's calibration and operating point (`evaluation.screening`).
SCREENING_CONFIG_KEY = "screening"
# TFX's Google Cloud Trainer extension (Kubeflow runs with kubeflow.trainer_service 'vertex') hands its own
# custom_config keys, which all start with this, on to the run_fn in the Vertex AI job.
CLOUD_TRAINING_KEY_PREFIX = "ai_platform_"
# Folder of the Trainer's epoch checkpoints (trainer_module/checkpoints.py); absent: no checkpoints.
CHECKPOINTS_CONFIG_KEY = "checkpoints_dir"

BACKBONES = ("resnet50", "vgg16", "small")


class TrainScope(str, enum.Enum):
    """Which layers train in one step of a schedule (selected by layer name, see schedule.py)."""

    NEW_LAYERS = "new_layers"      # everything except the pretrained trunk (patch: the head)
    TOP_OF_TRUNK = "top_of_trunk"  # new layers + the backbone's last stage
    ALL = "all"


class Distribution(str, enum.Enum):
    AUTO = "auto"          # MirroredStrategy when a GPU is visible, else the default strategy
    MIRRORED = "mirrored"
    DEFAULT = "default"


_T = TypeVar("_T")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class AugmentationConfig(Options):
    """Train-time augmentation, applied in the tf.data pipeline (Keras ImageDataGenerator style)."""

    horizontal_flip: bool = False
    vertical_flip: bool = False
    rotation_degrees: float = 0.0   # uniform in [-r, r]
    shear_radians: float = 0.0      # uniform in [-s, s]
    zoom_range: tuple[float, float] = (1.0, 1.0)  # x and y drawn independently, as in Keras

    def __post_init__(self) -> None:
        _require(self.rotation_degrees >= 0, f"rotation_degrees must be >= 0, got {self.rotation_degrees}")
        _require(self.shear_radians >= 0, f"shear_radians must be >= 0, got {self.shear_radians}")
        _require(len(self.zoom_range) == 2 and 0 < self.zoom_range[0] <= self.zoom_range[1],
                 f"zoom_range must be (low, high) with 0 < low <= high, got {self.zoom_range}")

    @property
    def has_affine(self) -> bool:
        return self.rotation_degrees > 0 or self.shear_radians > 0 or self.zoom_range != (1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class TrainingStep(Options):
    """One step of a layer-wise schedule: recompiled with its own learning rate and weight decay."""

    scope: TrainScope
    learning_rate: float
    epochs: int
    # L2 factor of the new Dense/Conv layers during this step; None keeps the stage's weight_decay.
    weight_decay: Optional[float] = None
    # Batches per epoch in this step; None keeps the stage's steps_per_epoch. A step on cached trunk features
    # (ImageHParams.cache_trunk_features) costs a fraction of a step through the trunk, so it can afford more.
    steps_per_epoch: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", TrainScope(self.scope))
        _require(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _require(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        _require(self.weight_decay is None or self.weight_decay >= 0,
                 f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.steps_per_epoch is None or self.steps_per_epoch > 0,
                 f"steps_per_epoch must be > 0, got {self.steps_per_epoch}")


@dataclasses.dataclass(frozen=True)
class TopBlockSpec(Options):
    """Conv blocks added on top of the patch trunk for the whole-image model.

    kind 'resnet': per stage, `repetitions` bottleneck units 1x1 d / 3x3 d / 1x1 d*expansion, the
    first with stride 2 and a projection shortcut ("[512-512-1024]x2" = depths (512, 512),
    repetitions (2, 2), expansion 2). kind 'vgg': per stage, `repetitions` x (3x3 conv d + BN +
    ReLU) then a 2x2 max-pool ("512x1" = depths (512, 512), repetitions (1, 1)).
    """

    kind: str = "resnet"
    depths: tuple[int, ...] = (512, 512)
    repetitions: tuple[int, ...] = (2, 2)
    bottleneck_expansion: int = 2

    def __post_init__(self) -> None:
        _require(self.kind in ("resnet", "vgg"), f"top block kind must be 'resnet' or 'vgg', got {self.kind!r}")
        _require(len(self.depths) == len(self.repetitions) and len(self.depths) > 0,
                 f"depths {self.depths} and repetitions {self.repetitions} must be non-empty and equally long")
        _require(all(d > 0 for d in self.depths) and all(r > 0 for r in self.repetitions),
                 f"depths and repetitions must be positive, got {self.depths} / {self.repetitions}")
        _require(self.bottleneck_expansion > 0, f"bottleneck_expansion must be > 0, got {self.bottleneck_expansion}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Options):
    """What both stages share: optimisation loop, data pipeline and runtime switches."""

    schedule: tuple[TrainingStep, ...]
    batch_size: int
    weight_decay: float
    dropout: float
    augmentation: AugmentationConfig
    class_balance: bool = True          # per-batch sample weights (seed's --auto-batch-balance)
    steps_per_epoch: Optional[int] = None  # None: fn_args.train_steps // total epochs
    validation_steps: Optional[int] = None  # None: fn_args.eval_steps, or the whole eval split
    early_stopping_patience: Optional[int] = None  # epochs without val_loss improvement, per step
    best_model_monitor: str = "val_auc"  # keep the weights of the best epoch by this metric (max)
    shuffle_buffer: int = 256
    mixed_precision: bool = False
    distribution: Distribution = Distribution.AUTO
    # Seed of every random choice in training (weight initialisation, shuffling, augmentation, dropout); the
    # configuration's `reproducibility.seed` sets it for both stages.
    seed: int = 12345
    # TensorFlow's op determinism while training: the same seed and data give the same weights, at some cost in
    # speed (docs/training.md, "Reproducible training"); `reproducibility.deterministic_ops` sets it.
    deterministic_ops: bool = True

    def validate(self) -> None:
        _require(len(self.schedule) > 0, "schedule must have at least one step")
        _require(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        _require(self.steps_per_epoch is None or self.steps_per_epoch > 0,
                 f"steps_per_epoch must be > 0, got {self.steps_per_epoch}")
        _require(self.validation_steps is None or self.validation_steps > 0,
                 f"validation_steps must be > 0, got {self.validation_steps}")
        _require(self.early_stopping_patience is None or self.early_stopping_patience > 0,
                 f"early_stopping_patience must be > 0, got {self.early_stopping_patience}")
        _require(self.shuffle_buffer > 0, f"shuffle_buffer must be > 0, got {self.shuffle_buffer}")
        _require(self.best_model_monitor.startswith("val_"),
                 f"best_model_monitor must be a validation metric (val_*), got {self.best_model_monitor!r}")

    @property
    def total_epochs(self) -> int:
        return sum(step.epochs for step in self.schedule)


def _patch_schedule() -> tuple[TrainingStep, ...]:
    # Paper: Adam, 1e-3 / 1e-4 / 1e-5 for 3 / 10 / 37 epochs (head; top of trunk; all layers).
    return (TrainingStep(TrainScope.NEW_LAYERS, 1e-3, 3),
            TrainingStep(TrainScope.TOP_OF_TRUNK, 1e-4, 10),
            TrainingStep(TrainScope.ALL, 1e-5, 37))


def _patch_augmentation() -> AugmentationConfig:
    return AugmentationConfig(horizontal_flip=True, vertical_flip=True, rotation_degrees=25.0,
                              shear_radians=0.2, zoom_range=(0.8, 1.2))


@dataclasses.dataclass(frozen=True)
class PatchHParams(TrainingConfig):
    """Stage 1: the 5-class patch classifier (trunk -> GAP -> Dropout -> Dense(5, softmax, L2))."""

    schedule: tuple[TrainingStep, ...] = dataclasses.field(default_factory=_patch_schedule)
    batch_size: int = 32
    weight_decay: float = 1e-4
    dropout: float = 0.0
    augmentation: AugmentationConfig = dataclasses.field(default_factory=_patch_augmentation)
    # ModelCheckpoint on val_acc in the seed; the patch task is 5-class.
    best_model_monitor: str = "val_accuracy"
    backbone: str = "resnet50"
    # None: random init; "imagenet": the published no-top file (Keras cache, else downloaded); else the local or
    # bucket path of a Keras weights file of the trunk (trainer_module/backbone_weights.py).
    backbone_weights: Optional[str] = None
    small_backbone_widths: tuple[int, ...] = (32, 64, 128)  # only for backbone 'small'
    patch_size: int = 224
    # Trunk cells left out at each side of the patch's feature map before the head pools it. A cell near the
    # patch edge sees the conv layers' zero padding, which a whole image never shows it: with a trunk whose
    # receptive field is small next to the patch, a head that pools those cells learns padding artefacts, and
    # the classifier run convolutionally over a whole image (stage 2's trunk, the heatmap) sees other features
    # than in training. With the border cut, the head pools only cells that see real pixels, exactly what the
    # heatmap pools on a whole image. 0 (the paper) suits ResNet50/VGG16 at 224, whose 7x7 cells all see far
    # past the patch anyway.
    head_border_cells: int = 0
    num_classes: int = 5

    def __post_init__(self) -> None:
        self.validate()
        _require(self.backbone in BACKBONES, f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        _require(self.backbone_weights != IMAGENET or self.backbone in IMAGENET_NOTOP,
                 f"backbone_weights={IMAGENET!r} needs a backbone with published ImageNet weights "
                 f"{sorted(IMAGENET_NOTOP)}, got {self.backbone!r}")
        _require(len(self.small_backbone_widths) > 0 and all(w > 0 for w in self.small_backbone_widths),
                 f"small_backbone_widths must be positive, got {self.small_backbone_widths}")
        _require(self.patch_size > 0, f"patch_size must be > 0, got {self.patch_size}")
        _require(self.head_border_cells >= 0, f"head_border_cells must be >= 0, got {self.head_border_cells}")
        _require(self.num_classes == 5,
                 f"num_classes must be 5 (background, calc mal, calc ben, mass mal, mass ben), got {self.num_classes}")


def _image_schedule() -> tuple[TrainingStep, ...]:
    # Paper: Adam, new layers at 1e-4 (weight decay 1e-3) for 30 epochs, then all layers at 1e-5 for 20.
    return (TrainingStep(TrainScope.NEW_LAYERS, 1e-4, 30),
            TrainingStep(TrainScope.ALL, 1e-5, 20))


def _image_augmentation() -> AugmentationConfig:
    return AugmentationConfig(horizontal_flip=True, vertical_flip=True)


@dataclasses.dataclass(frozen=True)
class ImageHParams(TrainingConfig):
    """Stage 2: the whole-image classifier (patch trunk -> top blocks -> GAP -> Dropout -> Dense(2)).

    The backbone and patch size come from stage 1's export; `image_size` is the working size of the
    ExampleGen images (rows, cols).
    """

    schedule: tuple[TrainingStep, ...] = dataclasses.field(default_factory=_image_schedule)
    batch_size: int = 4
    weight_decay: float = 1e-3
    dropout: float = 0.0
    augmentation: AugmentationConfig = dataclasses.field(default_factory=_image_augmentation)
    early_stopping_patience: Optional[int] = 10
    best_model_monitor: str = "val_auc"
    image_size: tuple[int, int] = (1152, 896)
    # How ingestion brought the scans to image_size (ingest.resize_mode): every serving signature repeats it.
    resize_mode: str = STRETCH
    top_block: TopBlockSpec = dataclasses.field(default_factory=TopBlockSpec)
    # A whole-image model of the same architecture to fine-tune: a SavedModel directory written by
    # this module's export, or a Keras .h5 file. None starts from stage 1's patch trunk.
    init_from: Optional[str] = None
    # In 'new_layers' steps the trunk is frozen (BatchNorm in inference mode), so its output for an image is
    # fixed: compute it once for every training image in each flip the augmentation can draw, and for the
    # validation images, then train the head on those features. The same updates at a fraction of the cost
    # (the trunk dominates it), so the step can afford many more. Needs flip-only augmentation (a rotated
    # image's features are not a transform of the cached ones) and memory for 4 x (train images) trunk
    # outputs: fine at demo size, not for ResNet50 at 1152x896 (8 MB per image).
    cache_trunk_features: bool = False
    # Views the train split keeps (e.g. ("CC", "MLO") to leave out RSNA's supplementary ML/LM/AT/LMO images); empty
    # keeps every view. Validation, evaluation and test always see every view, so each is reported as a slice.
    train_views: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.validate()
        _require(set(self.train_views) <= set(VIEWS) and len(set(self.train_views)) == len(self.train_views),
                 f"train_views must be distinct views of {VIEWS}, got {self.train_views}")
        _require(self.resize_mode in RESIZE_MODES,
                 f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode}")
        _require(len(self.image_size) == 2 and all(s > 0 for s in self.image_size),
                 f"image_size must be (rows, cols) > 0, got {self.image_size}")
        _require(all(step.scope != TrainScope.TOP_OF_TRUNK for step in self.schedule),
                 "the whole-image schedule trains 'new_layers' or 'all'; 'top_of_trunk' is a patch step")
        _require(not (self.cache_trunk_features and self.augmentation.has_affine),
                 "cache_trunk_features needs flip-only augmentation: rotation, shear or zoom would have to run "
                 "through the trunk every step")


def hparams_from_custom_config(cls: Type[_T], custom_config: Optional[Mapping[str, Any]]) -> _T:
    """A stage's hparams from a Trainer custom_config: `custom_config['hparams']`, defaults for missing keys."""
    config = {key: value for key, value in (custom_config or {}).items()
              if not key.startswith(CLOUD_TRAINING_KEY_PREFIX)}
    check_known_keys("custom_config", config,
                     (HPARAMS_CONFIG_KEY, IMAGE_LIMITS_CONFIG_KEY, SCREENING_CONFIG_KEY, CHECKPOINTS_CONFIG_KEY))
    return cls.from_dict(config.get(HPARAMS_CONFIG_KEY) or {})


def image_limits_from_custom_config(custom_config: Optional[Mapping[str, Any]]) -> ImageLimits:
    """The serving limits a Trainer's export enforces: `custom_config['image_limits']`, defaults for missing keys."""
    return ImageLimits.from_dict((custom_config or {}).get(IMAGE_LIMITS_CONFIG_KEY) or {})


def screening_options_from_custom_config(custom_config: Optional[Mapping[str, Any]]) -> ScreeningOptions:
    """How the whole-image export calibrates and decides: `custom_config['screening']`, defaults for missing keys."""
    return ScreeningOptions.from_dict((custom_config or {}).get(SCREENING_CONFIG_KEY) or {})
