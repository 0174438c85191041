"""`mailgw contacts import` and `export`: CSV files in and out through the admin service, in batches and streams,
with a progress bar on a terminal."""

import os
import sys
from pathlib import Path

import grpc
from tqdm import tqdm

from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.cli import client_channel, csvfile, describe_error
from gateway.cli.admin_client import CALL_TIMEOUT, contact_filter, status_name, status_value

BATCH_ROWS = 1000  # rows per ImportContacts call (the service's limit)
BATCH_BYTES = 1 << 20  # and at most about 1 MB per call, far below gRPC's 4 MB
REFUSALS_SHOWN = 20
EXPORT_TIMEOUT = 3600.0


def import_file(args) -> int:
    """Import contacts from a CSV file: a header row naming the columns email and status (active, unsubscribed,
    bounced, complained), optionally reason; UTF-8, separated by commas, semicolons or tabs, as a spreadsheet saves
    it (an export reads back as it is). The whole file is read once before anything is imported, so a file that is
    not CSV changes nothing. Importing the same file again changes nothing. An import never reactivates a
    suppressed contact: such rows are refused (use reactivate). Prints the counts and the refused rows; exits 1
    when any row was refused."""
    totals = dict.fromkeys(("created", "changed", "unchanged", "refused"), 0)
    refusals: list[str] = []
    report = None
    try:
        total = sum(1 for _ in _rows(args.file))
        report = _open_csv(args.report, csvfile.REPORT_COLUMNS) if args.report else None
        with (
            client_channel(args.addr) as (channel, metadata),
            tqdm(total=total, unit=" rows", disable=not sys.stderr.isatty(), file=sys.stderr) as progress,
        ):
            stub = pb_grpc.MailGatewayAdminServiceStub(channel)
            for batch in _batches(_rows(args.file)):
                request = pb.ImportContactsRequest(rows=[_request_row(row) for row in batch])
                try:
                    answer = stub.ImportContacts(request, timeout=CALL_TIMEOUT, metadata=metadata)
                except grpc.RpcError as err:
                    progress.close()
                    print("\n".join(describe_error(err)), file=sys.stderr)
                    print(
                        f"stopped at line {batch[0].line}: the rows before it were imported; importing the file "
                        "again is safe (they come back unchanged)",
                        file=sys.stderr,
                    )
                    return 1
                for row, result in zip(batch, answer.results, strict=True):
                    outcome = pb.ImportOutcome.Name(result.outcome).removeprefix("IMPORT_OUTCOME_").lower()
                    totals[outcome] += 1
                    if report:
                        csvfile.write_row(report[1], [str(row.line), row.email, row.status, outcome, result.detail])
                    if outcome == "refused":
                        refusals.append(f"  line {row.line}: {row.email}: {result.detail}")
                progress.update(len(batch))
    except csvfile.CsvProblem as exc:
        print(f"mailgw: {args.file}: {exc} (nothing was imported)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mailgw: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        if report:
            report[0].close()
    print(f"{args.file}: " + ", ".join(f"{count:,} {outcome}" for outcome, count in totals.items()))
    if refusals:
        shown = refusals[:REFUSALS_SHOWN]
        if len(refusals) > len(shown):
            hint = "" if report else " (--report FILE lists them all)"
            shown.append(f"  … and {len(refusals) - len(shown):,} more{hint}")
        print("\n".join(["refused:", *shown]), file=sys.stderr)
    return 1 if refusals else 0


def export_file(args) -> int:
    """Export contacts (all, or those the filter selects) as CSV: email, status, reason, updated_at, created_at,
    in the order of `list`, from one consistent snapshot. Contact ids (the secret in unsubscribe links) are left
    out. A file gets a UTF-8 byte-order mark so that spreadsheets read it as UTF-8, and appears only once
    complete; stdout gets none, for the next program in a pipe."""
    request = pb.ExportContactsRequest(filter=contact_filter(args))
    partial = args.output.with_name(args.output.name + ".part") if args.output else None
    file = None
    try:
        if partial:
            file, out = _open_csv(partial, csvfile.EXPORT_COLUMNS)
        else:
            out = csvfile.writer(sys.stdout, csvfile.EXPORT_COLUMNS)
        with (
            client_channel(args.addr) as (channel, metadata),
            tqdm(unit=" contacts", disable=not sys.stderr.isatty(), file=sys.stderr) as progress,
        ):
            stub = pb_grpc.MailGatewayAdminServiceStub(channel)
            try:
                for chunk in stub.ExportContacts(request, timeout=EXPORT_TIMEOUT, metadata=metadata):
                    if chunk.total_size:
                        progress.total = chunk.total_size
                    for contact in chunk.contacts:
                        csvfile.write_row(out, _export_cells(contact))
                    progress.update(len(chunk.contacts))
            except grpc.RpcError as err:
                progress.close()
                print("\n".join(describe_error(err)), file=sys.stderr)
                return 1
        if file:
            file.close()
            os.replace(partial, args.output)
    except OSError as exc:
        print(f"mailgw: {exc.filename or args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        if file:
            file.close()
        if partial and partial.exists():
            partial.unlink()
    return 0


def _request_row(row: csvfile.CsvRow) -> pb.ImportContactRow:
    return pb.ImportContactRow(email=row.email, status=status_value(row.status), reason=row.reason)


def _export_cells(contact: pb.Contact) -> list[str]:
    return [
        contact.email,
        status_name(contact.status),
        contact.reason,
        csvfile.csv_time(contact.updated_at.ToDatetime()),
        csvfile.csv_time(contact.created_at.ToDatetime()),
    ]


def _open_csv(path: Path, columns):
    file = open(path, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115 (closed by the caller)
    return file, csvfile.writer(file, columns)


def _rows(path: Path):
    with open(path, encoding="utf-8-sig", newline="") as file:
        yield from csvfile.read_contacts(file)


def _batches(rows):
    batch, size = [], 0
    for row in rows:
        batch.append(row)
        size += len(row.email) + len(row.reason) * 4 + 32
        if len(batch) == BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
