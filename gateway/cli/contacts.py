"""`mailgw contacts …`: the suppression list from the command line, through the admin service (callers named in
MAILGW_ADMIN_CALLERS; credentials as for `mailgw send`); `import` and `export` move CSV files in and out in batches
and streams, with a progress bar on a terminal."""

import argparse
import datetime
import os
import sys
from pathlib import Path

import grpc
from tqdm import tqdm

from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as public_pb
from gateway.cli import csvfile
from gateway.cli.client import CallFailed, call, client_channel
from gateway.cli.csvfile import csv_time

STATUSES = ("active", "unsubscribed", "bounced", "complained")
SUPPRESSED = STATUSES[1:]
BATCH_ROWS = 1000  # rows per ImportContacts call (the service's limit)
BATCH_BYTES = 1 << 20  # and at most about 1 MB per call, far below gRPC's 4 MB
REFUSALS_SHOWN = 20
EXPORT_TIMEOUT = 3600.0


def add_commands(commands, client: argparse.ArgumentParser) -> None:
    """`mailgw contacts ACTION`, beside the other commands; `client` holds the shared --addr option."""
    contacts = commands.add_parser(
        "contacts",
        help="list, inspect, reactivate, suppress, import and export contacts (admin callers only)",
        description="Read and manage the suppression list through the gateway's admin service. The caller must be "
        "named in the gateway's MAILGW_ADMIN_CALLERS; credentials as for `mailgw send` (MAILGW_CLIENT_*).",
    )
    actions = contacts.add_subparsers(dest="action", required=True, metavar="ACTION", help="what to do")

    listing = actions.add_parser(
        "list", parents=[client], help="list contacts, oldest change first", description=list_contacts.__doc__
    )
    filter_options(listing)
    listing.add_argument("--limit", type=_count, default=100, metavar="N", help="at most N contacts; 0: all (100)")
    listing.add_argument("--page-token", default="", metavar="TOKEN", help="continue where a listing stopped")
    listing.set_defaults(run=list_contacts)

    history = actions.add_parser(
        "history", parents=[client], help="a contact's status changes, newest first", description=show_history.__doc__
    )
    history.add_argument("contact", metavar="CONTACT", help="an email address or a contact id")
    history.add_argument("--limit", type=_count, default=100, metavar="N", help="at most N changes; 0: all (100)")
    history.set_defaults(run=show_history)

    reactivate = actions.add_parser(
        "reactivate",
        parents=[client],
        help="let a suppressed contact be mailed again",
        description=reactivate_contact.__doc__,
    )
    reactivate.add_argument("contact", metavar="CONTACT", help="an email address or a contact id")
    reactivate.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the contact's history)")
    reactivate.set_defaults(run=reactivate_contact)

    suppress = actions.add_parser(
        "suppress", parents=[client], help="stop all mail to an address", description=suppress_contact.__doc__
    )
    suppress.add_argument("contact", metavar="CONTACT", help="an email address or a contact id")
    suppress.add_argument("--status", required=True, choices=SUPPRESSED, help="the suppressed status to give it")
    suppress.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the contact's history)")
    suppress.set_defaults(run=suppress_contact)

    importing = actions.add_parser(
        "import", parents=[client], help="import contacts from a CSV file", description=import_file.__doc__
    )
    importing.add_argument("file", type=Path, metavar="FILE.csv", help="columns email, status and optionally reason")
    importing.add_argument("--report", type=Path, metavar="REPORT.csv", help="write every row's outcome to this file")
    importing.set_defaults(run=import_file)

    exporting = actions.add_parser(
        "export", parents=[client], help="export contacts to a CSV file", description=export_file.__doc__
    )
    filter_options(exporting)
    exporting.add_argument("-o", "--output", type=Path, metavar="FILE.csv", help="write here instead of stdout")
    exporting.set_defaults(run=export_file)


def list_contacts(args) -> int:
    """List contacts in the order of their last change (oldest first), optionally only some statuses or changes
    within a time range. One line a contact: updated_at, status, address, reason."""
    request = pb.ListContactsRequest(filter=contact_filter(args), page_token=args.page_token)
    shown = 0
    with client_channel(args.addr) as (channel, metadata):
        stub = pb_grpc.MailGatewayAdminServiceStub(channel)
        while True:
            request.page_size = min(args.limit - shown, 1000) if args.limit else 1000
            page = call(stub.ListContacts, request, metadata)
            for contact in page.contacts:
                when, status = csv_time(contact.updated_at.ToDatetime()), status_name(contact.status)
                print(f"{when}  {status:<12}  {contact.email}  {_one_line(contact.reason)}".rstrip())
            shown += len(page.contacts)
            if not page.next_page_token:
                return 0
            if args.limit and shown >= args.limit:
                print(f"more: continue with --page-token {page.next_page_token}", file=sys.stderr)
                return 0
            request.page_token = page.next_page_token


def show_history(args) -> int:
    """Show a contact's current status, then its status changes, newest first: when, from -> to, the source (and
    by whom, for a change made by hand: an admin caller, or suppression-sync), and the reason."""
    request = pb.GetContactHistoryRequest(**_contact(args.contact))
    shown = 0
    with client_channel(args.addr) as (channel, metadata):
        stub = pb_grpc.MailGatewayAdminServiceStub(channel)
        while True:
            request.page_size = min(args.limit - shown, 1000) if args.limit else 1000
            page = call(stub.GetContactHistory, request, metadata)
            if not shown:
                current = page.contact
                print(f"{current.email}: {status_name(current.status)} (contact_id={current.contact_id})")
            for change in page.changes:
                by = f" by {change.actor}" if change.actor else ""
                when = csv_time(change.changed_at.ToDatetime())
                moved = f"{status_name(change.from_status)} -> {status_name(change.to_status)}"
                line = f"  {when}  {moved}  {change.source}{by}"
                print(f"{line}: {_one_line(change.reason)}" if change.reason else line)
            shown += len(page.changes)
            if not page.next_page_token or (args.limit and shown >= args.limit):
                return 0
            request.page_token = page.next_page_token


def reactivate_contact(args) -> int:
    """Let a contact that unsubscribed, bounced or complained be mailed again, and remove its address from SES's
    account suppression list. The reason and your caller name are kept in its history. Exits 0 once the contact is
    active, also when SES's removal waits for the gateway's sync; 1 when SES refused the removal."""
    done = _update(args, public_pb.CONTACT_STATUS_ACTIVE)
    removal, error = done.ses_list_removal, done.ses_list_error
    print(f"  SES suppression list: {SES_REMOVAL[removal].format(error=error)}")
    return 1 if removal == pb.SES_LIST_REMOVAL_REFUSED else 0


# What a reactivation did on SES's list (UpdateContactStatusResponse.ses_list_removal), as the operator reads it.
SES_REMOVAL = {
    pb.SES_LIST_REMOVAL_REMOVED: "removed",
    pb.SES_LIST_REMOVAL_NOT_LISTED: "was not on it",
    pb.SES_LIST_REMOVAL_WAITING: "not removed yet ({error}); the gateway's sync tries again",
    pb.SES_LIST_REMOVAL_REFUSED: "SES refused to remove it ({error})",
    pb.SES_LIST_REMOVAL_NOT_ASKED: "not asked (this gateway does not call SES: outbox transport, or accepting "
    "only); removed by the sync of a gateway that sends through SES",
    pb.SES_LIST_REMOVAL_UNSPECIFIED: "not reported by the gateway",
}


def suppress_contact(args) -> int:
    """Stop all mail to an address (one never mailed gets a contact, so the guard blocks it). A contact already in
    a more severe status keeps it. The reason and your caller name are kept in its history."""
    _update(args, status_value(args.status))
    return 0


def _update(args, status: int) -> pb.UpdateContactStatusResponse:
    request = pb.UpdateContactStatusRequest(status=status, reason=args.reason, **_contact(args.contact))
    with client_channel(args.addr) as (channel, metadata):
        done = call(pb_grpc.MailGatewayAdminServiceStub(channel).UpdateContactStatus, request, metadata)
    now, before = status_name(done.contact.status), status_name(done.previous_status)
    if done.changed:
        print(f"{done.contact.email}: {before} -> {now}")
    elif done.contact.status == status:
        print(f"{done.contact.email}: unchanged, already {now}")
    else:
        print(f"{done.contact.email}: unchanged, {now} (more severe than {status_name(status)})")
    return done


def filter_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--status", action="append", choices=STATUSES, default=[], help="only contacts with this status; repeatable"
    )
    command.add_argument("--since", type=_time, metavar="TIME", help="only contacts changed at or after this time")
    command.add_argument("--until", type=_time, metavar="TIME", help="only contacts changed before this time")


def _time(text: str) -> datetime.datetime:
    """An ISO-8601 date or time; without a UTC offset, UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date or time, e.g. 2026-12-01T10:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return int(text)


def _contact(text: str) -> dict[str, str]:
    return {"email": text} if "@" in text else {"contact_id": text}


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
                    answer = call(stub.ImportContacts, request, metadata)
                except CallFailed as failed:
                    progress.close()
                    print(failed, file=sys.stderr)
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
            except grpc.RpcError as err:  # a stream: not call's
                raise CallFailed(err) from None
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


def contact_filter(args) -> pb.ContactFilter:
    """The filter of --status, --since and --until."""
    found = pb.ContactFilter(statuses=[status_value(status) for status in args.status])
    if args.since:
        found.updated_after.FromDatetime(args.since)
    if args.until:
        found.updated_before.FromDatetime(args.until)
    return found


def status_value(status: str) -> int:
    """The API's value of a status as a file or the user writes it; UNSPECIFIED (which the service refuses, naming
    the row) for anything else."""
    if status.strip().lower() not in STATUSES:
        return public_pb.CONTACT_STATUS_UNSPECIFIED
    return public_pb.ContactStatus.Value(f"CONTACT_STATUS_{status.strip().upper()}")


def status_name(value: int) -> str:
    return public_pb.ContactStatus.Name(value).removeprefix("CONTACT_STATUS_").lower()
