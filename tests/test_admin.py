"""The admin service against a real gateway on SQLite and PostgreSQL: who may call it, listing by pages while contacts
change, history, reactivate and suppress, import and export."""

from dataclasses import replace

import grpc
import pytest
from google.protobuf import timestamp_pb2

from gateway.admin.listing import ContactFilter, encode_page_token
from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as public_pb
from gateway.core.config import ConfigError
from gateway.process.gateway import create_server
from gateway.store.contacts import change_status
from gateway.store.models import Contact, ContactStatus, StatusChange, database
from tests.admin_rpc import (
    ACTIVE,
    BILLING_TOKEN,
    BOUNCED,
    COMPLAINED,
    OPS_TOKEN,
    TOKENS,
    UNSUBSCRIBED,
    admin_stub,
    list_all,
    public_stub,
    seed_contacts,
    start_admin_gateway,
)
from tests.rpc import error_info, rpc_failure

SEND = public_pb.SendEmailRequest(to="ada@example.org", subject="Hi", text_body="Hello")


@pytest.fixture
def admin_gateway(make_gateway):
    return start_admin_gateway(make_gateway)


def status_of(email: str) -> ContactStatus:
    with database.connection_context():
        return Contact.get(Contact.email == email).status


def history_rows(email: str) -> list[tuple]:
    with database.connection_context():
        query = StatusChange.select().join(Contact).where(Contact.email == email).order_by(StatusChange.id)
        return [(c.from_status, c.to_status, c.source, c.reason, c.actor) for c in query]


# --- who may call it -------------------------------------------------------------------------------------


def every_admin_call(admin):
    """One call of each admin method, as (name, call)."""
    return [
        ("ListContacts", lambda: admin.ListContacts(pb.ListContactsRequest())),
        ("GetContactHistory", lambda: admin.GetContactHistory(pb.GetContactHistoryRequest(email="ada@example.org"))),
        (
            "UpdateContactStatus",
            lambda: admin.UpdateContactStatus(
                pb.UpdateContactStatusRequest(email="ada@example.org", status=ACTIVE, reason="fixed")
            ),
        ),
        (
            "ImportContacts",
            lambda: admin.ImportContacts(
                pb.ImportContactsRequest(rows=[pb.ImportContactRow(email="new@example.org", status=COMPLAINED)])
            ),
        ),
        ("ExportContacts", lambda: list(admin.ExportContacts(pb.ExportContactsRequest()))),
    ]


@pytest.mark.one_database
def test_only_admin_callers_may_use_the_admin_service(admin_gateway):
    public = public_stub(admin_gateway)
    with database.connection_context():
        change_status(ContactStatus.BOUNCED, source="ses:Bounce", email="ada@example.org")

    for name, call in every_admin_call(admin_stub(admin_gateway, BILLING_TOKEN)):
        code, message, details = rpc_failure(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED, name
        assert "MAILGW_ADMIN_CALLERS" in message
        info = error_info(details)
        assert (info.reason, dict(info.metadata)) == ("ADMIN_CALLER_REQUIRED", {"caller": "billing"})
    for name, call in every_admin_call(admin_stub(admin_gateway, None)):
        assert rpc_failure(call)[0] == grpc.StatusCode.UNAUTHENTICATED, name

    # Nothing the refused calls asked for happened.
    assert status_of("ada@example.org") is ContactStatus.BOUNCED
    assert rpc_failure(public.GetContactStatus, public_pb.GetContactStatusRequest(email="new@example.org"))[0] == (
        grpc.StatusCode.NOT_FOUND
    )
    # The admin may; and an admin is an ordinary caller of the public service too.
    for _, call in every_admin_call(admin_stub(admin_gateway, OPS_TOKEN)):
        call()
    assert status_of("ada@example.org") is ContactStatus.ACTIVE
    public_stub(admin_gateway, OPS_TOKEN).SendEmail(SEND)


@pytest.mark.one_database
def test_without_admin_callers_nobody_may_and_loopback_may_when_asked(make_gateway):
    nobody, _ = make_gateway()
    code, _, details = rpc_failure(admin_stub(nobody, None).ListContacts, pb.ListContactsRequest())
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert dict(error_info(details).metadata) == {}  # an unauthenticated caller has no name

    local, _ = make_gateway(admin_allow_unauthenticated=True)
    admin = admin_stub(local, None)
    admin.UpdateContactStatus(pb.UpdateContactStatusRequest(email="ada@example.org", status=BOUNCED, reason="asked"))
    assert history_rows("ada@example.org") == [
        (ContactStatus.ACTIVE, ContactStatus.BOUNCED, "admin", "asked", "unauthenticated")
    ]


@pytest.mark.one_database
def test_a_client_certificate_names_an_admin_by_its_cn(make_gateway, tmp_path):
    from support.tls_certs import CertificateAuthority
    from tests.admin_rpc import As

    ca = CertificateAuthority()
    cert, key = ca.issue("mailgw.internal", server=True).write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    gateway, _ = make_gateway(
        tls_cert=cert, tls_key=key, tls_client_ca=str(tmp_path / "ca.crt"), admin_callers=frozenset({"ops-console"})
    )

    def admin_with_certificate(common_name: str) -> As:
        client = ca.issue(common_name)
        credentials = grpc.ssl_channel_credentials(ca.pem, client.key_pem, client.cert_pem)
        return As(pb_grpc.MailGatewayAdminServiceStub(grpc.secure_channel(f"localhost:{gateway.port}", credentials)))

    request = pb.UpdateContactStatusRequest(email="ada@example.org", status=BOUNCED, reason="by certificate")
    code, _, details = rpc_failure(admin_with_certificate("billing-service").UpdateContactStatus, request)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert dict(error_info(details).metadata) == {"caller": "billing-service"}
    assert admin_with_certificate("ops-console").UpdateContactStatus(request).changed
    assert history_rows("ada@example.org") == [
        (ContactStatus.ACTIVE, ContactStatus.BOUNCED, "admin", "by certificate", "ops-console")
    ]


@pytest.mark.one_database
@pytest.mark.parametrize(
    "changes, complaint",
    [
        ({"admin_callers": frozenset({"ops"})}, "needs authenticated callers"),
        ({"admin_callers": frozenset({"opz"}), "auth_tokens": TOKENS}, "no token names: opz"),
        ({"admin_callers": frozenset({"bad\nname"}), "auth_tokens": TOKENS}, "not 1-128 printable ASCII"),
        ({"admin_allow_unauthenticated": True, "auth_tokens": TOKENS}, "MAILGW_ADMIN_ALLOW_UNAUTHENTICATED"),
        (
            {"admin_allow_unauthenticated": True, "grpc_addr": "0.0.0.0:0", "allow_insecure_bind": True},
            "needs a loopback MAILGW_GRPC_ADDR",
        ),
    ],
)
def test_admin_settings_that_cannot_work_stop_the_gateway_at_start(settings, changes, complaint):
    with pytest.raises(ConfigError, match=complaint):
        create_server(replace(settings, **changes))


# --- listing ---------------------------------------------------------------------------------------------


def test_pages_cover_every_contact_once_while_contacts_change(admin_gateway):
    """Paging is by key (updated_at, id), not offset: contacts added or changed while an operator pages do not
    shift the pages. A contact changed after its page was read comes again at the end, with its new status."""
    seed_contacts(250)
    admin = admin_stub(admin_gateway)
    request = pb.ListContactsRequest(page_size=40)
    first = admin.ListContacts(request)
    assert len(first.contacts) == 40 and first.next_page_token

    already_listed, not_yet_listed = first.contacts[3].email, "user200@example.org"
    for email in (already_listed, not_yet_listed):
        admin.UpdateContactStatus(pb.UpdateContactStatusRequest(email=email, status=BOUNCED, reason="bounced by hand"))
    seed_contacts(5, prefix="late")  # new contacts, changed long ago (updated_at in 2026-01): behind the cursor
    with database.connection_context():
        change_status(ContactStatus.COMPLAINED, source="ses:Complaint", email="newcomer@example.org")

    seen = list(first.contacts)
    request.page_token = first.next_page_token
    while request.page_token:
        page = admin.ListContacts(request)
        assert len(page.contacts) <= 40
        seen += page.contacts
        request.page_token = page.next_page_token

    emails = [contact.email for contact in seen]
    originals = {f"user{i}@example.org" for i in range(250)}
    assert originals <= set(emails)  # no gaps
    assert [e for e in emails if emails.count(e) > 1] == [already_listed, already_listed]
    assert emails.count(not_yet_listed) == 1 and emails.count("newcomer@example.org") == 1
    last = {contact.email: contact.status for contact in seen}  # the latest status of each
    assert last[already_listed] == last[not_yet_listed] == BOUNCED and last["newcomer@example.org"] == COMPLAINED
    times = [(c.updated_at.seconds, c.updated_at.nanos) for c in seen]
    assert times == sorted(times)
    assert not {f"late{i}@example.org" for i in range(5)} & set(emails)  # inserted behind the cursor: next listing


def test_contacts_changed_at_the_same_moment_are_paged_by_id(admin_gateway):
    seed_contacts(25, spread=False)
    seed_contacts(25, status="bounced", prefix="bounce", spread=False)
    admin = admin_stub(admin_gateway)

    for statuses, expected in (([], 50), ([BOUNCED], 25), ([ACTIVE, BOUNCED], 50)):
        pages = list_all(admin, 4, statuses=statuses)
        emails = [contact.email for page in pages for contact in page]
        assert len(emails) == len(set(emails)) == expected, statuses


def test_filters_select_by_status_and_by_time_across_pages(admin_gateway):
    seed_contacts(30, status="bounced", prefix="bounce")
    seed_contacts(30, status="complained", prefix="compl")
    seed_contacts(30, status="unsubscribed", prefix="unsub")
    seed_contacts(30)
    admin = admin_stub(admin_gateway)

    pages = list_all(admin, 7, statuses=[BOUNCED, COMPLAINED])
    listed = [contact for page in pages for contact in page]
    assert sorted(c.email for c in listed) == sorted(
        [f"bounce{i}@example.org" for i in range(30)] + [f"compl{i}@example.org" for i in range(30)]
    )
    times = [(c.updated_at.seconds, c.updated_at.nanos, c.email) for c in listed]
    assert [t[:2] for t in times] == sorted(t[:2] for t in times)  # two statuses merged in one order
    assert {len(page) for page in pages[:-1]} == {7}

    after, before = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    after.FromJsonString("2026-01-01T00:00:10Z")
    before.FromJsonString("2026-01-01T00:00:20Z")  # contacts i = 10 … 19 of each prefix
    listed = [c for page in list_all(admin, 6, statuses=[UNSUBSCRIBED], updated_after=after, updated_before=before)
              for c in page]  # fmt: skip
    assert [c.email for c in listed] == [f"unsub{i}@example.org" for i in range(10, 20)]
    everything = [c for page in list_all(admin, 1000) for c in page]
    assert len(everything) == 120


@pytest.mark.one_database
def test_bad_paging_and_filters_are_invalid_arguments(admin_gateway):
    seed_contacts(1100)
    admin = admin_stub(admin_gateway)
    capped = admin.ListContacts(pb.ListContactsRequest(page_size=5000))
    assert len(capped.contacts) == 1000 and capped.next_page_token
    default = admin.ListContacts(pb.ListContactsRequest())
    assert len(default.contacts) == 100

    token = default.next_page_token
    tampered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    other_filter = pb.ListContactsRequest(filter=pb.ContactFilter(statuses=[ACTIVE]), page_token=token)
    # The checksum has no key: an operator can make a token that passes it, with a time no listing holds.
    forged = encode_page_token(b"contacts", ContactFilter().fingerprint(), 2**62, 1)
    far = timestamp_pb2.Timestamp(seconds=2**40)
    after, before = timestamp_pb2.Timestamp(seconds=2000), timestamp_pb2.Timestamp(seconds=1000)
    cases = [
        (pb.ListContactsRequest(page_size=-1), "page_size"),
        (pb.ListContactsRequest(page_token="not-a-token"), "page_token"),
        (pb.ListContactsRequest(page_token=tampered), "page_token"),
        (pb.ListContactsRequest(page_token=forged), "page_token"),
        (pb.ListContactsRequest(page_token="é" * 20), "page_token"),
        (pb.ListContactsRequest(page_token="A" * 5000), "page_token"),
        (other_filter, "page_token"),
        (pb.ListContactsRequest(filter=pb.ContactFilter(statuses=[99])), "filter.statuses"),
        (pb.ListContactsRequest(filter=pb.ContactFilter(statuses=[0])), "filter.statuses"),
        (pb.ListContactsRequest(filter=pb.ContactFilter(updated_after=far)), "filter.updated_after"),
        (pb.ListContactsRequest(filter=pb.ContactFilter(updated_after=after, updated_before=before)),
         "filter.updated_before"),
    ]  # fmt: skip
    for request, field in cases:
        code, _, details = rpc_failure(admin.ListContacts, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, request
        assert error_info(details).reason == "INVALID_REQUEST"
        assert [v.field for v in details["BadRequest"][0].field_violations] == [field]
    # A history token does not page contacts either.
    with database.connection_context():
        for status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED):
            change_status(status, source="test", email="user1@example.org")
    history = admin.GetContactHistory(pb.GetContactHistoryRequest(email="user1@example.org", page_size=1))
    assert history.next_page_token
    code, _, details = rpc_failure(admin.ListContacts, pb.ListContactsRequest(page_token=history.next_page_token))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details["BadRequest"][0].field_violations[0].field == "page_token"


# --- history, reactivate, suppress -----------------------------------------------------------------------


def test_history_lists_changes_newest_first_with_actor_and_reason(admin_gateway):
    admin = admin_stub(admin_gateway)
    with database.connection_context():
        contact_id = change_status(
            ContactStatus.BOUNCED, source="ses:Bounce", reason="Permanent/General: 550 no such user",
            email="ada@example.org",
        ).contact.contact_id  # fmt: skip
    admin.UpdateContactStatus(
        pb.UpdateContactStatusRequest(email="Ada@Example.org", status=ACTIVE, reason="typo in MX fixed, ticket 42")
    )
    admin.UpdateContactStatus(pb.UpdateContactStatusRequest(contact_id=contact_id, status=COMPLAINED, reason="abuse"))

    history = admin.GetContactHistory(pb.GetContactHistoryRequest(email="ada@example.org"))
    assert (history.contact.email, history.contact.status, history.contact.reason) == (
        "ada@example.org", COMPLAINED, "abuse"
    )  # fmt: skip
    assert [(c.from_status, c.to_status, c.source, c.reason, c.actor) for c in history.changes] == [
        (ACTIVE, COMPLAINED, "admin", "abuse", "ops"),
        (BOUNCED, ACTIVE, "admin", "typo in MX fixed, ticket 42", "ops"),
        (ACTIVE, BOUNCED, "ses:Bounce", "Permanent/General: 550 no such user", ""),
    ]
    times = [c.changed_at.ToDatetime() for c in history.changes]
    assert times == sorted(times, reverse=True) and not history.next_page_token

    one_by_one, request = [], pb.GetContactHistoryRequest(contact_id=contact_id, page_size=1)
    while True:
        page = admin.GetContactHistory(request)
        one_by_one += page.changes
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert one_by_one == list(history.changes)

    for request, code in [
        (pb.GetContactHistoryRequest(email="nobody@example.org"), grpc.StatusCode.NOT_FOUND),
        (pb.GetContactHistoryRequest(email="not an address"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetContactHistoryRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetContactHistoryRequest(email="ada@example.org", page_token="bogus"), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        assert rpc_failure(admin.GetContactHistory, request)[0] == code


def test_suppress_and_reactivate_are_what_the_guard_sees(admin_gateway):
    admin, sender = admin_stub(admin_gateway), public_stub(admin_gateway)

    suppressed = admin.UpdateContactStatus(
        pb.UpdateContactStatusRequest(email="ada@example.org", status=BOUNCED, reason="old system said so")
    )  # an address never mailed: a contact is created, so the guard blocks it
    assert (suppressed.changed, suppressed.previous_status, suppressed.contact.status) == (True, ACTIVE, BOUNCED)
    code, _, details = rpc_failure(sender.SendEmail, SEND)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and error_info(details).reason == "RECIPIENT_SUPPRESSED"

    reactivate = pb.UpdateContactStatusRequest(email="ada@example.org", status=ACTIVE, reason="mailbox exists")
    done = admin.UpdateContactStatus(reactivate)
    assert (done.changed, done.previous_status, done.contact.status, done.contact.reason) == (
        True, BOUNCED, ACTIVE, "mailbox exists"
    )  # fmt: skip
    assert (done.ses_list_removal, done.ses_list_error) == (pb.SES_LIST_REMOVAL_NOT_LISTED, "")  # SES was asked
    assert suppressed.ses_list_removal == pb.SES_LIST_REMOVAL_UNSPECIFIED  # a suppression asks nothing of it here
    assert sender.SendEmail(SEND).message_id
    again = admin.UpdateContactStatus(reactivate)
    assert (again.changed, again.previous_status) == (False, ACTIVE)

    admin.UpdateContactStatus(pb.UpdateContactStatusRequest(email="ada@example.org", status=COMPLAINED, reason="spam"))
    milder = admin.UpdateContactStatus(
        pb.UpdateContactStatusRequest(email="ada@example.org", status=UNSUBSCRIBED, reason="asked to stop")
    )
    assert (milder.changed, milder.contact.status) == (False, COMPLAINED)  # the more severe status stays
    assert history_rows("ada@example.org") == [
        (ContactStatus.ACTIVE, ContactStatus.BOUNCED, "admin", "old system said so", "ops"),
        (ContactStatus.BOUNCED, ContactStatus.ACTIVE, "admin", "mailbox exists", "ops"),
        (ContactStatus.ACTIVE, ContactStatus.COMPLAINED, "admin", "spam", "ops"),
        # the milder request is kept as evidence (a hold that outlives a reactivation of the complaint's cause)
        (ContactStatus.COMPLAINED, ContactStatus.COMPLAINED, "admin", "asked to stop", "ops"),
    ]


def test_bad_status_changes_are_refused_and_change_nothing(admin_gateway):
    admin = admin_stub(admin_gateway)
    admin.UpdateContactStatus(pb.UpdateContactStatusRequest(email="ada@example.org", status=BOUNCED, reason="x"))
    cases = [
        (dict(email="ada@example.org", status=ACTIVE), grpc.StatusCode.INVALID_ARGUMENT, "reason"),
        (dict(email="ada@example.org", status=ACTIVE, reason="   "), grpc.StatusCode.INVALID_ARGUMENT, "reason"),
        (dict(email="ada@example.org", status=ACTIVE, reason="a\nb"), grpc.StatusCode.INVALID_ARGUMENT, "reason"),
        (dict(email="ada@example.org", status=ACTIVE, reason="x" * 1001), grpc.StatusCode.INVALID_ARGUMENT, "reason"),
        (dict(email="ada@example.org", reason="why"), grpc.StatusCode.INVALID_ARGUMENT, "status"),
        (dict(email="ada@example.org", status=42, reason="why"), grpc.StatusCode.INVALID_ARGUMENT, "status"),
        (dict(email="nope", status=ACTIVE, reason="why"), grpc.StatusCode.INVALID_ARGUMENT, "email"),
        (dict(contact_id="short", status=ACTIVE, reason="why"), grpc.StatusCode.INVALID_ARGUMENT, "contact_id"),
        (dict(status=ACTIVE, reason="why"), grpc.StatusCode.INVALID_ARGUMENT, "contact"),
        (dict(email="nobody@example.org", status=ACTIVE, reason="why"), grpc.StatusCode.NOT_FOUND, None),
        (dict(contact_id="A" * 22, status=BOUNCED, reason="why"), grpc.StatusCode.NOT_FOUND, None),
    ]
    for fields, expected, field in cases:
        code, _, details = rpc_failure(admin.UpdateContactStatus, pb.UpdateContactStatusRequest(**fields))
        assert code == expected, fields
        if field:
            assert [v.field for v in details["BadRequest"][0].field_violations] == [field]
        else:
            assert error_info(details).reason == "CONTACT_NOT_FOUND"
    assert status_of("ada@example.org") is ContactStatus.BOUNCED
    assert len(history_rows("ada@example.org")) == 1
    with database.connection_context():
        assert not Contact.select().where(Contact.email == "nobody@example.org").exists()


# --- import and export -----------------------------------------------------------------------------------


def outcome(result: pb.ImportContactResult) -> str:
    return pb.ImportOutcome.Name(result.outcome).removeprefix("IMPORT_OUTCOME_")


def test_import_reports_every_row_and_a_second_run_changes_nothing(admin_gateway):
    admin = admin_stub(admin_gateway)
    with database.connection_context():
        change_status(ContactStatus.BOUNCED, source="ses:Bounce", email="bounced@example.org")
        change_status(ContactStatus.COMPLAINED, source="ses:Complaint", email="complained@example.org")
        change_status(ContactStatus.ACTIVE, source="test", email="active@example.org")
    rows = [
        pb.ImportContactRow(email="new@example.org", status=ACTIVE),
        pb.ImportContactRow(email="Gone <GONE@example.org>", status=BOUNCED, reason="550 user unknown (old system)"),
        pb.ImportContactRow(email="active@example.org", status=UNSUBSCRIBED, reason="unsubscribed in 2024"),
        pb.ImportContactRow(email="bounced@example.org", status=ACTIVE),
        pb.ImportContactRow(email="complained@example.org", status=BOUNCED),
        pb.ImportContactRow(email="not-an-address", status=BOUNCED),
        pb.ImportContactRow(email="nostatus@example.org"),
        pb.ImportContactRow(email="long@example.org", status=BOUNCED, reason="r" * 1001),
        pb.ImportContactRow(email="x" * 600 + "@example.org", status=BOUNCED),
    ]
    first = admin.ImportContacts(pb.ImportContactsRequest(rows=rows))

    assert [(r.index, outcome(r), r.status) for r in first.results] == [
        (0, "CREATED", ACTIVE),
        (1, "CREATED", BOUNCED),
        (2, "CHANGED", UNSUBSCRIBED),
        (3, "REFUSED", BOUNCED),
        (4, "UNCHANGED", COMPLAINED),
        (5, "REFUSED", 0),
        (6, "REFUSED", 0),
        (7, "REFUSED", 0),
        (8, "REFUSED", 0),
    ]
    details = [r.detail for r in first.results]
    assert "does not reactivate" in details[3] and "more severe" in details[4]
    assert details[5].startswith("not a mailable address") and details[6].startswith("status must be one of")
    assert "longer than 1000" in details[7] and "longer than 536" in details[8]
    counts = (first.created_count, first.changed_count, first.unchanged_count, first.refused_count)
    assert counts == (2, 1, 1, 5)
    assert status_of("bounced@example.org") is ContactStatus.BOUNCED  # not silently reactivated
    assert history_rows("gone@example.org") == [
        (ContactStatus.ACTIVE, ContactStatus.BOUNCED, "import", "550 user unknown (old system)", "ops")
    ]

    second = admin.ImportContacts(pb.ImportContactsRequest(rows=rows))
    assert [outcome(r) for r in second.results] == [
        "UNCHANGED", "UNCHANGED", "UNCHANGED", "REFUSED", "UNCHANGED", "REFUSED", "REFUSED", "REFUSED", "REFUSED"
    ]  # fmt: skip
    assert (second.created_count, second.changed_count, second.unchanged_count, second.refused_count) == (0, 0, 4, 5)
    with database.connection_context():
        # two set up, then the first import's bounce and unsubscribe, and its bounce of the complained contact kept
        # as evidence (from complained to complained); the second import adds none of these again
        assert StatusChange.select().count() == 5
    too_many = pb.ImportContactsRequest(
        rows=[pb.ImportContactRow(email=f"n{i}@example.org", status=ACTIVE) for i in range(1001)]
    )
    code, _, details = rpc_failure(admin.ImportContacts, too_many)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"][0].field_violations] == ["rows"]
    with database.connection_context():
        assert not Contact.select().where(Contact.email == "n0@example.org").exists()


def test_rows_for_one_address_apply_in_their_order(admin_gateway):
    admin = admin_stub(admin_gateway)
    rows = [
        pb.ImportContactRow(email="ada@example.org", status=UNSUBSCRIBED),
        pb.ImportContactRow(email="Ada <ADA@example.org>", status=BOUNCED, reason="later bounce"),
        pb.ImportContactRow(email="ada@example.org", status=UNSUBSCRIBED),
    ]

    first = admin.ImportContacts(pb.ImportContactsRequest(rows=rows))
    second = admin.ImportContacts(pb.ImportContactsRequest(rows=rows))

    assert [(outcome(r), r.status) for r in first.results] == [
        ("CREATED", UNSUBSCRIBED), ("CHANGED", BOUNCED), ("UNCHANGED", BOUNCED)
    ]  # fmt: skip
    assert [(outcome(r), r.status) for r in second.results] == [("UNCHANGED", BOUNCED)] * 3
    assert [row[:3] for row in history_rows("ada@example.org")] == [
        (ContactStatus.ACTIVE, ContactStatus.UNSUBSCRIBED, "import"),
        (ContactStatus.UNSUBSCRIBED, ContactStatus.BOUNCED, "import"),
    ]


def test_export_streams_every_contact_once_from_one_snapshot(admin_gateway):
    seed_contacts(2500)
    seed_contacts(40, status="bounced", prefix="bounce")
    admin = admin_stub(admin_gateway)

    stream = admin.ExportContacts(pb.ExportContactsRequest())
    first = next(stream)
    assert first.total_size == 2540 and len(first.contacts) == 1000
    # Changed while the export runs: the export still shows every contact once, as it was when it began.
    admin.UpdateContactStatus(pb.UpdateContactStatusRequest(email="user2499@example.org", status=BOUNCED, reason="x"))
    admin.UpdateContactStatus(pb.UpdateContactStatusRequest(email="user5@example.org", status=BOUNCED, reason="x"))
    rest = [contact for chunk in stream for contact in chunk.contacts]
    exported = list(first.contacts) + rest
    assert len(exported) == 2540 and len({c.email for c in exported}) == 2540
    by_email = {c.email: c for c in exported}
    assert by_email["user2499@example.org"].status == by_email["user5@example.org"].status == ACTIVE
    times = [(c.updated_at.seconds, c.updated_at.nanos) for c in exported]
    assert times == sorted(times)  # the order of ListContacts

    only_bounced = [
        c for chunk in admin.ExportContacts(pb.ExportContactsRequest(filter=pb.ContactFilter(statuses=[BOUNCED])))
        for c in chunk.contacts
    ]  # fmt: skip
    assert len(only_bounced) == 42
    empty = list(admin.ExportContacts(pb.ExportContactsRequest(filter=pb.ContactFilter(statuses=[COMPLAINED]))))
    assert [(len(chunk.contacts), chunk.total_size) for chunk in empty] == [(0, 0)]
    code, _, _ = rpc_failure(lambda: list(admin.ExportContacts(
        pb.ExportContactsRequest(filter=pb.ContactFilter(statuses=[7])))))  # fmt: skip
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.fresh_schema
def test_a_database_from_before_the_admin_service_upgrades_in_place(database_url, make_gateway):
    """The history gains its actor column and the contacts their listing indexes when the new version starts."""
    from tests.test_upgrade import OLD, connect
    from tests.test_upgrade import Contact as OldContact
    from tests.test_upgrade import StatusChange as OldStatusChange

    old = connect(database_url)
    OLD.initialize(old)
    old.create_tables([OldContact, OldStatusChange])
    ada = OldContact.create(contact_id="A" * 22, email="ada@example.org", status="bounced")
    OldStatusChange.create(contact=ada, from_status="active", to_status="bounced", source="ses:Bounce", reason="550")
    old.close()

    admin = admin_stub(start_admin_gateway(make_gateway))

    history = admin.GetContactHistory(pb.GetContactHistoryRequest(email="ada@example.org"))
    assert [(c.from_status, c.to_status, c.source, c.reason, c.actor) for c in history.changes] == [
        (ACTIVE, BOUNCED, "ses:Bounce", "550", "")
    ]
    admin.UpdateContactStatus(pb.UpdateContactStatusRequest(email="ada@example.org", status=ACTIVE, reason="fixed"))
    assert history_rows("ada@example.org")[-1] == (
        ContactStatus.BOUNCED, ContactStatus.ACTIVE, "admin", "fixed", "ops"
    )  # fmt: skip
    with database.connection_context():
        indexes = {index.name for index in database.get_indexes("contact")}
    assert {"contact_updated_at_id", "contact_status_updated_at_id"} <= indexes


@pytest.mark.one_database
def test_the_admin_service_is_reflected_and_health_checked(admin_gateway):
    """grpcurl and other reflection clients see the admin service with the types it imports from the public API."""
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(f"127.0.0.1:{admin_gateway.port}") as channel:
        reflected = ProtoReflectionDescriptorDatabase(channel)
        assert "mailgateway.v1.MailGatewayAdminService" in reflected.get_services()
        service = DescriptorPool(reflected).FindServiceByName("mailgateway.v1.MailGatewayAdminService")
        filter_type = service.methods_by_name["ListContacts"].input_type.fields_by_name["filter"].message_type
        assert filter_type.fields_by_name["statuses"].enum_type.full_name == "mailgateway.v1.ContactStatus"
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="mailgateway.v1.MailGatewayAdminService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
