"""Synthetic (mini-)MIAS: ``mdbNNN.pgm`` files (1024x1024, 8-bit binary PGM) and ``Info.txt``.

Info.txt rows are ``REFNUM BG CLASS SEVERITY X Y RADIUS`` with the origin at the bottom-left (row = 1024 - Y);
normal images have only ``REFNUM BG NORM``; an image with several abnormalities repeats its REFNUM; one abnormal
row has no coordinates, as in the real file. Consecutive images (mdb001/mdb002, ...) are the two breasts of one
woman; as the MIAS documentation says, the even one is the left breast and the odd one the right (chest wall on the
left, resp. right, image edge). MIAS does not otherwise record laterality or view; the phantoms are MLO views. The
breast is fitted to the image height and padded with black to 1024 columns.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from mammo_tfx.synth.faults import truncate_file
from mammo_tfx.synth.lesions import footprint_radius
from mammo_tfx.synth.phantom import LesionRequest, PhantomRequest, quantize, render_phantom
from mammo_tfx.synth.seeding import rng_for
from mammo_tfx.synth.summary import SynthFault, SynthImage, SynthLesion, SynthSummary

LAYOUT = "mias"
IMAGE_SIZE = 1024
INFO_HEADER = "REFNUM BG CLASS SEVERITY X Y RADIUS"
BACKGROUND_DENSITY = {"F": (1, 2), "G": (2, 3), "D": (3, 4)}  # fatty, glandular, dense -> ACR-like 1-4
# MIAS class + severity -> what is drawn. Classes whose real severity varies are pinned to the look drawn.
ABNORMAL_CLASSES = (
    ("CALC", "B", "calcification", False),
    ("CALC", "M", "calcification", True),
    ("CIRC", "B", "mass", False),
    ("SPIC", "M", "mass", True),
    ("MISC", "M", "mass", True),
    ("ARCH", "M", "mass", True),
    ("ASYM", "B", "mass", False),
)
CLASS_PROBABILITIES = (0.17, 0.12, 0.22, 0.17, 0.1, 0.12, 0.1)
NORMAL_SHARE = 0.6


@dataclasses.dataclass(frozen=True)
class _Finding:
    mias_class: str
    severity: str
    kind: str
    malignant: bool


@dataclasses.dataclass(frozen=True)
class _Image:
    number: int
    background: str
    findings: tuple[_Finding, ...]
    fault: str | None = None

    @property
    def refnum(self) -> str:
        return f"mdb{self.number:03d}"

    @property
    def side(self) -> str:
        return "R" if self.number % 2 == 1 else "L"


def _plan(seed: int, patients: int) -> list[_Image]:
    images = []
    for pair in range(1, patients + 1):
        background = str(rng_for(seed, LAYOUT, "pair", pair).choice(["F", "G", "D"]))
        for number in (2 * pair - 1, 2 * pair):
            rng = rng_for(seed, LAYOUT, "plan", number)
            findings: tuple[_Finding, ...] = ()
            if rng.random() >= NORMAL_SHARE:
                count = 2 if rng.random() < 0.15 else 1
                picks = rng.choice(len(ABNORMAL_CLASSES), size=count, p=CLASS_PROBABILITIES)
                findings = tuple(_Finding(*ABNORMAL_CLASSES[int(i)]) for i in picks)
            images.append(_Image(number, background, findings))
    if images and not any(image.findings for image in images):
        # Keep at least one abnormal image so every run exercises the coordinate rows.
        images[0] = dataclasses.replace(images[0], findings=(_Finding(*ABNORMAL_CLASSES[2]),))
    return images


def _pgm_bytes(pixels: np.ndarray) -> bytes:
    return f"P5\n{pixels.shape[1]} {pixels.shape[0]}\n255\n".encode("ascii") + pixels.tobytes()


def _render(seed: int, image: _Image) -> tuple[np.ndarray, list[SynthLesion]]:
    """The padded 1024x1024 8-bit image and its lesions, with centres/radii as Info.txt states them."""
    rng = rng_for(seed, LAYOUT, "image", image.number)
    width = int(round(IMAGE_SIZE * rng.uniform(0.55, 0.7)))
    density = int(rng.choice(BACKGROUND_DENSITY[image.background]))
    requests = tuple(LesionRequest(f.kind, f.malignant) for f in image.findings)
    phantom = render_phantom(PhantomRequest(IMAGE_SIZE, width, image.side, "MLO", density, requests), rng)
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    offset = 0 if image.side == "L" else IMAGE_SIZE - width  # chest wall stays on the image edge
    canvas[:, offset : offset + width] = quantize(phantom.image, 8)
    lesions = []
    for shape in phantom.lesions:
        shape = shape.shifted(0, offset)
        # MIAS radii enclose the whole abnormality, spicules included; coordinates are whole pixels.
        radius = round(footprint_radius(shape.kind, shape.malignant, shape.radius_px))
        x, y = round(shape.center_rc[1]), IMAGE_SIZE - round(shape.center_rc[0])
        lesions.append(SynthLesion(shape.kind, shape.malignant, (float(IMAGE_SIZE - y), float(x)), float(radius),
                                   shape.speck_count))
    return canvas, lesions


def write_mias(out_dir: str, patients: int, seed: int, inject_faults: bool, scale: float) -> SynthSummary:
    """Write ``patients`` synthetic MIAS women (two images each) into ``out_dir``.

    ``scale`` is accepted for a uniform interface but ignored: MIAS images are always 1024x1024.
    """
    del scale
    if patients > 499:
        raise ValueError(f"MIAS reference numbers have 3 digits: at most 499 patients, got {patients}")
    os.makedirs(out_dir, exist_ok=True)
    images = _plan(seed, patients)
    if inject_faults:
        first = 2 * patients + 1
        images += [_Image(first + i, "F", (), fault) for i, fault in
                   enumerate(("bad_pgm", "bad_pgm", "row_points_nowhere"))]

    summary = SynthSummary(LAYOUT, out_dir, patients)
    info_lines = [INFO_HEADER]
    coordinates_dropped = False
    for image in images:
        path = os.path.join(out_dir, f"{image.refnum}.pgm")
        pixels, lesions = _render(seed, image)
        if image.fault is None:
            with open(path, "wb") as handle:
                handle.write(_pgm_bytes(pixels))
        elif image.fault == "bad_pgm" and image.number % 2 == 1:
            with open(path, "wb") as handle:
                handle.write(b"P9\n# not a portable graymap\n" + pixels.tobytes()[:4096])
        elif image.fault == "bad_pgm":
            with open(path, "wb") as handle:
                handle.write(_pgm_bytes(pixels))
            truncate_file(path, 0.3)
        if image.fault is not None:
            summary.faults.append(SynthFault(path, image.fault))

        if not lesions:
            info_lines.append(f"{image.refnum} {image.background} NORM")
        for index, (finding, lesion) in enumerate(zip(image.findings, lesions)):
            row_start = f"{image.refnum} {image.background} {finding.mias_class} {finding.severity}"
            if not coordinates_dropped:
                # Real Info.txt has abnormal rows without a location; the first abnormal row plays that part.
                coordinates_dropped = True
                info_lines.append(row_start)
                lesions[index] = dataclasses.replace(lesion, center_rc=None)
                continue
            row, col = lesion.center_rc  # type: ignore[misc]  # always set: _render locates every lesion
            info_lines.append(f"{row_start} {int(col)} {int(IMAGE_SIZE - row)} {int(lesion.radius_px)}")
        summary.images.append(
            SynthImage(
                image_id=image.refnum,
                patient_id=f"mdb{image.number - (1 - image.number % 2):03d}",
                files=(f"{image.refnum}.pgm",),
                laterality=image.side,
                view="MLO",
                density=0,
                label=int(any(f.malignant for f in image.findings)),
                lesions=tuple(lesions),
                height=IMAGE_SIZE,
                width=IMAGE_SIZE,
                source_split="none",
                fault=image.fault,
            )
        )
    with open(os.path.join(out_dir, "Info.txt"), "w", encoding="ascii", newline="") as handle:
        handle.write("\n".join(info_lines) + "\n")
    return summary
