"""Synthetic RSNA Screening Mammography: ``train.csv`` and ``train_images/<patient_id>/<image_id>.dcm``.

Written from the publisher's description (docs: /work/shared/notes/dataset-layouts.md), not from our reader:
- train.csv with the 14 columns in the publisher's order; age a float ("61.0") or blank, BIRADS and density often
  blank, implant 0/1, difficult_negative_case True/False, cancer per breast (both views of a cancer breast say 1).
- Mostly negatives: about 4% of patients have one cancer breast, but at least 3 (so each of the usual three splits
  can get one in a tiny set; the ExampleGen hashes patients into splits, so this is likely, not certain).
- Two sites and six machines; each machine fixes how its DICOMs are written (transfer syntax JPEG 2000 lossless or
  JPEG lossless SV1, MONOCHROME1 or 2, VOI LUT function LINEAR or SIGMOID with Window Center/Width and no VOI LUT
  sequence, as the real files). Patients take machines in turn, so even one patient per machine covers them all.
- Two kinds of header, machine by machine in turn (which tags survived the organisers' re-packaging is not
  documented, so the generator writes both): a full digital-mammography header (Modality MG, the Digital Mammography
  For Presentation SOP class, PresentationIntentType) and a stripped, re-packaged one (no Modality, no SOPClassUID in
  the dataset, a Secondary Capture file meta).
- Views CC and MLO per breast, plus now and then a supplementary ML, LM, AT or LMO image.
- JPEG 2000 is encoded by pydicom with pylibjpeg-openjpeg; JPEG lossless by synth/jpeg_lossless.py (pydicom has no
  encoder for it).
Faults (inject_faults): a truncated DICOM, a row whose file is missing, rows with an unknown view, laterality or
cancer value, and a DICOM whose Modality is not MG.
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1

from mammo_tfx.synth.dicom_io import (DIGITAL_MAMMOGRAPHY_STORAGE, SECONDARY_CAPTURE_STORAGE, DicomIdentity,
                                      build_dicom, save_dicom)
from mammo_tfx.synth.faults import truncate_file
from mammo_tfx.synth.inbreast import window_tags
from mammo_tfx.synth.jpeg_lossless import encode_jpeg_lossless
from mammo_tfx.synth.phantom import LesionRequest, PhantomRequest, quantize, render_phantom
from mammo_tfx.synth.seeding import derive_uid, rng_for
from mammo_tfx.synth.summary import SynthFault, SynthImage, SynthLesion, SynthSummary

LAYOUT = "rsna"
CSV_HEADER = ("site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy", "invasive",
              "BIRADS", "implant", "density", "machine_id", "difficult_negative_case")
IMAGE_FOLDER = "train_images"
# Real sizes are about 2776x2082 to 3328x2560 (and 4096x3328); scale 1.0 writes a quarter of that.
IMAGE_SIZES = ((832, 640), (694, 520))
CANCER_SHARE = 0.04
MIN_CANCER_PATIENTS = 3
SUPPLEMENTARY_VIEWS = ("ML", "LM", "AT", "LMO")
PHANTOM_VIEW = {"CC": "CC", "AT": "CC", "MLO": "MLO", "ML": "MLO", "LM": "MLO", "LMO": "MLO"}


@dataclasses.dataclass(frozen=True)
class Machine:
    """How one acquisition machine's files are written."""

    site_id: int
    machine_id: int
    transfer_syntax: str
    bits_stored: int
    photometric: str
    voi_function: str
    repackaged: bool  # a stripped header: no Modality, a Secondary Capture file meta


# The file meta SOP class of a re-packaged file.
REPACKAGED_SOP_CLASS = SECONDARY_CAPTURE_STORAGE


MACHINES = (
    Machine(1, 21, JPEG2000Lossless, 12, "MONOCHROME2", "LINEAR", True),
    Machine(1, 29, JPEGLosslessSV1, 16, "MONOCHROME1", "LINEAR", False),
    Machine(1, 49, JPEGLosslessSV1, 12, "MONOCHROME2", "SIGMOID", True),
    Machine(2, 48, JPEG2000Lossless, 12, "MONOCHROME1", "SIGMOID", False),
    Machine(2, 93, JPEG2000Lossless, 16, "MONOCHROME2", "LINEAR", True),
    Machine(2, 216, JPEGLosslessSV1, 12, "MONOCHROME2", "LINEAR", False),
)


@dataclasses.dataclass(frozen=True)
class _Row:
    """One train.csv row and the file written for it."""

    patient_id: str
    image_id: str
    side: str
    view: str  # as written in the CSV (may be a fault's unknown value)
    age: str
    cancer: str
    biopsy: int
    invasive: int
    birads: str
    implant: int
    density: str  # A-D or blank
    machine: Machine
    lesions: tuple[LesionRequest, ...]
    size: tuple[int, int]
    fault: str | None = None

    def csv_line(self) -> str:
        return ",".join([str(self.machine.site_id), self.patient_id, self.image_id, self.side, self.view, self.age,
                         self.cancer, str(self.biopsy), str(self.invasive), self.birads, str(self.implant),
                         self.density, str(self.machine.machine_id), str(self.biopsy == 1 and self.cancer == "0")])


def _cancer_patients(patients: int) -> set[int]:
    """Patient numbers with a cancer breast, spread over the range."""
    count = min(patients, max(MIN_CANCER_PATIENTS, math.ceil(CANCER_SHARE * patients)))
    return {1 + (index * patients) // count for index in range(count)}


def _plan_patient(seed: int, number: int, cancer: bool, scale: float) -> list[_Row]:
    rng = rng_for(seed, LAYOUT, "patient", number)
    patient_id = str(10000 + number * 7)
    machine = MACHINES[(number - 1) % len(MACHINES)]
    rows, cols = IMAGE_SIZES[int(rng.random() < 0.3)]
    size = (max(int(round(rows * scale)), 48), max(int(round(cols * scale)), 40))
    age = "" if rng.random() < 0.05 else f"{float(rng.integers(38, 90)):.1f}"
    density = "" if rng.random() < 0.45 else str(rng.choice(list("ABCD"), p=[0.1, 0.45, 0.38, 0.07]))
    implant = int(rng.random() < 0.03)
    cancer_side = str(rng.choice(["L", "R"])) if cancer else ""
    planned = []
    for side in ("L", "R"):
        malignant = side == cancer_side
        benign_biopsy = not malignant and rng.random() < 0.03
        lesions = ((LesionRequest(str(rng.choice(["mass", "calcification"])), malignant),)
                   if malignant or benign_biopsy else ())
        birads = "0" if malignant or benign_biopsy else str(rng.choice(["", "1", "2"], p=[0.5, 0.3, 0.2]))
        views = ["CC", "MLO"] + ([str(rng.choice(SUPPLEMENTARY_VIEWS))] if rng.random() < 0.15 else [])
        for view in views:
            image_id = str(int(rng.integers(10**8, 2 * 10**9)))
            planned.append(_Row(patient_id, image_id, side, view, age, str(int(malignant)),
                                int(malignant or benign_biopsy), int(malignant and rng.random() < 0.6), birads,
                                implant, density, machine, lesions, size))
    return planned


def _plan_faults(number: int, scale: float) -> list[_Row]:
    """One extra patient whose rows each carry one fault."""
    patient_id = str(10000 + number * 7)
    size = (max(int(round(IMAGE_SIZES[0][0] * scale)), 48), max(int(round(IMAGE_SIZES[0][1] * scale)), 40))
    plan = (("L", "CC", "0", "truncated_dicom"), ("L", "MLO", "0", "missing_image"), ("R", "XCCL", "0", "unknown_view"),
            ("B", "CC", "0", "unknown_laterality"), ("R", "MLO", "", "bad_label"), ("R", "CC", "0", "non_mammogram_dicom"))
    return [_Row(patient_id, str(900000000 + index), side, view, "55.0", cancer, 0, 0, "1", 0, "B",
                 MACHINES[index % len(MACHINES)], (), size, fault)
            for index, (side, view, cancer, fault) in enumerate(plan)]


def compressed_dicom(pixels: np.ndarray, machine: Machine, identity: DicomIdentity,
                      tags: dict[str, object]) -> Dataset:
    """The DICOM dataset of `pixels` (stored values) compressed in the machine's transfer syntax, with its
    photometric interpretation and kind of header (a re-packaged machine's: no Modality, no dataset SOP class, a
    Secondary Capture file meta)."""
    if machine.repackaged:
        identity = dataclasses.replace(identity, sop_class_uid=REPACKAGED_SOP_CLASS)
        tags = {keyword: value for keyword, value in tags.items()
                if keyword not in ("Modality", "PresentationIntentType")}
    ds = build_dicom(pixels, machine.bits_stored, identity, tags)
    if machine.repackaged:
        del ds.SOPClassUID
    ds.PhotometricInterpretation = machine.photometric
    if machine.transfer_syntax == JPEG2000Lossless:
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    else:
        ds.PixelData = encapsulate([encode_jpeg_lossless(pixels, machine.bits_stored)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    return ds


def write_rsna(out_dir: str, patients: int, seed: int, inject_faults: bool, scale: float) -> SynthSummary:
    """Write ``patients`` synthetic RSNA patients: ``out_dir/train.csv`` and ``out_dir/train_images/``."""
    cancers = _cancer_patients(patients)
    rows = [row for number in range(1, patients + 1) for row in _plan_patient(seed, number, number in cancers, scale)]
    if inject_faults:
        rows += _plan_faults(patients + 1, scale)
    summary = SynthSummary(LAYOUT, out_dir, patients)
    for row in rows:
        relative = f"{IMAGE_FOLDER}/{row.patient_id}/{row.image_id}.dcm"
        path = os.path.join(out_dir, relative)
        density = "ABCD".index(row.density) + 1 if row.density else 0
        request = PhantomRequest(*row.size, row.side if row.side in ("L", "R") else "L",
                                 PHANTOM_VIEW.get(row.view, "CC"), density or 2, row.lesions)
        phantom = render_phantom(request, rng_for(seed, LAYOUT, "image", row.image_id))
        pixels = quantize(phantom.image, row.machine.bits_stored)
        tags: dict[str, object] = {"PatientID": row.patient_id, "Modality": "MG", "BodyPartExamined": "BREAST",
                                   "PresentationIntentType": "FOR PRESENTATION", "ImageLaterality": row.side,
                                   **window_tags(pixels, phantom.breast_mask)}
        if row.machine.voi_function == "SIGMOID":
            tags["VOILUTFunction"] = "SIGMOID"
        if row.machine.photometric == "MONOCHROME1":
            pixels = ((1 << row.machine.bits_stored) - 1 - pixels).astype(pixels.dtype)
            tags["WindowCenter"] = str((1 << row.machine.bits_stored) - 1 - int(tags["WindowCenter"]))
        if row.fault != "missing_image":
            identity = DicomIdentity(DIGITAL_MAMMOGRAPHY_STORAGE, derive_uid(seed, LAYOUT, "sop", row.image_id),
                                     derive_uid(seed, LAYOUT, "study", row.patient_id),
                                     derive_uid(seed, LAYOUT, "series", row.patient_id, row.side, row.view))
            ds = compressed_dicom(pixels, row.machine, identity, tags)
            if row.fault == "non_mammogram_dicom":
                ds.Modality = "OT"
            save_dicom(ds, path)
        if row.fault == "truncated_dicom":
            truncate_file(path, 0.5)
        if row.fault is not None:
            summary.faults.append(SynthFault(path, row.fault))
        summary.images.append(SynthImage(
            image_id=row.image_id, patient_id=row.patient_id, files=(relative,), laterality=row.side, view=row.view,
            density=density,
            label=int(row.cancer) if row.cancer in ("0", "1") else None,
            lesions=tuple(SynthLesion.from_shape(shape) for shape in phantom.lesions),
            height=row.size[0], width=row.size[1], source_split="none", fault=row.fault))
    with open(os.path.join(out_dir, "train.csv"), "w", encoding="utf-8", newline="") as handle:
        handle.write("\n".join([",".join(CSV_HEADER)] + [row.csv_line() for row in rows]) + "\n")
    return summary
