"""SES tenants (MAILGW_SES_TENANTS): what SES says of each tenant decides whether its mail goes.

Every MAILGW_SES_TENANT_STATUS_SECONDS, and before a tenant's first send, a dispatching gateway reads the tenant's
sending status (GetReputationEntity; one gateway per read, through the ses_tenant row). A tenant SES disabled, or
does not have, has its queued mail held (it stays QUEUED); the mail is released when a read finds it enabled or
reinstated. A tenant whose mail is idle is not read; its status is read again when its mail comes back. A read that
fails (classified by core/failures.py) is tried again 30 s later; the status read last stands meanwhile. A send SES
refused for the tenant's sake (failures.TENANT_HELD) has the tenant read again at once: when SES then says the tenant
may send, the refusal was the account's, and dispatch pauses as for any message refused that way.

With MAILGW_SES_TENANT_PAUSE_IN_SES, a pause by the tenant's own reputation guard here also sets its customer-managed
status in SES to DISABLED (so SES refuses its mail from anywhere), and the operator's resume sets it to ENABLED.
"""

import datetime
import logging
import time

from gateway.core import metrics
from gateway.core.failures import Outcome, SendFailed, classify_ses_answer
from gateway.sending.pause import Pause, PauseGate
from gateway.ses.tenants import SesTenants
from gateway.store import ses_tenants as store
from gateway.store.database import database_now, unit_of_work

log = logging.getLogger(__name__)

BATCH = 50  # tenants read in one step, at most; the rest in the next steps


class SesTenantWatch:
    """One per dispatching gateway with MAILGW_SES_TENANTS; step() runs in a loop of its own (dispatch.py)."""

    def __init__(
        self, api: SesTenants, gate: PauseGate, *, status_seconds: float, pause_in_ses: bool, retry_seconds: float
    ):
        self._api = api
        self._gate = gate
        self._interval = datetime.timedelta(seconds=status_seconds)
        self._retry = datetime.timedelta(seconds=min(retry_seconds, status_seconds))
        self._pause_in_ses = pause_in_ses
        self._set_again_at: dict[str, float] = {}  # a customer-managed status SES did not take: when to try again

    def step(self) -> None:
        with unit_of_work():
            if self._pause_in_ses:
                self._follow_pauses()
            now = database_now()
            for name in store.due(now, BATCH):
                until = now + self._retry
                before = store.take(name, now=now, until=until)
                if before is not None:
                    self._read(name, before, now, until)
            metrics.ses_tenants(store.counts())

    def _read(self, name: str, before: store.SesState, now: datetime.datetime, until: datetime.datetime) -> None:
        work = {"tenant": name}
        try:
            found = self._api.status(name, before.arn)
        except SendFailed as exc:
            log.warning(
                "SES tenant %s: its sending status could not be read: %s; read again in %d s%s",
                name,
                exc.failure,
                self._retry.total_seconds(),
                "" if before.status else " (its mail waits for the first read)",
                extra=work,
            )
            return
        refused_with = before.cause if before.status == store.NOT_READ and before.read_at is not None else ""
        stored = store.record(
            name,
            taken_until=until,
            arn=found.arn,
            status=found.status,
            cause=found.cause,
            now=now,
            next_read_at=now + self._interval,
        )
        if not stored:
            return  # SES refused one of its sends meanwhile: read again at once
        if refused_with and found.sendable:
            self._account_refused(name, refused_with)
        if found.status == before.status:
            return
        if found.status == "MISSING":
            log.error(
                "SES has no tenant %s: its mail is held until it exists (`mailgw aws bootstrap --tenant %s`)",
                name,
                name,
                extra=work,
            )
        elif not found.sendable:
            log.warning("SES tenant %s is %s (%s): its mail is held", name, found.status, found.cause, extra=work)
        elif before.status:
            log.info("SES tenant %s is %s: its mail goes again", name, found.status, extra=work)

    def _account_refused(self, name: str, code: str) -> None:
        """SES refused a send through the tenant (SendingPausedException, NotFoundException) while it says the tenant
        may send: the refusal was the account's (its sending paused, the configuration set gone), so dispatch pauses
        as for any message refused that way (sending/pause.py probes until SES takes one again)."""
        failure = classify_ses_answer(400, code, "")
        if failure.outcome is Outcome.PAUSE:
            detail = f"{code} on a send through tenant {name}, which SES says may send"
            self._gate.shut(Pause(failure.reason, detail))

    def _follow_pauses(self) -> None:
        """Our customer-managed status in SES follows each tenant's guard here (MAILGW_SES_TENANT_PAUSE_IN_SES)."""
        for name, arn, pause in store.pause_changes():
            if time.monotonic() < self._set_again_at.get(name, 0.0):
                continue
            status = "DISABLED" if pause else "ENABLED"
            try:
                self._api.set_customer_status(arn, status)
            except SendFailed as exc:
                self._set_again_at[name] = time.monotonic() + self._retry.total_seconds()
                log.warning(
                    "SES tenant %s: its customer-managed status could not be set to %s: %s; trying again in %d s",
                    name,
                    status,
                    exc.failure,
                    self._retry.total_seconds(),
                    extra={"tenant": name},
                )
                continue
            self._set_again_at.pop(name, None)
            store.mark_paused_here(name, pause, database_now())
            log.info("SES tenant %s: customer-managed status set to %s", name, status, extra={"tenant": name})
