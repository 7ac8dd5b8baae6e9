"""Quarantine rows grouped by cause for the console and error messages."""
from mammo_tfx.ingest.reasons import format_reason_groups, group_reasons, reason_key, shorten_path


def _row(reason: str, file: str, status: str = "quarantined") -> dict:
    return {"dataset": "cbis-ddsm", "record": "r", "file": file, "status": status, "reason": reason}


def test_rows_differing_only_in_paths_and_numbers_form_one_group_largest_first() -> None:
    rows = [_row("BadInputError: PGM raster truncated: 10 of 1048576 bytes", "/data/mias/mdb001.pgm")]
    rows += [_row("BadInputError: file not found", f"/data/cbis/Mass-Training_P_{i:05d}_LEFT_CC/1.3.6/000000.dcm")
             for i in range(24)]
    rows += [_row("BadInputError: PGM raster truncated: 99 of 1048576 bytes", "/data/mias/mdb002.pgm"),
             _row("BI-RADS 3 is neither benign nor malignant", "/data/inbreast/INbreast.csv", status="excluded")]
    assert format_reason_groups(group_reasons(rows)) == [
        "24 x file not found (e.g. .../1.3.6/000000.dcm)",
        "2 x PGM raster truncated: 10 of 1048576 bytes (e.g. .../mias/mdb001.pgm)",
        "1 x excluded: BI-RADS 3 is neither benign nor malignant: .../inbreast/INbreast.csv",
    ]


def test_paths_inside_a_reason_are_masked_for_grouping_and_shortened_for_display() -> None:
    rows = [_row(f"cannot list dataset: BadInputError: /mnt/{name}/cbis: no case-description CSV", f"/mnt/{name}/cbis")
            for name in ("a", "b")]
    assert reason_key(rows[0]["reason"]) == "cannot list dataset: BadInputError: <path>: no case-description CSV"
    # uint16 and P5 are names, not numbers; "neg/" is not an absolute path.
    assert reason_key("not uint16 (magic P5) in neg/ 12x4 <BytesIO at 0x7f3a>") == \
        "not uint16 (magic P5) in neg/ #x4 <BytesIO at #>"
    # The folder named in the reason is not repeated after it.
    assert format_reason_groups(group_reasons(rows)) == [
        "2 x cannot list dataset: BadInputError: .../a/cbis: no case-description CSV"]
    assert shorten_path("gs://bucket/data/cbis/x.dcm") == ".../cbis/x.dcm"
    assert shorten_path("a/b") == "a/b"


def test_only_the_first_groups_are_listed_then_a_line_for_the_rest() -> None:
    rows = [_row(f"BadInputError: cause {letter}", f"/d/{letter}.png") for letter in "abcdefg" for _ in range(2)]
    lines = format_reason_groups(group_reasons(rows), limit=3)
    assert lines == ["2 x cause a (e.g. /d/a.png)", "2 x cause b (e.g. /d/b.png)", "2 x cause c (e.g. /d/c.png)",
                     "... and 8 more records of 4 other causes"]
