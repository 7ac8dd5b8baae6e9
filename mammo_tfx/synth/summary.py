"""What a synthetic dataset run wrote: the ground truth that ingestion tests compare against."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from mammo_tfx.synth.lesions import LesionShape

# Fault kinds a layout may inject; ingestion is expected to quarantine (or, for a missing mask or box, at least flag;
# for a FOR PROCESSING image, exclude) the record each one damages.
FAULT_KINDS: tuple[str, ...] = (
    "truncated_dicom",
    "non_image_dicom",
    "missing_mask",
    "row_points_nowhere",
    "bad_pgm",
    "bad_xml",
    "missing_image",
    "unknown_value",
    "non_mammogram_dicom",
    "for_processing_dicom",
    "no_box_finding",
    "unknown_view",
    "unknown_laterality",
    "bad_label",
)


class SynthFault(NamedTuple):
    """One deliberately broken input: the absolute path of the damaged (or missing) file and the fault kind."""

    path: str
    kind: str


@dataclasses.dataclass(frozen=True)
class SynthLesion:
    """One lesion drawn into a phantom, in the coordinates of the image file as written.

    ``center_rc`` is None when the dataset's annotation gives no location for it (a MIAS row without x/y):
    the lesion is still in the pixels but no mask can be drawn.
    """

    kind: str  # "mass" or "calcification"
    malignant: bool
    center_rc: tuple[float, float] | None
    radius_px: float
    speck_count: int  # calcification specks drawn; 0 for masses

    @property
    def located(self) -> bool:
        return self.center_rc is not None

    @classmethod
    def from_shape(cls, shape: LesionShape) -> SynthLesion:
        """The record of a lesion the renderer drew, at the position it was drawn."""
        return cls(shape.kind, shape.malignant, shape.center_rc, shape.radius_px, shape.speck_count)


@dataclasses.dataclass(frozen=True)
class SynthImage:
    """One scan as the dataset lists it (one CSV/Info.txt image, possibly several annotation rows).

    ``label`` follows the dataset's own image-level rule: 1 malignant, 0 benign or normal, None when the rule
    excludes the image (INbreast BI-RADS 3). ``files`` are the image files relative to the output folder (a
    CBIS-DDSM scan with both mass and calcification rows has one identical DICOM in each case folder).
    ``laterality`` is the side the breast was drawn for, even where the dataset itself does not record it (MIAS).
    ``fault`` names the fault injected into this record, if any.
    """

    image_id: str
    patient_id: str
    files: tuple[str, ...]
    laterality: str  # "L" or "R"
    view: str  # "CC" or "MLO"
    density: int  # 1-4, 0 when the dataset leaves it blank
    label: int | None
    lesions: tuple[SynthLesion, ...]
    height: int
    width: int
    source_split: str  # "train", "test" or "none"
    mask_size_mismatch: bool = False
    fault: str | None = None


@dataclasses.dataclass
class SynthSummary:
    """Everything one ``generate`` call wrote, including the faults it injected."""

    layout: str
    out_dir: str
    patients: int
    images: list[SynthImage] = dataclasses.field(default_factory=list)
    faults: list[SynthFault] = dataclasses.field(default_factory=list)

    @property
    def n_images(self) -> int:
        """Number of images the dataset's index lists (including damaged ones)."""
        return len(self.images)

    @property
    def clean_images(self) -> list[SynthImage]:
        """Images with no injected fault."""
        return [image for image in self.images if image.fault is None]

    def image(self, image_id: str) -> SynthImage:
        """The image with this dataset identifier; KeyError if there is none."""
        for candidate in self.images:
            if candidate.image_id == image_id:
                return candidate
        raise KeyError(f"no synthetic image {image_id!r} in the {self.layout} summary")
