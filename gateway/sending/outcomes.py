"""What an attempt makes of a claimed message: the state its failure's class leads to (core/failures.py), with when
it is due again, handed to the recorder (recorder.py); a pause of dispatch for a failure nobody can send past; a new
read of SES's status of its tenant for a failure that is the tenant's (ses_tenants.py)."""

import datetime
import logging

from gateway.core.config import Settings
from gateway.core.failures import Failure, Outcome, retry_delay
from gateway.core.loops import Timings
from gateway.sending.pause import Pause, PauseGate
from gateway.sending.recorder import Recorder
from gateway.store import queue, settling
from gateway.store import ses_tenants as ses_tenant_rows
from gateway.store.database import UNAVAILABLE, database_now, unit_of_work, utcnow
from gateway.store.models import MessageState

log = logging.getLogger(__name__)


class Outcomes:
    """One per dispatcher."""

    def __init__(self, recorder: Recorder, gate: PauseGate, settings: Settings, timings: Timings):
        self._recorder = recorder
        self._gate = gate
        self._max_age = settings.max_message_age_seconds
        self._unknown_resend = settings.unknown_resend_seconds
        self._retry_base = timings.retry_base_seconds

    def failed(self, message: queue.Claimed, failure: Failure, *, attempted: bool = True) -> None:
        """The state a failure leads to, by its class (failures.py), handed to the recorder."""
        now = utcnow()
        if failure.outcome is Outcome.TENANT_HELD:
            self._read_tenant_again(message.tenant, failure.ses_error_code)
        if failure.outcome in (Outcome.RETRY, Outcome.PAUSE, Outcome.TENANT_HELD):
            # A pause backs its message off too: a refusal of one sender's messages only (an IAM condition on the
            # sender, say) must not bring that message back at every probe.
            due = now + datetime.timedelta(seconds=retry_delay(message.attempts + 1, self._retry_base))
            state = self.expired_state(message) if self.too_old(message, at=due) else MessageState.QUEUED
            self.record(message, state, failure, due_at=due, attempted=attempted)
            if failure.outcome is Outcome.PAUSE:
                self._gate.shut(Pause(failure.reason, failure.detail or failure.ses_error_code))
        elif failure.outcome is Outcome.REFUSED:
            self.record(message, MessageState.FAILED, failure)
        else:
            resend = now + datetime.timedelta(seconds=self._unknown_resend)
            self.record(message, MessageState.UNKNOWN, failure, due_at=resend)

    @staticmethod
    def _read_tenant_again(tenant: str, ses_error_code: str) -> None:
        """SES refused a send for the tenant's sake: its mail waits for a new read of its status (ses_tenants.py),
        which tells whether the refusal was the tenant's or the account's."""
        try:
            with unit_of_work():
                ses_tenant_rows.read_again(tenant, database_now(), refused_with=ses_error_code)
        except UNAVAILABLE as exc:  # its next send is refused the same way, and asks again
            log.warning("tenant %s: its SES status could not be marked for reading (%s)", tenant, type(exc).__name__)

    def too_old(self, message: queue.Claimed, *, at: datetime.datetime | None = None) -> bool:
        age = (at or utcnow()) - message.ready_at
        return age.total_seconds() >= self._max_age

    @staticmethod
    def expired_state(message: queue.Claimed) -> MessageState:
        """Past its age a message expires; a resend after an unknown outcome returns to UNKNOWN instead: its first
        request may have been delivered."""
        return MessageState.EXPIRED if message.resends == 0 else MessageState.UNKNOWN

    def record(
        self,
        message: queue.Claimed,
        state: MessageState,
        failure: Failure,
        *,
        due_at: datetime.datetime | None = None,
        attempted: bool = True,
    ) -> None:
        outcome = settling.AttemptOutcome(
            message.pk,
            state,
            reason=failure.reason,
            ses_error_code=failure.ses_error_code,
            detail=failure.detail,
            due_at=due_at,
            attempted=attempted,
        )
        self._recorder.put(outcome)
