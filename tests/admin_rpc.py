"""Calling the admin service as an operator does: a gateway whose callers hold tokens, one of them an admin."""

import datetime
import functools

import grpc

from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as public_pb
from gateway.store.models import Contact, database

OPS_TOKEN = "ops-token-0123456789abcdef"
BILLING_TOKEN = "billing-token-0123456789abcdef"
TOKENS = f"ops={OPS_TOKEN},billing={BILLING_TOKEN}"
ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED = (
    public_pb.CONTACT_STATUS_ACTIVE,
    public_pb.CONTACT_STATUS_UNSUBSCRIBED,
    public_pb.CONTACT_STATUS_BOUNCED,
    public_pb.CONTACT_STATUS_COMPLAINED,
)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


class As:
    """A stub whose every call carries one caller's token (and a timeout)."""

    def __init__(self, stub, token: str | None = None):
        self._stub, self._metadata = stub, bearer(token) if token else []

    def __getattr__(self, method: str):
        return functools.partial(getattr(self._stub, method), metadata=self._metadata, timeout=30)


def start_admin_gateway(make_gateway, **changes):
    """A running gateway (make_gateway's, with settings `changes`) where the caller "ops" is an admin and "billing"
    is not."""
    gateway, _ = make_gateway(auth_tokens=TOKENS, admin_callers=frozenset({"ops"}), **changes)
    return gateway


def admin_stub(gateway, token: str | None = OPS_TOKEN) -> As:
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    return As(pb_grpc.MailGatewayAdminServiceStub(channel), token)


def public_stub(gateway, token: str | None = BILLING_TOKEN):
    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    return As(mail_gateway_pb2_grpc.MailGatewayServiceStub(channel), token)


def seed_contacts(count: int, *, status: str = "active", prefix: str = "user", spread: bool = True) -> None:
    """`count` contacts prefix<i>@example.org, written straight to the database, changed a second apart (or all at
    once, without `spread`)."""
    start = datetime.datetime(2026, 1, 1)
    rows = [
        {
            "contact_id": f"{prefix[:4]}{i:018d}",
            "email": f"{prefix}{i}@example.org",
            "status": status,
            "created_at": start,
            "updated_at": start + datetime.timedelta(seconds=i if spread else 0),
        }
        for i in range(count)
    ]
    with database.connection_context():
        for offset in range(0, count, 500):
            Contact.insert_many(rows[offset : offset + 500]).execute()


def list_all(admin: As, page_size: int, **filter_fields) -> list[list[pb.Contact]]:
    """Every page of a listing, in order."""
    request = pb.ListContactsRequest(filter=pb.ContactFilter(**filter_fields), page_size=page_size)
    pages = []
    while True:
        page = admin.ListContacts(request)
        pages.append(list(page.contacts))
        if not page.next_page_token:
            return pages
        request.page_token = page.next_page_token


def key(contact: pb.Contact) -> tuple:
    return contact.updated_at.seconds, contact.updated_at.nanos, contact.email
