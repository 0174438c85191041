"""The order of dispatch (sending/order.py) on both databases: critical before transactional before bulk without
starving a lower class, callers sharing a class by weight, a caller's tenants taking turns, and the same order when
several dispatchers claim from one PostgreSQL."""

import collections
import threading

import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.states import Priority
from gateway.sending.order import Order
from gateway.store import queue, settling
from gateway.store.contacts import ensure_recipient
from gateway.store.database import seen_rows, unit_of_work
from gateway.store.models import Message, database, open_database
from tests.conftest import emptied_postgres
from tests.rpc import settled

CRITICAL, TRANSACTIONAL, BULK = Priority.CRITICAL, Priority.TRANSACTIONAL, Priority.BULK
BULK_PB = pb.PRIORITY_BULK


def queued(count: int, *, caller: str, priority: Priority = TRANSACTIONAL, tenant: str = "") -> None:
    contact = ensure_recipient("reader@example.org")
    with database.atomic():  # one commit for them all: each is still SendEmail's own INSERT
        for _ in range(count):
            queue.enqueue(
                contact_pk=contact.pk,
                caller=caller,
                request_id=None,
                request_hash=None,
                payload="{}",
                priority=int(priority),
                tenant=tenant,
            )


def claimed_in_order(order: Order, sends: int, *, per_claim: int = 1) -> list[tuple[str, Priority, str]]:
    """(caller, priority, tenant) of each message claimed, `per_claim` at a time, as a dispatcher claims them."""
    taken = []
    while len(taken) < sends:
        with database.atomic():  # as pacing's transaction holds a dispatcher's claim
            batch = order.claim(per_claim, lease_seconds=60, worker="test")
        if not batch:
            break
        for message in batch:
            row = Message.get_by_id(message.pk)
            taken.append((row.caller, Priority(row.priority), row.tenant))
    return taken


def even() -> Order:
    return Order(lambda caller: 1.0)


def test_a_critical_message_goes_before_a_bulk_backlog_queued_earlier(db):
    queued(200, caller="newsletter", priority=BULK)
    queued(1, caller="auth", priority=CRITICAL)
    queued(1, caller="billing", priority=TRANSACTIONAL)

    first = claimed_in_order(even(), 2)

    assert first == [("auth", CRITICAL, ""), ("billing", TRANSACTIONAL, "")]


@pytest.mark.parametrize("per_claim", [1, 5])
def test_bulk_keeps_its_minimum_share_under_continuous_critical_mail(db, per_claim):
    queued(200, caller="auth", priority=CRITICAL)
    queued(20, caller="newsletter", priority=BULK)

    taken = claimed_in_order(Order(lambda caller: 1.0, min_share=0.05), 100, per_claim=per_claim)

    classes = collections.Counter(priority for _, priority, _ in taken)
    assert classes[BULK] == 100 * 0.05  # one send in twenty, however the claims are cut
    assert classes[CRITICAL] == 100 - classes[BULK]


def test_every_lower_class_keeps_its_share_and_passes_on_what_it_cannot_use(db):
    queued(150, caller="auth", priority=CRITICAL)
    queued(3, caller="billing", priority=TRANSACTIONAL)
    queued(50, caller="newsletter", priority=BULK)

    taken = claimed_in_order(Order(lambda caller: 1.0, min_share=0.1), 120, per_claim=4)

    classes = collections.Counter(priority for _, priority, _ in taken)
    assert classes[TRANSACTIONAL] == 3  # all it had
    assert classes[BULK] == 120 * 0.1
    assert classes[CRITICAL] == 120 - 3 - 12


def test_with_no_minimum_share_a_lower_class_waits_for_the_higher_one(db):
    queued(30, caller="auth", priority=CRITICAL)
    queued(30, caller="newsletter", priority=BULK)

    taken = claimed_in_order(Order(lambda caller: 1.0, min_share=0.0), 60, per_claim=4)

    assert [priority for _, priority, _ in taken] == [CRITICAL] * 30 + [BULK] * 30


@pytest.mark.parametrize("per_claim", [1, 5])
def test_callers_of_one_class_share_it_by_weight(db, per_claim):
    queued(100, caller="newsletter", priority=BULK)
    queued(100, caller="digest", priority=BULK)
    queued(100, caller="promo", priority=BULK)
    weights = {"newsletter": 1.0, "digest": 1.0, "promo": 2.0}

    taken = claimed_in_order(Order(weights.__getitem__), 80, per_claim=per_claim)

    callers = collections.Counter(caller for caller, _, _ in taken)
    assert abs(callers["newsletter"] - 20) <= 1
    assert abs(callers["digest"] - 20) <= 1
    assert abs(callers["promo"] - 40) <= 1


def test_a_caller_that_runs_out_passes_its_share_to_the_others(db):
    queued(5, caller="digest", priority=BULK)
    queued(100, caller="newsletter", priority=BULK)

    taken = claimed_in_order(even(), 40, per_claim=8)

    callers = collections.Counter(caller for caller, _, _ in taken)
    assert callers == {"digest": 5, "newsletter": 35}


def test_a_callers_tenants_take_turns_however_much_one_of_them_queued(db):
    queued(100, caller="crm", tenant="big")
    queued(3, caller="crm", tenant="small")

    taken = claimed_in_order(even(), 6)

    assert [tenant for _, _, tenant in taken] == ["big", "small", "big", "small", "big", "small"]


def test_a_tenant_that_was_idle_joins_the_rotation_at_once(db):
    queued(100, caller="crm", tenant="big")
    claimed_in_order(even(), 50)

    queued(2, caller="crm", tenant="late")
    taken = claimed_in_order(even(), 4)

    assert [tenant for _, _, tenant in taken].count("late") == 2
    assert taken[0][2] == "late" or taken[1][2] == "late"


def test_a_caller_idle_for_a_while_comes_back_without_a_burst(db):
    queued(50, caller="newsletter", priority=BULK)
    claimed_in_order(even(), 40)
    queued(50, caller="digest", priority=BULK)

    taken = claimed_in_order(even(), 10)

    callers = collections.Counter(caller for caller, _, _ in taken)
    assert callers == {"newsletter": 5, "digest": 5}


def test_a_message_back_from_a_retry_keeps_its_place_in_its_lane(db):
    queued(10, caller="crm", tenant="a")
    [first] = even().claim(1, lease_seconds=60, worker="test")
    settling.record_outcome(first.pk, queue.QUEUED, reason="SES_THROTTLED")  # due again now, as after a backoff

    [again] = even().claim(1, lease_seconds=60, worker="test")

    assert again.pk == first.pk


@pytest.fixture
def postgres(postgres_url):
    """The run's PostgreSQL database, emptied and connected for this thread."""
    emptied_postgres(postgres_url)
    seen_rows.forget()
    open_database(postgres_url)
    with unit_of_work():
        yield postgres_url
    database.close_all()


def test_dispatchers_claiming_at_once_from_one_postgresql_keep_the_shares_and_never_share_a_message(postgres):
    queued(200, caller="newsletter", priority=BULK)
    queued(200, caller="digest", priority=BULK)
    taken: list[list] = [[], []]
    start = threading.Barrier(2)

    def dispatcher(index: int) -> None:
        order = even()
        with unit_of_work():
            start.wait()
            for _ in range(50):
                with database.atomic():  # as pacing's transaction holds a dispatcher's claim
                    taken[index].extend(order.claim(2, lease_seconds=60, worker=f"d{index}"))

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    pks = [message.pk for batch in taken for message in batch]
    assert len(pks) == 200 and len(set(pks)) == 200  # every claim got its two, and no message was claimed twice
    callers = collections.Counter(Message.get_by_id(pk).caller for pk in pks)
    assert callers == {"newsletter": 100, "digest": 100}


# --- through a running gateway ----------------------------------------------------------------------------------


def test_a_password_reset_overtakes_a_newsletter_burst_on_its_way_to_ses(make_gateway, ses):
    _, stub = make_gateway(send_rate=20.0)
    burst = [
        stub.SendEmail(
            pb.SendEmailRequest(to=f"reader{i}@example.org", subject="News", text_body="News", priority=BULK_PB)
        )
        for i in range(60)
    ]
    sent_before = len(ses.sent)

    reset = stub.SendEmail(
        pb.SendEmailRequest(to="ada@example.org", subject="Reset", text_body="Code", priority=pb.PRIORITY_CRITICAL)
    )

    assert settled(stub, reset.message_id).state == pb.MESSAGE_STATE_SENT
    order = [request.tags["message_id"] for request in ses.sent]
    # Next in line once accepted: at most the sends claimed meanwhile came before it, never the burst's backlog.
    assert order.index(reset.message_id) <= sent_before + 2 < len(burst)
