"""The order of dispatch: which due messages the sends the shared rate allows go to.

The rule, for every claim of n sends (the tokens pacing.py granted), on every replica alike (the lanes' state is in
the database and the claim holds the budget's lock, so replicas take turns):

1. **Classes.** Critical before transactional before bulk, except that each class below the most urgent one with due
   mail is owed MAILGW_LOWER_CLASS_MIN_SHARE of every claim (a fraction, carried between claims: 0.05 of sends of
   one at a time is one in twenty). Sends a class cannot use (it has less due mail) pass to the next class.
2. **Callers.** Within a class, the lanes of the callers with due mail share by their policy weight (weighted round
   robin: each is owed its fraction of the class's sends, carried between claims; the one owed most goes next). A
   lane without due mail is owed nothing: a caller that was idle does not come back with a burst.
3. **Tenants.** Within a lane, messages go in turn order (store/lanes.py): a caller's tenants take turns.

Leases, the guard's re-check and the failure table are the dispatcher's; this module only says who is next.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.states import Priority
from gateway.store import lanes, queue
from gateway.store.database import database_now

CLASSES = tuple(int(priority) for priority in Priority)  # most urgent first
CREDIT_CAP = 2.0  # sends a lane or class may be owed beyond one claim's share: exact over time, never a burst


@dataclass
class Order:
    """Claims due messages in the order above. `weight(caller)` is the caller's share weight (its policy's)."""

    weight: Callable[[str], float]
    min_share: float = 0.05
    ses_tenants: bool = False  # a tenant's mail waits until SES's status of it was read (MAILGW_SES_TENANTS)

    def claim(self, n: int, *, lease_seconds: float, worker: str) -> list[queue.Claimed]:
        """Up to n due messages, now SENDING under `worker`'s lease; the lanes' and classes' credits written back in
        the same transaction (the caller's)."""
        now = database_now()
        every = lanes.every_lane(now)
        read = {lane.id: (lane.credit, lane.turn) for lane in every}
        for lane in every:
            if not lane.due:
                lane.credit = 0.0  # owed nothing: a lane that was empty does not come back with a burst
        due = [lane for lane in every if lane.due]
        if not due:
            lanes.save([lane for lane in every if (lane.credit, lane.turn) != read[lane.id]])
            return []
        by_class: dict[int, list[lanes.LaneState]] = {}
        for lane in due:
            by_class.setdefault(lane.priority, []).append(lane)
        class_credits = lanes.class_credits()
        credits = dict(class_credits)
        owed = self._class_shares(n, by_class, credits)
        claimed: list[queue.Claimed] = []
        passed_down = n - sum(owed.values())
        for priority in sorted(by_class):
            wanted = owed.get(priority, 0) + passed_down
            taken = self._claim_in_class(wanted, by_class[priority], now, lease_seconds, worker)
            claimed.extend(taken)
            passed_down = wanted - len(taken)
        lanes.save([lane for lane in every if (lane.credit, lane.turn) != read[lane.id]])
        lanes.save_class_credits({p: c for p, c in credits.items() if c != class_credits.get(p, 0.0)})
        return claimed

    def _class_shares(self, n: int, by_class: dict, credits: dict[int, float]) -> dict[int, int]:
        """The sends each class below the most urgent one with due mail is owed in this claim; `credits` updated."""
        classes = sorted(by_class)
        owed: dict[int, int] = {}
        left = n
        for priority in CLASSES:
            if priority not in by_class or priority == classes[0]:
                credits[priority] = 0.0  # nothing due, or first anyway: owed nothing
                continue
            gain = n * self.min_share
            credit = min(gain + CREDIT_CAP, credits.get(priority, 0.0) + gain)
            owed[priority] = min(left, math.floor(credit))
            credits[priority] = credit - owed[priority]
            left -= owed[priority]
        return owed

    def _claim_in_class(self, wanted: int, class_lanes: list, now, lease_seconds: float, worker: str) -> list:
        """Up to `wanted` messages from a class's lanes by weighted round robin; a lane that runs out passes its
        sends to the others."""
        weights = {lane.id: max(self.weight(lane.caller), 0.0) or 1.0 for lane in class_lanes}
        claimed: list[queue.Claimed] = []
        open_lanes = list(class_lanes)
        while wanted > 0 and open_lanes:
            total = sum(weights[lane.id] for lane in open_lanes)
            for lane in open_lanes:
                gain = wanted * weights[lane.id] / total
                lane.credit = min(gain + CREDIT_CAP, lane.credit + gain)
            plan = dict.fromkeys((lane.id for lane in open_lanes), 0)
            for _ in range(wanted):
                lane = max(open_lanes, key=lambda lane: (lane.credit - plan[lane.id], -lane.id))
                plan[lane.id] += 1
            short = []
            for lane in open_lanes:
                if not plan[lane.id]:
                    continue
                taken = queue.claim(
                    lane.priority,
                    lane.caller,
                    plan[lane.id],
                    now=now,
                    lease_seconds=lease_seconds,
                    worker=worker,
                    ses_tenants=self.ses_tenants,
                )
                lane.credit -= len(taken)
                if taken:
                    lane.turn = max(lane.turn, max(message.turn for message in taken))
                claimed.extend(taken)
                wanted -= len(taken)
                if len(taken) < plan[lane.id]:
                    lane.credit = 0.0  # ran out: owed nothing more
                    short.append(lane)
            if not short:
                break
            open_lanes = [lane for lane in open_lanes if lane not in short]
        return claimed
