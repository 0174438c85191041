"""What SES answers is stored whatever it is: a value longer than its column, or one the database refuses, never stalls
the recorder and never sends a message twice (on PostgreSQL, one 66-character error code used to stop the recorder for
good, leases ended, and every later message reached SES twice)."""

from collections import Counter

import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.store.database import database, is_postgres
from tests.rpc import settled
from tests.test_dispatch import send

POISON_CODE = "Poison"


def test_over_long_values_from_ses_are_stored_bounded_and_nothing_is_sent_twice(make_gateway, ses):
    long_code = "E" * 66  # x-amzn-ErrorType longer than SES's longest code (and the 64 the column holds)
    long_id = "0" * 200  # a MessageId longer than any id the gateway looks up
    ses.fail(400, long_code, "refused with a code nobody knows")
    ses.answer_ids(long_id)
    _, stub = make_gateway(dispatch_workers=1, dispatch_lease_seconds=3, unknown_resend_seconds=1)

    ids = send(stub, 8)
    found = [settled(stub, message_id) for message_id in ids]

    assert [m.state for m in found] == [pb.MESSAGE_STATE_FAILED] + [pb.MESSAGE_STATE_SENT] * 7
    assert found[0].last_error.ses_error_code == "E" * 64
    assert found[0].last_error.reason == "SES_ERROR"
    assert found[1].ses_message_id == ""  # SES took it; its id could not be looked up, so it is not kept
    assert all(m.ses_message_id for m in found[2:])
    assert Counter(ses.accepted_ids()) == Counter(ids[1:])  # each accepted once
    assert len(ses.sent) == 8  # and nothing tried twice


@pytest.mark.fresh_schema
def test_an_outcome_the_database_refuses_is_recorded_without_details_and_the_recorder_goes_on(make_gateway, ses):
    """A database trigger stands for any value the database cannot hold: it refuses to store the outcome of the send
    SES answered with the code "Poison". That message alone is stored without SES's details; the others as usual."""
    _, stub = make_gateway(dispatch_workers=1, dispatch_lease_seconds=3, unknown_resend_seconds=1)
    with database.connection_context():
        refuse_poisoned_outcomes()
    ses.fail(400, POISON_CODE, "a value the database refuses")

    ids = send(stub, 6)
    found = [settled(stub, message_id) for message_id in ids]

    assert [m.state for m in found] == [pb.MESSAGE_STATE_FAILED] + [pb.MESSAGE_STATE_SENT] * 5
    assert (found[0].last_error.reason, found[0].last_error.ses_error_code) == ("OUTCOME_NOT_STORED", "")
    assert "could not be stored as given" in found[0].last_error.description
    assert Counter(ses.accepted_ids()) == Counter(ids[1:])
    assert len(ses.sent) == 6


def refuse_poisoned_outcomes() -> None:
    if is_postgres():
        database.execute_sql(
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN"
            " RAISE EXCEPTION 'value too long' USING ERRCODE = '22001'; END $$ LANGUAGE plpgsql"
        )
        database.execute_sql(
            "CREATE TRIGGER poison BEFORE UPDATE ON message FOR EACH ROW"
            f" WHEN (NEW.error_code = '{POISON_CODE}') EXECUTE FUNCTION refuse_poison()"
        )
    else:
        database.execute_sql(
            f"CREATE TRIGGER poison BEFORE UPDATE ON message WHEN NEW.error_code = '{POISON_CODE}'"
            " BEGIN SELECT RAISE(ABORT, 'value too long'); END"
        )
