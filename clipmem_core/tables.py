"""Reading the CSV and TSV files users hand over: datasets, review verdicts, drop lists.

One reader for all of them, so that each kind of file meets the same hostile input with the same clear
error: text that is not UTF-8 (a latin-1 export) names its line, a UTF-16 file from Excel is read, a quote
that never closes names the line it opens on, a file separated by semicolons (a European spreadsheet) says
so instead of "lacks columns", and a row with more fields than the header names its line.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from .errors import ClipmemError

# What a byte-order mark says the text is: Excel's "Unicode Text" and Windows tools save UTF-16 with one.
# UTF-32's marks come first: its little-endian mark begins with UTF-16's.
_MARKED_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def marked_encoding(data: bytes) -> str:
    """The encoding a byte-order mark names (UTF-16/32), else UTF-8 with its mark dropped."""
    return next((name for mark, name in _MARKED_ENCODINGS if data.startswith(mark)), "utf-8-sig")


SPREADSHEET_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")  # zip (.xlsx, .ods), OLE (.xls)


def read_text(source: Path) -> str:
    """The whole file as text: UTF-8 (a byte-order mark dropped), or UTF-16/32 where a byte-order mark says
    so, which was refused as "not UTF-8" although the mark names the encoding; ClipmemError otherwise."""
    encoding = "utf-8-sig"
    try:
        data = source.read_bytes()
        encoding = marked_encoding(data)
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8-sig":
            raise ClipmemError(
                f"{source} is not valid {encoding.upper()} text (byte {exc.start}), as its byte-order mark says"
            ) from None
        if data.startswith(SPREADSHEET_MAGIC):  # an .xlsx or .ods is a zip, an .xls an OLE file: not text at all
            raise ClipmemError(f"{source} is a spreadsheet, not text: save it as CSV (UTF-8)") from None
        line = data.count(b"\n", 0, exc.start) + 1
        raise ClipmemError(f"{source} is not UTF-8 text (line {line}, byte {exc.start}); save it as UTF-8") from None
    except FileNotFoundError:
        raise ClipmemError(f"{source} does not exist") from None
    except OSError as exc:
        raise ClipmemError(f"{source} is unreadable: {exc.strerror or exc}") from None


def table_rows(text: str, fmt: str, source: Path) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows as (the line the row starts on, its fields).

    TSV is read as its writer wrote it (``_tsv_rows``): quoted where Excel or pandas quoted a cell, else a
    field is everything between two tabs. CSV follows RFC 4180 (quoted fields may hold commas, quotes and
    newlines), strictly: a quote that opens a field and never closes used to swallow every row after it
    into one caption, without a word, and a stray quote inside a quoted field was dropped. Either is now an
    error naming the line the field starts on; a last row whose quote runs to the end of the file loses
    nothing, and is read, unless it has fewer fields than the header: then the file was cut off inside it
    (a download or a copy that stopped), and the cut caption was trained on while the row's missing label
    took the whole file's ground truth with it.
    """
    if fmt == "tsv":
        yield from _tsv_rows(text)
        return
    if len(text) >= csv.field_size_limit():  # the reader refused the whole table over one 131,072-character field
        csv.field_size_limit(len(text) + 1)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1  # the line the row being read starts on
    width = 0  # the header's number of fields, once read
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last = _unclosed_last_row(text, start, exc)
            if last is None:
                raise ClipmemError(
                    f"{source} is not a readable CSV table: line {start}: {exc}{_quote_hint(exc)}"
                ) from None
            if len(last) < width:
                raise ClipmemError(
                    f"{source} ends inside a quoted field of the row on line {start}, which has {len(last)} of "
                    f"the header's {width} fields: the file looks cut off (copy it again), or the quote never closes"
                ) from None
            fields = last
        row_start, start = start, reader.line_num + 1
        if any(f.strip() for f in fields):
            width = width or len(fields)
            yield row_start, _one_line_ending(fields)


def _one_line_ending(fields: list[str]) -> list[str]:
    """A quoted field of a Windows file keeps its line breaks as they were written, ``\r\n``: a caption then
    held a carriage return, which no other reader keeps. Line breaks inside fields become ``\n``."""
    return [f.replace("\r\n", "\n").replace("\r", "\n") if "\r" in f else f for f in fields]


def _tsv_rows(text: str) -> list[tuple[int, list[str]]]:
    """TSV rows as their writer meant them. open_clip and img2dataset write no quotes: a field is everything
    between two tabs, so a caption that opens with a double quote stays one caption instead of swallowing
    the next rows. Excel's "Unicode Text" and pandas quote a cell that holds a tab, a line break or a quote,
    as CSV does; read literally, such a caption was cut at its first line break (the rest became rows of
    their own) and kept its quotes doubled. So quotes count where the file is exactly what such a writer
    makes of its rows (``_quoted_tsv_rows``); otherwise every line is a row, and a hand-typed
    ``"quoted, as typed"`` keeps its quotes."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    literal = [(number, line.split("\t")) for number, line in enumerate(lines, start=1) if line.strip()]
    if '"' not in text:
        return literal
    return _quoted_tsv_rows(text) or literal


def _quoted_tsv_rows(text: str) -> list[tuple[int, list[str]]] | None:
    """The rows of ``text`` read as tab-separated CSV with quotes, where the text is exactly what a quoting
    writer (quotes where needed, or everywhere) writes of them; None where it is not."""
    text = text.replace("\r\n", "\n")
    if len(text) >= csv.field_size_limit():
        csv.field_size_limit(len(text) + 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=True)
    rows, start = [], 1
    try:
        for fields in reader:
            rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error:
        return None
    body = text.rstrip("\n")
    for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_ALL):
        written = io.StringIO()
        csv.writer(written, delimiter="\t", quoting=quoting, lineterminator="\n").writerows(f for _, f in rows)
        if written.getvalue().rstrip("\n") == body:
            return [(line, _one_line_ending(fields)) for line, fields in rows if any(f.strip() for f in fields)]
    return None


def _quote_hint(exc: csv.Error) -> str:
    """What to do about a CSV quoting error; nothing for other errors (a field over the reader's limit)."""
    if "expected" not in str(exc):
        return ""
    return (
        '. A quoted field must close: inside a quoted caption a double quote is written twice (""), and a '
        "quote that opens a field must close it"
    )


def _unclosed_last_row(text: str, start: int, exc: csv.Error) -> list[str] | None:
    """The fields of the last row when its quote runs to the end of the file with no row after it (nothing is
    lost: it is read as a lenient reader would); None otherwise, so a quote that swallows rows is an error."""
    if "unexpected end of data" not in str(exc):
        return None
    rest = text.splitlines()[start - 1 :]
    if not rest or any(line.strip() for line in rest[1:]):
        return None
    return next(csv.reader(io.StringIO(rest[0], newline="")), None)


def other_separator(header: list[str], wanted: Sequence[str]) -> str | None:
    """The separator a header read as one column really uses (``;`` from a European spreadsheet), if the
    wanted column names appear once it is split by it."""
    if len(header) != 1:
        return None
    return next((sep for sep in (";", "|", "\t", ",") if all(key in header[0].split(sep) for key in wanted)), None)


def separator_problem(source: Path, header: list[str], missing: Sequence[str], fmt: str) -> str | None:
    """Why the wanted columns are missing when the file uses another separator than its format's; None when
    it does not."""
    separator = other_separator(header, missing) if missing else None
    own = "\t" if fmt == "tsv" else ","
    if separator is None or separator == own:
        return None
    expected = "tabs" if fmt == "tsv" else "commas"
    fix = {",": "name it .csv", "\t": "name it .tsv"}.get(
        separator, "save it comma-separated (.csv) or tab-separated (.tsv)"
    )
    return f"{source} separates its columns with {separator!r}, not {expected} (header: {header[0][:200]!r}): {fix}"


def field_count_problem(fields: list[str], expected: int) -> str | None:
    """A row with more (non-empty) fields than the header is malformed: an unquoted comma, usually.

    Shorter rows are padded with empty fields, as spreadsheets write them; trailing empty fields are fine.
    """
    if len(fields) > expected and any(f.strip() for f in fields[expected:]):
        return f"row has {len(fields)} fields but the header has {expected} (quote fields that hold the separator)"
    return None


def read_frame(source: Path, required: Sequence[str], fmt: str = "csv", expected: str = "") -> pd.DataFrame:
    """A whole table of strings, indexed by the line each row starts on, so that a check of a row can name
    its line even when a quoted field spans lines; a missing cell is "". The header's names are trimmed.

    An empty file is an empty frame when nothing is ``required``. ClipmemError for an unreadable file (its
    line, for text and quotes), a header without ``required`` (saying so when the file uses another
    separator; ``expected`` says what it should hold), a required column given twice, or a row with more
    fields than the header.
    """
    rows = table_rows(read_text(source), fmt, source)
    first = next(rows, None)
    if first is None and not required:  # nothing asked of it: an empty table
        return pd.DataFrame()
    if first is None:
        raise ClipmemError(f"{source} is empty: expected a header with {', '.join(required)}")
    header = [name.strip() for name in first[1]]
    missing = [name for name in required if name not in header]
    if missing:
        problem = separator_problem(source, first[1], missing, fmt)
        columns = ", ".join(map(repr, header))[:300]
        hint = f"; expected {expected}" if expected else ""
        raise ClipmemError(problem or f"{source} lacks the column(s) {', '.join(missing)} (columns: {columns}){hint}")
    repeated = [name for name in required if header.count(name) > 1]
    if repeated:
        raise ClipmemError(f"{source} has the column {repeated[0]!r} more than once; keep one")
    lines, records = [], []
    for line, fields in rows:
        problem = field_count_problem(fields, len(header))
        if problem:
            raise ClipmemError(f"{source}: line {line}: {problem}")
        lines.append(line)
        records.append(fields[: len(header)] + [""] * (len(header) - len(fields)))
    frame = pd.DataFrame(records, columns=header, index=pd.Index(lines, name="line"), dtype=object)
    return frame.loc[:, ~frame.columns.duplicated()]
