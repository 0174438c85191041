"""Contact status changes counted for Prometheus, in whichever process makes them (the gateway, the sidecar), once
each change is committed (contacts.change_status registers the count to run after the commit)."""

import threading

from prometheus_client import Counter, disable_created_metrics

from gateway.core.states import ContactStatus, StatusSource

# Both processes import this module: a *_created series per counter would double what Prometheus stores, and no
# panel reads it.
disable_created_metrics()

STATUS_CHANGES = Counter(
    "mailgw_contact_status_changes",
    "Contact status changes that were committed, by from and to status and by source (ses:Bounce, one-click, …).",
    ["from_status", "to_status", "source"],
)
MAX_SOURCES = 64  # sources are names in our code, not input; the cap only keeps a mistake from growing the series
_status_changes: dict[tuple[str, str, str], object] = {}
_status_lock = threading.Lock()


def status_changed(from_status: ContactStatus, to_status: ContactStatus, source: StatusSource) -> None:
    """One committed change (contacts.change_status registers this to run after the commit)."""
    key = (from_status.value, to_status.value, source)
    child = _status_changes.get(key)
    if child is None:
        with _status_lock:
            if len({k[2] for k in _status_changes} | {source}) > MAX_SOURCES:
                key = (key[0], key[1], "other")
            child = _status_changes.get(key) or STATUS_CHANGES.labels(*key)
            _status_changes[key] = child
    child.inc()
