"""What bootstrap found for each resource, and the one rule for acting on it: create what is missing, report what
differs, change an existing resource only when asked (--fix), and nothing at all in a dry run."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

CREATED = "created"
OK = "ok"
DIFFERS = "differs"
FIXED = "fixed"
WOULD_CREATE = "would create"
WOULD_FIX = "would fix"


class BootstrapError(Exception):
    """AWS could not be reached or refused a call; the message is the one line the operator reads."""


@dataclass(frozen=True)
class Mode:
    dry_run: bool = False  # describe only: create nothing, change nothing
    fix: bool = False  # change existing resources that differ (otherwise they are reported and left as they are)


@dataclass(frozen=True)
class Outcome:
    """One resource: what kind, its name, and whether it was created, already right, or differs (and how)."""

    kind: str
    name: str
    state: str
    differences: tuple[str, ...] = ()
    fixable: bool = True
    note: str = ""

    @property
    def settled(self) -> bool:
        """The resource is as bootstrap wants it now."""
        return self.state in (CREATED, OK, FIXED)

    def line(self) -> str:
        text = f"{self.kind + ':':<20} {self.name}: {self.state}"
        if self.differences:
            text += ": " + "; ".join(self.differences)
        if self.state == DIFFERS and not self.note:
            text += " (left as it is; --fix changes it)" if self.fixable else " (bootstrap does not change this)"
        return text + (f" ({self.note})" if self.note else "")


def ensure(
    mode: Mode,
    kind: str,
    name: str,
    found,
    *,
    create: Callable[[], object],
    check: Callable[[object], Iterable[str]] = lambda found: (),
    fix: Callable[[object], object] | None = None,
    created_note: str = "",
) -> tuple[Outcome, object]:
    """The outcome for one resource and its state afterwards (None when a dry run would have created it).

    `found` is what describing it returned (None: it does not exist); `check` names each way it differs from what
    bootstrap wants; `fix` changes it and returns its new state (None: bootstrap never changes this)."""
    if found is None:
        if mode.dry_run:
            return Outcome(kind, name, WOULD_CREATE), None
        return Outcome(kind, name, CREATED, note=created_note), create()
    differences = tuple(check(found))
    if not differences:
        return Outcome(kind, name, OK), found
    if fix is None or not mode.fix:
        return Outcome(kind, name, DIFFERS, differences, fixable=fix is not None), found
    if mode.dry_run:
        return Outcome(kind, name, WOULD_FIX, differences), found
    return Outcome(kind, name, FIXED, differences), fix(found)
