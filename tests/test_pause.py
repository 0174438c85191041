"""The pause gate's states, as dispatch drives them: a refusal shuts it, a probe's answer opens it or not."""

import time

from gateway.core.failures import Failure, Outcome
from gateway.sending.pause import DAILY_QUOTA, Pause, PauseGate, Reached

PAUSED = Pause("SES_SENDING_PAUSED", "Sending is paused for this account.")
PAUSE = Failure(Outcome.PAUSE, "SES_SENDING_PAUSED", ses_error_code="SendingPausedException")
THROTTLED = Failure(Outcome.RETRY, "SES_THROTTLED", ses_error_code="TooManyRequestsException")
UNREACHABLE = Failure(Outcome.RETRY, "SES_UNREACHABLE")


def gate(probe_seconds: float = 0.05) -> tuple[PauseGate, list]:
    heard: list = []
    return PauseGate(probe_seconds, heard.append), heard


def probe_due(gate: PauseGate, quota_freed=lambda: False) -> int:
    time.sleep(gate.seconds_to_probe() + 0.01)
    return gate.claim_limit(16, quota_freed)


def test_a_refusal_shuts_the_gate_and_one_message_probes_after_the_interval():
    paused, heard = gate()
    paused.shut(PAUSED)

    assert paused.claim_limit(16, lambda: False) == 0  # nothing is claimed until the probe is due
    assert probe_due(paused) == 1
    paused.probing_with(7)
    assert paused.claim_limit(16, lambda: False) == 0  # one probe at a time
    paused.after_attempt(7, None, Reached.ANSWERED)

    assert paused.current is None and paused.claim_limit(16, lambda: False) == 16
    assert heard == [PAUSED, None]  # health heard the pause once and the end once


def test_any_answer_from_ses_but_a_pause_ends_it_and_a_pause_keeps_it():
    paused, _ = gate()
    paused.shut(PAUSED)
    assert probe_due(paused) == 1
    paused.probing_with(7)
    paused.after_attempt(7, PAUSE, Reached.ANSWERED)
    assert paused.current == PAUSED

    assert probe_due(paused) == 1
    paused.probing_with(8)
    paused.after_attempt(8, THROTTLED, Reached.ANSWERED)  # SES is taking requests again, just not this fast
    assert paused.current is None


def test_a_probe_that_never_reached_ses_proves_nothing():
    paused, heard = gate(probe_seconds=0.2)
    paused.shut(PAUSED)
    assert probe_due(paused) == 1
    paused.probing_with(7)
    paused.after_attempt(7, UNREACHABLE, Reached.TRIED)  # no answer: still paused, next probe after the interval

    assert paused.current == PAUSED and paused.claim_limit(16, lambda: False) == 0
    assert paused.seconds_to_probe() > 0.1
    assert probe_due(paused) == 1
    paused.probing_with(8)
    paused.after_attempt(8, None, Reached.NOT_TRIED)  # suppressed or expired before the call: probe again at once

    assert paused.claim_limit(16, lambda: False) == 1
    assert heard == [PAUSED]


def test_messages_other_than_the_probe_change_nothing():
    paused, _ = gate()
    paused.shut(PAUSED)
    assert probe_due(paused) == 1
    paused.probing_with(7)
    paused.after_attempt(3, None, Reached.ANSWERED)  # in flight before the pause began

    assert paused.current == PAUSED


def test_a_spent_quota_is_probed_by_asking_ses_and_by_a_message_when_ses_will_not_say():
    quota = Pause(DAILY_QUOTA, "SES's 24-hour sending quota is used up")
    paused, _ = gate()
    paused.shut(quota)

    assert probe_due(paused, quota_freed=lambda: False) == 0  # GetAccount: still spent
    assert probe_due(paused, quota_freed=lambda: None) == 1  # GetAccount refused (no permission): a message probes
    paused.probing_with(9)
    paused.after_attempt(9, None, Reached.ANSWERED)
    assert paused.current is None

    paused.shut(quota)
    assert probe_due(paused, quota_freed=lambda: True) == 16  # GetAccount: the window freed some
    assert paused.current is None
