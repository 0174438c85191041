"""The caller policy: what each calling service may ask of the gateway, from the TOML file MAILGW_CALLER_POLICY_FILE.

    [callers.auth]
    max_priority = "critical"      # the most urgent priority it may use (default: critical, i.e. any)
    weight = 4                     # its share of its class's sends against other callers' (default 1)

    [callers.newsletter]
    max_priority = "bulk"
    max_queued = 200000            # messages it may have waiting, counted in the database (default: no limit)
    max_submit_rate = 50           # SendEmail calls per second, a strict token bucket (default: no limit)

    [callers."*"]                  # optional: every caller the file does not name (default: no limits)
    max_priority = "transactional"

Without the setting every caller may use every priority, with weight 1, and nothing is limited. Read once at start;
every problem is one line naming the file and the key.
"""

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.core.config import ConfigError
from gateway.core.ids import is_name
from gateway.core.states import Priority

SETTING = "MAILGW_CALLER_POLICY_FILE"
ANY_CALLER = "*"
MAX_WEIGHT = 1000.0
KEYS = ("max_priority", "weight", "max_queued", "max_submit_rate")


@dataclass(frozen=True)
class CallerPolicy:
    """One caller's limits; None: not limited."""

    max_priority: Priority = Priority.CRITICAL
    weight: float = 1.0
    max_queued: int | None = None
    max_submit_rate: float | None = None


UNLIMITED = CallerPolicy()


@dataclass(frozen=True)
class CallerPolicies:
    """Every caller's policy: the file's table for a caller it names, its "*" table for the others."""

    callers: Mapping[str, CallerPolicy] = field(default_factory=dict)
    others: CallerPolicy = UNLIMITED

    def of(self, caller: str) -> CallerPolicy:
        return self.callers.get(caller, self.others)

    def weight(self, caller: str) -> float:
        return self.of(caller).weight

    @classmethod
    def from_file(cls, path: str) -> "CallerPolicies":
        """The policy the file at `path` states (an empty path: no policy); ConfigError, one line, otherwise."""
        if not path:
            return cls()
        try:
            with open(path, "rb") as file:
                document = tomllib.load(file)
        except OSError as exc:
            raise ConfigError(f"{SETTING}={path}: cannot read it: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{SETTING}={path}: not TOML: {exc}") from None
        unknown = sorted(set(document) - {"callers"})
        if unknown:
            raise ConfigError(f"{SETTING}={path}: unknown table {unknown[0]!r} (callers are [callers.NAME])")
        tables = document.get("callers", {})
        if not isinstance(tables, dict):
            raise ConfigError(f"{SETTING}={path}: callers must be tables, [callers.NAME]")
        callers = {name: _caller(path, name, table) for name, table in tables.items()}
        others = callers.pop(ANY_CALLER, UNLIMITED)
        return cls(callers, others)


def _caller(path: str, name: str, table) -> CallerPolicy:
    where = f"{SETTING}={path}: [callers.{name[:40]}]"
    if name != ANY_CALLER and not is_name(name):
        raise ConfigError(f"{where}: a caller's name is 1-128 printable ASCII characters")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    policy = UNLIMITED
    if "max_priority" in table:
        try:
            policy = _with(policy, max_priority=Priority.named(str(table["max_priority"])))
        except ValueError as exc:
            raise ConfigError(f"{where}: max_priority: {exc}") from None
    if "weight" in table:
        policy = _with(policy, weight=_number(where, "weight", table["weight"], 0.0, MAX_WEIGHT))
    if "max_queued" in table:
        value = table["max_queued"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: max_queued must be a whole number of messages, at least 1")
        policy = _with(policy, max_queued=value)
    if "max_submit_rate" in table:
        policy = _with(policy, max_submit_rate=_number(where, "max_submit_rate", table["max_submit_rate"], 0.0, 1e6))
    return policy


def _number(where: str, key: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a number")
    if not low < value <= high:
        raise ConfigError(f"{where}: {key} must be more than {low:g} and at most {high:g}")
    return float(value)


def _with(policy: CallerPolicy, **changes) -> CallerPolicy:
    return CallerPolicy(**(policy.__dict__ | changes))
