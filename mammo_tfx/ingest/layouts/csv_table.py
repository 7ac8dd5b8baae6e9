"""Reading a dataset's index CSV: stripped header and values, required columns checked, blank rows skipped."""
from __future__ import annotations

import csv

from mammo_tfx import storage
from mammo_tfx.ingest.records import BadInputError


def read_csv_rows(path: str, required: tuple[str, ...], delimiter: str = ",",
                  missing_hint: str = "") -> list[dict[str, str]]:
    """Rows as dicts (short rows padded with ""); BadInputError naming the file when it cannot be read, is empty
    or lacks `required` columns (`missing_hint` is appended to that message)."""
    try:
        reader = csv.reader(storage.text_stream(path, encoding="utf-8-sig", errors="replace"), delimiter=delimiter)
        table = [[cell.strip() for cell in row] for row in reader]
    except (OSError, csv.Error) as error:
        raise BadInputError(path, f"CSV cannot be read ({type(error).__name__}: {error})") from None
    if not table:
        raise BadInputError(path, "CSV is empty")
    header, body = table[0], [row for row in table[1:] if any(row)]
    missing = [column for column in required if column not in header]
    if missing:
        raise BadInputError(path, f"CSV lacks columns {missing}{missing_hint}")
    return [dict(zip(header, row + [""] * (len(header) - len(row)))) for row in body]
