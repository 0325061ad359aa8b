"""Simulation profiles: a fleet's faults, traffic and engine settings, as a TOML file.

A profile says, per account and per virtual day, how often each fault and each
kind of traffic happens, how fast the fake channel answers, and which
:class:`~heirline.core.config.EngineConfig` settings the engine runs with.
:func:`load_profile` reads and validates one file at once: an unknown key, a
value of the wrong type or a number out of range is a :class:`ProfileError`
naming the file, the key and what is wrong -- nothing is half-loaded. The format
is documented in ``docs/simulate.md``; ``examples/profiles/`` ships three.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from heirline.core.backoff import BackoffConfig
from heirline.core.config import MAX_SAFE_INT, EngineConfig
from heirline.core.delivery import KINDS
from heirline.core.effects import LogLevel
from heirline.core.errors import HeirlineError
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import LifecycleConfig

__all__ = [
    "DAY_MS",
    "IDENTITY_MODES",
    "Fleet",
    "Profile",
    "ProfileError",
    "Span",
    "Traffic",
    "load_profile",
    "parse_profile",
]

#: One virtual day in ms: what every rate in a profile is per.
DAY_MS: Final = 86_400_000
#: The longest latency, delay or gap a profile may give (a day).
MAX_SPAN_MS: Final = DAY_MS
#: The most events of one kind a profile may ask of one account in one day.
MAX_RATE: Final = 10_000.0
#: The most messages one inbound burst may hold.
MAX_BURST: Final = 1_000
#: Larger profile files are refused (the shipped ones are about 2 KiB).
MAX_FILE_BYTES: Final = 1 << 20

#: What a login shows: the phone-number JID, the LID, both, or PN-only and LID-only by turns.
IDENTITY_MODES: Final = ("pn", "lid", "pn+lid", "alternate")
#: The simulator's default log level: WARNING keeps the health restarts' records (their
#: reasons are counted) and skips the info and debug records nobody reads here.
DEFAULT_LOG_LEVEL: Final = LogLevel.WARNING

_LOG_LEVELS: Final = {level.name.lower(): level for level in LogLevel}
_CLOSE: Final = re.compile(r"^close_([1-9][0-9]{2})$")
_OTHER_FAULTS: Final = ("relink", "half_open")
_LINE: Final = re.compile(r"\(at line (\d+), column (\d+)\)")


class ProfileError(Exception):
    """A profile that cannot be used: ``key`` is where in ``path`` (a dotted key or a line)."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}")
        self.path = path
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive range of integers, drawn from uniformly: ``[low, high]``."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Fleet:
    """How the fleet and its fake channel behave (times in virtual ms)."""

    #: What a login shows (:data:`IDENTITY_MODES`).
    identity: str = "pn"
    #: Whether each boot reads the account's PN<->LID pair from its auth dir (MappingLearned).
    auth_dir: bool = False
    #: The accounts start evenly spread over this span from time 0.
    start_over_ms: int = 60_000
    boot_ms: int = 0
    connect_ms: int = 5
    ack_ms: int = 5
    #: A live socket shows a transport frame this often (the watchdog model, docs/simulate.md).
    keepalive_ms: int = 30_000
    #: After a logout, a relink or a terminal close, the owner starts the account again this
    #: long after (``None``: never).
    owner_restart_ms: int | None = 120_000


@dataclass(frozen=True, slots=True)
class Traffic:
    """Inbound bursts and the replies they cause; replies captured just before a fault."""

    #: Inbound bursts per account per day.
    bursts: float = 0.0
    #: Messages in one burst.
    burst_messages: Span = Span(1, 1)
    #: Between two messages of a burst.
    burst_gap_ms: Span = Span(1_000, 1_000)
    #: Chance that a burst is answered: a reply captured at its last message.
    reply_probability: float = 0.0
    #: From capture to ready (the reply's content is computed).
    ready_ms: Span = Span(500, 5_000)
    #: Reply kinds and their weights.
    kinds: tuple[tuple[str, float], ...] = (("text", 1.0),)
    #: Chance that a fault comes just after a reply was captured (the incident's pattern).
    capture_before_fault: float = 0.0
    #: From that capture to the fault.
    capture_lead_ms: Span = Span(100, 3_000)
    #: From the fault to that reply being ready.
    ready_after_fault_ms: Span = Span(50, 5_000)


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated profile: where it came from, the fleet, the rates and the engine config."""

    path: str
    name: str
    description: str
    fleet: Fleet
    #: Fault kind -> rate per account per day (kinds with rate 0 are left out).
    faults: Mapping[str, float]
    traffic: Traffic
    config: EngineConfig
    #: The engine settings the file gave, as written (for the summary).
    engine_overrides: Mapping[str, object] = field(default_factory=dict)

    @property
    def rate_per_day(self) -> float:
        """World events (faults and bursts) per account per day."""
        return sum(self.faults.values()) + self.traffic.bursts


# --------------------------------------------------------------------------- reading


def _tname(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


class _Table:
    """Typed reads from one TOML table; every error names the file and the full key."""

    def __init__(self, path: str, table: Mapping[str, object], where: str) -> None:
        self.path = path
        self.table = table
        self.where = where

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, message: str) -> ProfileError:
        return ProfileError(self.path, self.key(name), message)

    def only(self, allowed: frozenset[str] | tuple[str, ...]) -> None:
        for name in self.table:
            if name not in allowed:
                listed = ", ".join(sorted(allowed)) or "none"
                raise self.fail(name, f"unknown key (allowed: {listed})")

    def has(self, name: str) -> bool:
        return name in self.table

    def sub(self, name: str) -> _Table:
        value = self.table.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table, got {_tname(value)}")
        return _Table(self.path, value, self.key(name))

    def string(self, name: str, default: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.table.get(name, default)
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {_tname(value)} {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.table.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {_tname(value)} {value!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.table.get(name, default)
        return self._int(name, value, low, high)

    def _int(self, name: str, value: object, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(name, f"must be an integer, got {_tname(value)} {value!r}")
        if not low <= value <= high:
            raise self.fail(name, f"must be in {low}..{high}, got {value}")
        return value

    def optional_ms(self, name: str, default: int | None, high: int) -> int | None:
        """An integer ms in 0..high, or ``false`` for "never" (``None``)."""
        value = self.table.get(name, default if default is not None else False)
        if value is False:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(
                name, f"must be an integer or false (never), got {_tname(value)} {value!r}"
            )
        if not 0 <= value <= high:
            raise self.fail(name, f"must be in 0..{high} or false (never), got {value}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {_tname(value)} {value!r}")
        if not math.isfinite(value):
            raise self.fail(name, f"must be a finite number, got {value}")
        if not low <= value <= high:
            raise self.fail(name, f"must be in {low:g}..{high:g}, got {value:g}")
        return float(value)

    def span(self, name: str, default: Span, low: int, high: int) -> Span:
        """``[min, max]``, two integers with ``low <= min <= max <= high``."""
        value = self.table.get(name)
        if value is None:
            return default
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise self.fail(name, f"must be [min, max], two integers; got {value!r}")
        a, b = value
        if not low <= a <= b <= high:
            raise self.fail(name, f"must have {low} <= min <= max <= {high}; got [{a}, {b}]")
        return Span(a, b)


# --------------------------------------------------------------------------- sections

_TOP: Final = frozenset({"name", "description", "fleet", "faults", "traffic", "engine"})


def _fleet(t: _Table) -> Fleet:
    d = Fleet()
    t.only(tuple(Fleet.__dataclass_fields__))
    identity = t.string("identity", d.identity, IDENTITY_MODES)
    return Fleet(
        identity=identity,
        auth_dir=t.boolean("auth_dir", d.auth_dir),
        start_over_ms=t.integer("start_over_ms", d.start_over_ms, 0, MAX_SPAN_MS),
        boot_ms=t.integer("boot_ms", d.boot_ms, 0, MAX_SPAN_MS),
        connect_ms=t.integer("connect_ms", d.connect_ms, 0, MAX_SPAN_MS),
        ack_ms=t.integer("ack_ms", d.ack_ms, 0, MAX_SPAN_MS),
        keepalive_ms=t.integer("keepalive_ms", d.keepalive_ms, 1, MAX_SPAN_MS),
        owner_restart_ms=t.optional_ms("owner_restart_ms", d.owner_restart_ms, MAX_SPAN_MS),
    )


def _faults(t: _Table) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in t.table:
        if _CLOSE.match(name) is None and name not in _OTHER_FAULTS:
            raise t.fail(
                name,
                "unknown fault (allowed: close_<status> with a 3-digit status, "
                f"{', '.join(_OTHER_FAULTS)})",
            )
        rate = t.number(name, 0.0, 0.0, MAX_RATE)
        if rate > 0:
            out[name] = rate
    return out


def _kinds(t: _Table) -> tuple[tuple[str, float], ...]:
    if not t.has("kinds"):
        return Traffic().kinds
    kinds = t.sub("kinds")
    kinds.only(tuple(sorted(KINDS)))
    weights = tuple((k, kinds.number(k, 0.0, 0.0, MAX_RATE)) for k in sorted(kinds.table))
    if not any(w > 0 for _, w in weights):
        raise t.fail("kinds", "needs at least one kind with a weight above 0")
    return tuple((k, w) for k, w in weights if w > 0)


def _traffic(t: _Table) -> Traffic:
    d = Traffic()
    t.only(tuple(Traffic.__dataclass_fields__))
    return Traffic(
        bursts=t.number("bursts", d.bursts, 0.0, MAX_RATE),
        burst_messages=t.span("burst_messages", d.burst_messages, 1, MAX_BURST),
        burst_gap_ms=t.span("burst_gap_ms", d.burst_gap_ms, 0, MAX_SPAN_MS),
        reply_probability=t.number("reply_probability", d.reply_probability, 0.0, 1.0),
        ready_ms=t.span("ready_ms", d.ready_ms, 0, MAX_SPAN_MS),
        kinds=_kinds(t),
        capture_before_fault=t.number("capture_before_fault", d.capture_before_fault, 0.0, 1.0),
        capture_lead_ms=t.span("capture_lead_ms", d.capture_lead_ms, 0, MAX_SPAN_MS),
        ready_after_fault_ms=t.span("ready_after_fault_ms", d.ready_after_fault_ms, 0, MAX_SPAN_MS),
    )


_ENGINE_KEYS: Final = (
    "log_level",
    "reply_deadline_ms",
    "max_transmissions",
    "resendable_kinds",
    "health_timer",
    "watchdog_ms",
    "health",
    "backoff",
)


def _overrides(t: _Table, cls: type[Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Values for fields of config class ``cls``, typed like its defaults and each one
    checked by ``cls`` itself, so an error names the key."""
    t.only(names)
    defaults = cls()
    out: dict[str, Any] = {}
    for name in names:
        if not t.has(name):
            continue
        default = getattr(defaults, name)
        value = t.table[name]
        if name == "retry_grace_ms" and value is False:
            value = None  # the retry grace off: openclaw's behaviour (the incident)
        elif isinstance(default, float):
            value = t.number(name, default, -float(MAX_SAFE_INT), float(MAX_SAFE_INT))
        else:
            hint = " (or false: off)" if name == "retry_grace_ms" else ""
            if not isinstance(value, int) or isinstance(value, bool):
                raise t.fail(name, f"must be an integer{hint}, got {_tname(value)} {value!r}")
            value = t.integer(name, 0, -MAX_SAFE_INT, MAX_SAFE_INT)
        try:
            cls(**{name: value})
        except HeirlineError as exc:
            raise t.fail(name, str(exc)) from None
        out[name] = value
    return out


def _engine(t: _Table) -> tuple[EngineConfig, dict[str, object]]:
    t.only(_ENGINE_KEYS)
    level = t.string("log_level", DEFAULT_LOG_LEVEL.label, tuple(_LOG_LEVELS))
    kwargs: dict[str, Any] = {"log_level": _LOG_LEVELS[level]}
    defaults = EngineConfig()
    if t.has("reply_deadline_ms"):
        kwargs["reply_deadline_ms"] = t.integer("reply_deadline_ms", 0, 1, MAX_SPAN_MS)
    if t.has("max_transmissions"):
        kwargs["max_transmissions"] = t.integer("max_transmissions", 0, 1, 1_000)
    if t.has("health_timer"):
        kwargs["health_timer"] = t.boolean("health_timer", defaults.health_timer)
    if t.has("resendable_kinds"):
        kinds = t.table["resendable_kinds"]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise t.fail("resendable_kinds", f"must be an array of strings, got {kinds!r}")
        unknown = sorted(set(kinds) - KINDS)
        if unknown:
            raise t.fail(
                "resendable_kinds", f"unknown kinds {unknown} (known: {', '.join(sorted(KINDS))})"
            )
        kwargs["resendable_kinds"] = frozenset(kinds)
    watchdog = t.optional_ms("watchdog_ms", defaults.lifecycle.watchdog_ms, MAX_SPAN_MS)
    if watchdog == 0:
        raise t.fail("watchdog_ms", "must be >= 1, or false (off)")
    health_names = tuple(HealthConfig.__dataclass_fields__)
    backoff_names = tuple(n for n in BackoffConfig.__dataclass_fields__ if n != "bases")
    health = _overrides(t.sub("health"), HealthConfig, health_names)
    backoff = _overrides(t.sub("backoff"), BackoffConfig, backoff_names)
    try:
        kwargs["health"] = HealthConfig(**health)
    except HeirlineError as exc:  # pragma: no cover - each field was checked on its own
        raise t.fail("health", str(exc)) from None
    try:
        backoff_config = BackoffConfig(**backoff)
    except HeirlineError as exc:  # fields that contradict each other (max_ms < initial_ms)
        raise t.fail("backoff", str(exc)) from None
    kwargs["lifecycle"] = LifecycleConfig(backoff=backoff_config, watchdog_ms=watchdog)
    try:
        config = EngineConfig(**kwargs)
    except HeirlineError as exc:  # pragma: no cover - every field was checked above
        raise ProfileError(t.path, "engine", str(exc)) from None
    return config, dict(t.table)


def parse_profile(text: str, path: str = "<profile>") -> Profile:
    """Parse and validate profile TOML ``text``; a :class:`ProfileError` if unusable."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        match = _LINE.search(msg)
        where = f"line {match.group(1)}, column {match.group(2)}" if match else "TOML syntax"
        raise ProfileError(path, where, f"invalid TOML: {_LINE.sub('', msg).strip()}") from None
    except (RecursionError, ValueError) as exc:  # nested too deeply; an over-long integer
        raise ProfileError(path, "TOML syntax", f"invalid TOML: {exc}") from None
    top = _Table(path, doc, "")
    top.only(_TOP)
    name = top.string("name", Path(path).stem)
    description = top.string("description", "")
    fleet = _fleet(top.sub("fleet"))
    faults = _faults(top.sub("faults"))
    traffic = _traffic(top.sub("traffic"))
    config, overrides = _engine(top.sub("engine"))
    watchdog = config.lifecycle.watchdog_ms
    if watchdog is not None and fleet.keepalive_ms >= watchdog:
        raise ProfileError(
            path,
            "fleet.keepalive_ms",
            f"must be below engine.watchdog_ms ({watchdog}): with frames {fleet.keepalive_ms} ms "
            "apart the watchdog would close healthy sockets",
        )
    return Profile(path, name, description, fleet, faults, traffic, config, overrides)


def load_profile(path: str | Path) -> Profile:
    """Read and validate the profile file at ``path`` (UTF-8 TOML, at most 1 MiB)."""
    shown = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        # `--profile quiet` is a natural slip: say what a profile is and where three are.
        raise ProfileError(
            shown,
            "file",
            f"cannot read it: {exc.strerror or exc} (a profile is the path of a TOML file, "
            "such as examples/profiles/quiet.toml)",
        ) from None
    except OSError as exc:
        raise ProfileError(shown, "file", f"cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ProfileError(shown, "file", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(shown, "file", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    return parse_profile(text, shown)
