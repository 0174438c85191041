"""Contacts as CSV files that spreadsheets open: UTF-8 (files start with a byte-order mark, which is how Excel knows
UTF-8 from the local code page), a header row, RFC 4180 quoting and CRLF line ends, ISO-8601 UTC times, and no cell
that a spreadsheet would run as a formula."""

import csv
import datetime
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

EXPORT_COLUMNS = ("email", "status", "reason", "updated_at", "created_at")
REPORT_COLUMNS = ("line", "email", "status", "outcome", "detail")
DELIMITERS = ",;\t"  # a spreadsheet set to a language that writes decimal commas saves with ";"
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP "CSV injection"):
# a bounce diagnostic or a reason is text from outside, and an address may start with "-", "+" or "=".
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"  # what spreadsheets take as "text follows"; a leading one is doubled, so that reading undoes it exactly


class CsvProblem(ValueError):
    """The file cannot be read as contacts; the message says where and why."""


@dataclass(frozen=True)
class CsvRow:
    """One row of an import file as written: `line` is where it ends in the file (for the report)."""

    line: int
    email: str
    status: str
    reason: str


def safe_cell(text: str) -> str:
    """The text as a cell no spreadsheet evaluates: one with a formula's first character is escaped."""
    return ESCAPE + text if text.startswith((*FORMULA_START, ESCAPE)) else text


def cell_text(cell: str) -> str:
    """The text of a cell safe_cell wrote (a cell a person wrote, such as 'o'brien@…, stays as it is)."""
    if cell.startswith(ESCAPE) and cell[1:2] and cell[1:2] in (*FORMULA_START, ESCAPE):
        return cell[1:]
    return cell


def csv_time(moment: datetime.datetime) -> str:
    """ISO 8601 in UTC to the second (`2026-12-02T06:26:28Z`), from a naive UTC time."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def writer(file: TextIO, columns: Iterable[str]):
    """A csv writer on `file` (opened with newline=""), the header row written."""
    out = csv.writer(file, lineterminator="\r\n")
    out.writerow(columns)
    return out


def write_row(out, cells: Iterable[str]) -> None:
    out.writerow([safe_cell(cell) for cell in cells])


def read_contacts(file: TextIO) -> Iterator[CsvRow]:
    """The rows of an import file (opened with encoding="utf-8-sig", newline=""): a header naming the columns
    `email` and `status`, optionally `reason` (others, such as an export's times, are ignored), any letter case,
    separated by commas, semicolons or tabs. Blank rows are skipped."""
    try:
        header_line = file.readline()
        delimiter = max(DELIMITERS, key=header_line.count)
        reader = csv.reader(itertools.chain([header_line], file), delimiter=delimiter)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [name for name in ("email", "status") if name not in header]
        if missing:
            found = ", ".join(header) or "nothing"
            raise CsvProblem(f"line 1: the header must name the columns email and status (and reason), not {found}")
        email, status = header.index("email"), header.index("status")
        reason = header.index("reason") if "reason" in header else None
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            fields += [""] * (len(header) - len(fields))
            yield CsvRow(
                reader.line_num,
                cell_text(fields[email].strip()),
                fields[status].strip(),
                cell_text(fields[reason].strip()) if reason is not None else "",
            )
    except csv.Error as exc:
        raise CsvProblem(f"line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError:
        raise CsvProblem('the file is not UTF-8 text (save it as "CSV UTF-8")') from None
