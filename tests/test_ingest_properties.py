"""Property tests of ingestion's contract on mutated real inputs: the 8 real DICOMs, generated CBIS-DDSM CSVs,
INbreast XML and MIAS Info.txt, truncated, bit-flipped, re-encoded or given absurd values.

Whatever the mutation, listing and processing never raise (a lister may refuse a whole root only with
BadInputError, which the ExampleGen reports as one row) and never hang (each record runs under
ingest.record_timeout_s; Hypothesis' deadline bounds a whole case), and every listed record ends as an example
or a quarantine entry with a reason. Examples per test are bounded so the file runs in well under a minute.
"""
from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pydicom
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import AllTransferSyntaxes

from mammo_tfx import synth
from mammo_tfx.ingest.layouts import LISTERS
from mammo_tfx.ingest.options import IngestOptions
from mammo_tfx.ingest.process import process_record
from mammo_tfx.ingest.real_samples import real_cases_dir
from mammo_tfx.ingest.records import BadInputError, QuarantineEntry, ScanRecord

# Small working size; a timeout far above a real scan's decode yet low enough that a hang fails within the deadline.
OPTIONS = IngestOptions(height=64, width=48, record_timeout_s=20)
# derandomize: the same cases on every run, so that a failure in CI reproduces on a laptop (no example database).
CASES = settings(max_examples=40, deadline=timedelta(seconds=30), derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

Mutation = Callable[[bytes], bytes]


def truncations() -> st.SearchStrategy[Mutation]:
    return st.floats(0.0, 1.0, exclude_max=True).map(lambda share: lambda data: data[:int(len(data) * share)])


def byte_flips() -> st.SearchStrategy[Mutation]:
    """XOR a few bytes at offsets given as shares of the file, so header and pixel data are both hit."""
    flips = st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8)

    def apply(pairs: list[tuple[float, int]]) -> Mutation:
        def mutate(data: bytes) -> bytes:
            out = bytearray(data)
            for share, mask in pairs:
                out[int(len(out) * share)] ^= mask
            return bytes(out)
        return mutate
    return flips.map(apply)


def reencodings() -> st.SearchStrategy[Mutation]:
    """Odd encodings of a text file: UTF-16 (with BOM), Latin-1 with non-ASCII text, a stray BOM, NUL bytes."""
    return st.sampled_from([
        lambda data: data.decode("utf-8", "replace").encode("utf-16"),
        lambda data: data.decode("utf-8", "replace").replace("a", "\u00e4").encode("latin-1", "replace"),
        lambda data: b"\xef\xbb\xbf\xef\xbb\xbf" + data,
        lambda data: data.replace(b"\n", b"\0\n", 3),
        lambda data: data.replace(b"\n", b"\r"),
    ])


def garbage_lines() -> st.SearchStrategy[Mutation]:
    """Random lines of text (any Unicode, separators and digits likely) inserted at a random line."""
    line = st.text(st.sampled_from(list(" ,;\t.-_/()\"'0123456789eE+abcdefMNBGFDLRCCMLO\u00e9\u4e2d\ufffd")) |
                   st.characters(), max_size=80)

    def insert(args: tuple[list[str], float]) -> Mutation:
        lines, share = args

        def mutate(data: bytes) -> bytes:
            rows = data.split(b"\n")
            at = int(len(rows) * share)
            return b"\n".join(rows[:at] + [text.encode("utf-8", "surrogatepass") for text in lines] + rows[at:])
        return mutate
    return st.tuples(st.lists(line, min_size=1, max_size=5), st.floats(0.0, 1.0)).map(insert)


def text_mutations() -> st.SearchStrategy[Mutation]:
    return st.one_of(truncations(), byte_flips(), reencodings(), garbage_lines())


def check_contract(layout: str, root: Path) -> list:
    """List and process a dataset the way the ExampleGen does; returns the outcomes after checking the contract."""
    try:
        listed = list(LISTERS[layout](str(root), OPTIONS))
    except BadInputError as error:  # the whole root is unusable: the ExampleGen reports it as one row
        assert error.reason and error.file
        return []
    outcomes = [item if isinstance(item, QuarantineEntry) else process_record(item, OPTIONS) for item in listed]
    assert len(outcomes) == len(listed)
    for item, outcome in zip(listed, outcomes):
        assert isinstance(item, (ScanRecord, QuarantineEntry)), item
        if isinstance(outcome, QuarantineEntry):
            assert outcome.reason.strip() and outcome.file, outcome
        else:
            assert isinstance(outcome, tf.train.Example)
    return outcomes


def mutated_copy(source: Path, relative: str, mutation: Mutation) -> tempfile.TemporaryDirectory:
    """A temporary copy of the dataset `source` (files symlinked) with the file `relative` replaced by its mutation."""
    workdir = tempfile.TemporaryDirectory()
    root = Path(workdir.name) / "data"
    shutil.copytree(source, root, copy_function=os.symlink)
    target = root / relative
    data = (source / relative).read_bytes()
    target.unlink()
    target.write_bytes(mutation(data))
    return workdir


# --- DICOM -------------------------------------------------------------------------------------------------------

REAL_DICOMS = sorted(real_cases_dir().rglob("*.dcm"))


def size_edits() -> st.SearchStrategy[Mutation]:
    """Absurd sizes written into a real header (pixel data untouched)."""
    keywords = st.sampled_from(["Rows", "Columns", "BitsAllocated", "BitsStored", "NumberOfFrames",
                                "SamplesPerPixel", "PixelRepresentation", "HighBit"])
    sizes = st.sampled_from([0, 1, 2, 7, 8, 12, 15, 16, 17, 32, 64, 4096, 65535])

    def apply(edits: list[tuple[str, int]]) -> Mutation:
        def mutate(data: bytes) -> bytes:
            ds = pydicom.dcmread(io.BytesIO(data))
            for keyword, value in edits:
                setattr(ds, keyword, value)
            out = io.BytesIO()
            ds.save_as(out)
            return out.getvalue()
        return mutate
    return st.lists(st.tuples(keywords, sizes), min_size=1, max_size=3).map(apply)


def wrong_transfer_syntaxes() -> st.SearchStrategy[Mutation]:
    """The file meta names another transfer syntax (known, unknown or empty) than the data set is encoded in."""
    uids = st.sampled_from(sorted(AllTransferSyntaxes) + ["1.2.3.4", "", "1.2.840.10008.1.2.4.80.999"])

    def apply(uid: str) -> Mutation:
        def mutate(data: bytes) -> bytes:
            # The meta group (explicit VR little endian) ends where its (0002,0000) group length says.
            meta_end = 144 + struct.unpack("<I", data[140:144])[0]
            meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
            meta.TransferSyntaxUID = uid
            out = DicomBytesIO()
            write_file_meta_info(out, meta, enforce_standard=False)
            return data[:132] + out.getvalue() + data[meta_end:]
        return mutate
    return uids.map(apply)


@pytest.fixture(scope="module")
def real_pairs(tmp_path_factory) -> list[Path]:
    """Folder datasets of two real scans each: pos/ the one to mutate, neg/ an untouched neighbour."""
    roots = []
    for index, scan in enumerate(REAL_DICOMS):
        root = tmp_path_factory.mktemp("real")
        for folder, path in (("pos", scan), ("neg", REAL_DICOMS[(index + 1) % len(REAL_DICOMS)])):
            (root / folder).mkdir()
            os.symlink(path, root / folder / path.name)
        roots.append(root)
    return roots


@pytest.mark.e2e
@CASES
@given(index=st.integers(0, len(REAL_DICOMS) - 1),
       mutation=st.one_of(truncations(), byte_flips(), size_edits(), wrong_transfer_syntaxes()))
def test_mutated_real_dicoms_end_as_examples_or_reasons(real_pairs, index, mutation):
    root = real_pairs[index]
    with mutated_copy(root, f"pos/{REAL_DICOMS[index].name}", mutation) as workdir:
        outcomes = check_contract("folder", Path(workdir) / "data")
    assert len(outcomes) == 2
    # The untouched scan is still ingested: one bad record sinks no other.
    assert any(not isinstance(outcome, QuarantineEntry) for outcome in outcomes), outcomes


# --- CBIS-DDSM CSVs, INbreast XML and CSV, MIAS Info.txt ----------------------------------------------------------

@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generated")
    for layout, patients in (("cbis-ddsm", 2), ("inbreast", 2), ("mias", 1)):
        synth.generate(layout, root / layout, patients=patients, seed=5, scale=0.1)
    return {layout: root / layout for layout in ("cbis-ddsm", "inbreast", "mias")}


def cbis_csv(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*_case_description_*.csv"))


def dropped_column() -> st.SearchStrategy[Mutation]:
    """A CSV with one header column (and every row's cell in it) removed."""
    def drop(column: int) -> Mutation:
        def mutate(data: bytes) -> bytes:
            rows = data.decode("utf-8").split("\n")
            return "\n".join(",".join(cell for i, cell in enumerate(row.split(",")) if i != column)
                             for row in rows).encode()
        return mutate
    return st.integers(0, 13).map(drop)


@pytest.mark.e2e
@CASES
@given(which=st.integers(0, 3), mutation=st.one_of(text_mutations(), dropped_column()))
def test_mutated_cbis_ddsm_csvs_end_as_examples_or_reasons(generated, which, mutation):
    root = generated["cbis-ddsm"]
    files = cbis_csv(root)
    with mutated_copy(root, files[which % len(files)], mutation) as workdir:
        check_contract("cbis-ddsm", Path(workdir) / "data")


def plist_edits() -> st.SearchStrategy[Mutation]:
    """Wrong types in an OsiriX plist: elements swapped for other plist types, points made absurd."""
    swaps = st.sampled_from([
        (b"<array>", b"<dict>"), (b"</array>", b"</dict>"), (b"<string>(", b"<integer>("),
        (b"<integer>", b"<string>"), (b"<real>", b"<string>x"), (b"<key>ROIs</key>", b"<key>R0Is</key>"),
        (b"<key>Point_px</key>", b"<key>Point_px</key><integer>3</integer><key>x</key>"),
        (b", ", b", 1e999"), (b"(", b"(nan"), (b"(", b"(-1e12"),
    ])
    return st.lists(swaps, min_size=1, max_size=3).map(
        lambda pairs: lambda data: _replace_all(data, pairs))


def _replace_all(data: bytes, pairs: list[tuple[bytes, bytes]]) -> bytes:
    for old, new in pairs:
        data = data.replace(old, new)
    return data


@CASES
@given(mutation=st.one_of(truncations(), byte_flips(), reencodings(), plist_edits()), which=st.integers(0, 20),
       csv_instead=st.booleans())
def test_mutated_inbreast_xml_and_csv_end_as_examples_or_reasons(generated, mutation, which, csv_instead):
    root = generated["inbreast"]
    release = root / "INbreast Release 1.0"
    xmls = sorted(path.relative_to(root) for path in (release / "AllXML").glob("*.xml"))
    target = release.relative_to(root) / "INbreast.csv" if csv_instead else xmls[which % len(xmls)]
    with mutated_copy(root, str(target), mutation) as workdir:
        check_contract("inbreast", Path(workdir) / "data")


def odd_tokens() -> st.SearchStrategy[Mutation]:
    """One Info.txt token replaced by an odd one (absurd, non-finite, negative, wrong kind)."""
    token = st.sampled_from(["nan", "inf", "-1", "1e309", "99999999999", "0", "", "X", "mdb", "mdb000", "NORM",
                             "CALC", "B", "M", "\u00e9", "1,5", "0x10"])

    def replace(args: tuple[int, str]) -> Mutation:
        position, new = args

        def mutate(data: bytes) -> bytes:
            tokens = data.split(b" ")
            tokens[position % len(tokens)] = new.encode()
            return b" ".join(tokens)
        return mutate
    return st.tuples(st.integers(0, 200), token).map(replace)


@CASES
@given(mutation=st.one_of(text_mutations(), odd_tokens()))
def test_mutated_mias_info_ends_as_examples_or_reasons(generated, mutation):
    with mutated_copy(generated["mias"], "Info.txt", mutation) as workdir:
        check_contract("mias", Path(workdir) / "data")
