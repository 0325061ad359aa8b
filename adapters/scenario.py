"""``heirline run SCENARIO``: scenario files (TOML) run on the fake or the asyncio runtime.

A scenario declares accounts (with the identity each login gets and the
PN<->LID pairs its auth dir holds), engine overrides, timed steps (channel and
gateway actions) and, per reply, the expected outcome. :func:`load_scenario`
parses and validates a file (a :class:`ScenarioError` names the file, the key
or line, and what is wrong); :func:`run_fake` plays it on virtual time,
:func:`run_real` on a loopback :class:`~heirline.adapters.channel.ChannelServer`
with an :class:`~heirline.adapters.aio.AsyncGateway`. Both build the same
runtime-neutral :data:`~heirline.adapters.fake.Script`, so outcomes compare
one to one. The format is documented in ``docs/scenarios.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from heirline.adapters.aio import AsyncGateway, speed_problem
from heirline.adapters.channel import ChannelServer, Ledger
from heirline.adapters.fake import (
    At,
    ChannelControl,
    FakeGateway,
    GatewayBase,
    ReplyOutcome,
    Script,
    ScriptTimeout,
    TimelineEntry,
    Until,
)
from heirline.adapters.jsonio import dumps_pretty
from heirline.core.backoff import BackoffConfig
from heirline.core.engine import EngineConfig
from heirline.core.errors import HeirlineError, JidError, MappingConflictError
from heirline.core.events import (
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    Start,
    Stop,
)
from heirline.core.health import HealthConfig
from heirline.core.identity import LidMapping, SelfIdentity
from heirline.core.lifecycle import LifecycleConfig
from heirline.core.wire import MAX_WIRE_INT

__all__ = [
    "ACTIONS",
    "Account",
    "Check",
    "Expectation",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "Step",
    "add_run_parser",
    "load_scenario",
    "parse_scenario",
    "run_command",
    "run_fake",
    "run_real",
]

OUTCOMES = frozenset({"delivered", "refused", "failed", "unknown"})
VIAS = frozenset({"origin", "successor"})
KINDS = frozenset({"text", "media", "group_metadata", "read_receipt"})
DEFAULT_TIMEOUT_MS = 600_000
DEFAULT_SPEED = 20.0
#: The longest engine-time span one key may give: a day (what an "HH:MM:SS.mmm" time covers).
#: It bounds every wait (``timeout_ms``), step time (``at``, ``after``), capture deadline and
#: latency, so a scenario cannot wait forever.
MAX_SPAN_MS = 86_400_000
#: Larger scenario files are refused (the examples are 2-3 KiB).
MAX_FILE_BYTES = 1 << 20

#: action -> (required keys, optional keys); ``at``/``after``/``action``/``note`` are common.
ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "start": (frozenset({"account"}), frozenset()),
    "stop": (frozenset({"account"}), frozenset({"generation", "reason"})),
    "close": (frozenset({"account"}), frozenset({"status"})),
    "drop": (frozenset({"account"}), frozenset()),
    "logout": (frozenset({"account"}), frozenset({"status"})),
    "relink": (frozenset({"account"}), frozenset({"pn", "lid", "e164", "status", "auth_dir"})),
    "login_as": (frozenset({"account"}), frozenset({"pn", "lid", "e164", "auth_dir"})),
    "auth_dir": (frozenset({"account", "pairs"}), frozenset()),
    "capture": (
        frozenset({"reply", "account"}),
        frozenset({"generation", "chat", "kind", "message_id", "deadline_ms"}),
    ),
    "ready": (frozenset({"reply"}), frozenset({"payload"})),
    "health_check": (frozenset(), frozenset()),
    "learn_mapping": (frozenset({"pn", "lid"}), frozenset()),
    "wait": (frozenset(), frozenset({"account", "generation", "state", "not_state", "reply"})),
}
_COMMON = frozenset({"at", "after", "action", "note", "timeout_ms"})
_TOP = frozenset(
    {
        "name",
        "description",
        "seed",
        "clock_base",
        "boot_ms",
        "connect_ms",
        "ack_ms",
        "speed",
        "timeout_ms",
        "mapping",
        "engine",
        "accounts",
        "steps",
        "expect",
    }
)
_EXPECT_KEYS = frozenset({"outcome", "via", "generation", "reason", "received_by"})
_ACCOUNT_KEYS = frozenset({"name", "pn", "lid", "e164", "auth_dir"})
_CLOCK = re.compile(r"^([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,3}))?$")
_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


class ScenarioError(Exception):
    """A malformed scenario: ``where`` is the key path (or line) inside ``path``."""

    def __init__(self, path: str, where: str, message: str) -> None:
        super().__init__(f"{path}: {where}: {message}")
        self.path = path
        self.where = where
        self.message = message


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    pn: str | None = None
    lid: str | None = None
    e164: str | None = None
    auth_dir: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """One timed action: ``at_ms`` absolute engine time, ``after_ms`` after the step before."""

    action: str
    args: Mapping[str, Any]
    at_ms: int | None = None
    after_ms: int | None = None
    note: str | None = None
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Expectation:
    reply: str
    outcome: str
    via: str | None = None
    generation: int | None = None
    reason: str | None = None
    received_by: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    name: str
    description: str
    config: EngineConfig
    accounts: tuple[Account, ...]
    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...]
    mapping: tuple[tuple[str, str], ...] = ()
    seed: int = 0
    clock_base_ms: int = 0
    boot_ms: int = 0
    connect_ms: int = 5
    ack_ms: int = 5
    speed: float = DEFAULT_SPEED
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @property
    def message_ids(self) -> dict[str, str]:
        """reply id -> the message id its transmissions carry."""
        ids: dict[str, str] = {}
        for step in self.steps:
            if step.action == "capture":
                reply = str(step.args["reply"])
                ids[reply] = str(step.args.get("message_id", reply))
        return ids


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Typed access to a TOML table that reports the full key path on error."""

    def __init__(self, path: str, table: Mapping[str, Any], where: str) -> None:
        self.path = path
        self.table = table
        self.where = where

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, message: str) -> ScenarioError:
        return ScenarioError(self.path, self.key(name), message)

    def only(self, allowed: frozenset[str]) -> None:
        for name in self.table:
            if name not in allowed:
                raise self.fail(
                    name, f"unknown key (allowed: {', '.join(sorted(allowed)) or 'none'})"
                )

    def has(self, name: str) -> bool:
        return name in self.table

    def _get(self, name: str, required: bool) -> Any:
        if name not in self.table:
            if required:
                raise self.fail(name, "missing required key")
            return None
        return self.table[name]

    def str_(self, name: str, *, required: bool = False) -> str | None:
        value = self._get(name, required)
        if value is not None and not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {_tname(value)} {value!r}")
        return value

    def int_(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(name, f"must be an integer, got {_tname(value)} {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(name, f"must be <= {maximum}, got {value}")
        return value

    def ms(self, name: str, *, minimum: int = 0) -> int | None:
        """An engine-time span in ms: at least ``minimum``, at most :data:`MAX_SPAN_MS` (a day)."""
        return self.int_(name, minimum=minimum, maximum=MAX_SPAN_MS)

    def identity(self) -> None:
        """The ``pn``/``lid``/``e164`` a login shows must be a valid self identity."""
        forms = {k: self.str_(k) for k in ("pn", "lid", "e164")}
        for key, value in forms.items():
            if value is not None:
                try:
                    SelfIdentity.parse(**{key: value})
                except JidError as exc:
                    raise self.fail(key, f"not a valid self identity: {exc}") from None
        try:
            SelfIdentity.parse(**forms)
        except JidError as exc:
            raise self.fail("e164", f"not a valid self identity: {exc}") from None

    def table_(self, name: str) -> _Reader | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table, got {_tname(value)}")
        return _Reader(self.path, value, self.key(name))

    def pairs(self, name: str, *, required: bool = False) -> tuple[tuple[str, str], ...]:
        value = self._get(name, required)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(name, f'must be a list of ["pn", "lid"] pairs, got {_tname(value)}')
        out = []
        for i, pair in enumerate(value):
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(x, str) for x in pair)
            ):
                raise ScenarioError(
                    self.path,
                    f"{self.key(name)}[{i}]",
                    f'must be a ["pn jid", "lid jid"] pair of strings, got {pair!r}',
                )
            try:
                LidMapping.from_pairs([(pair[0], pair[1])])
            except JidError as exc:
                raise ScenarioError(
                    self.path, f"{self.key(name)}[{i}]", f"not a valid PN<->LID pair: {exc}"
                ) from None
            out.append((pair[0], pair[1]))
        try:
            LidMapping.from_pairs(out)
        except MappingConflictError as exc:
            raise self.fail(name, f"the pairs contradict each other: {exc}") from None
        return tuple(out)


def _tname(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _time(reader: _Reader, name: str, base_ms: int) -> int | None:
    """``at``/``after``: integer ms, or "HH:MM:SS.mmm" (absolute, minus ``clock_base``)."""
    value = reader.table.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        match = _CLOCK.match(value)
        if match is None:
            raise reader.fail(name, f'must be ms or "HH:MM:SS.mmm", got {value!r}')
        h, m, s = (int(x) for x in match.groups()[:3])
        if h > 23 or m > 59 or s > 59:
            raise reader.fail(name, f"{value!r} is not a time of day (HH 00-23, MM and SS 00-59)")
        ms = ((h * 60 + m) * 60 + s) * 1000 + int((match.group(4) or "0").ljust(3, "0"))
        if name == "at":
            ms -= base_ms
        if ms < 0:
            raise reader.fail(name, f"{value!r} is before clock_base")
        return ms
    return reader.ms(name)


def _check_numbers(doc: Mapping[str, Any], path: str) -> None:
    """One rule for every number in the file, whatever its key: integers within
    +-MAX_WIRE_INT (what every binding holds), floats finite. Walked without recursion."""
    stack: list[tuple[str, object]] = [(k, v) for k, v in doc.items()][::-1]
    while stack:  # depth first, in file order
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend([(f"{where}.{k}", v) for k, v in value.items()][::-1])
        elif isinstance(value, list):
            stack.extend([(f"{where}[{i}]", v) for i, v in enumerate(value)][::-1])
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and abs(value) > MAX_WIRE_INT:
            raise ScenarioError(
                path, where, f"integer {value} is outside +-{MAX_WIRE_INT} (2**53-1)"
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise ScenarioError(path, where, f"must be a finite number, got {value}")


def _dataclass_overrides(
    reader: _Reader, cls: type[Any], skip: frozenset[str], extra: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Values for ``cls``'s scalar fields from ``reader`` (``false`` disables an optional one)."""
    names = {f.name: f for f in fields(cls) if f.name not in skip}
    reader.only(frozenset(names) | extra)
    out: dict[str, Any] = {}
    for name in names:
        if not reader.has(name):
            continue
        value = reader.table[name]
        default = getattr(cls(), name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise reader.fail(name, f"must be a boolean, got {_tname(value)} {value!r}")
        elif value is False and name == "retry_grace_ms":
            value = None  # retry grace off: openclaw's behaviour
        elif isinstance(default, float):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise reader.fail(name, f"must be a number, got {_tname(value)} {value!r}")
            value = float(value)  # `jitter = 0` is a number too; the dataclass wants a float
        elif isinstance(default, int) or default is None:
            if not isinstance(value, int) or isinstance(value, bool):
                hint = " (or false to turn it off)" if name == "retry_grace_ms" else ""
                raise reader.fail(name, f"must be an integer{hint}, got {_tname(value)} {value!r}")
        else:  # pragma: no cover - no other field kinds are exposed
            raise reader.fail(name, "cannot be set from a scenario")
        out[name] = value
    return out


def _engine_config(top: _Reader) -> EngineConfig:
    engine = top.table_("engine")
    if engine is None:
        return EngineConfig()
    kwargs = _dataclass_overrides(
        engine,
        EngineConfig,
        frozenset({"lifecycle", "health", "resendable_kinds"}),
        frozenset({"health", "backoff", "resendable_kinds"}),
    )
    if engine.has("resendable_kinds"):
        kinds = engine.table["resendable_kinds"]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise engine.fail("resendable_kinds", f"must be an array of strings, got {kinds!r}")
        kwargs["resendable_kinds"] = frozenset(kinds)
    health = engine.table_("health")
    backoff = engine.table_("backoff")
    try:
        if health is not None:
            kwargs["health"] = HealthConfig(
                **_dataclass_overrides(health, HealthConfig, frozenset())
            )
        if backoff is not None:
            b = BackoffConfig(**_dataclass_overrides(backoff, BackoffConfig, frozenset()))
            kwargs["lifecycle"] = LifecycleConfig(backoff=b)
        return EngineConfig(**kwargs)
    except HeirlineError as exc:
        raise ScenarioError(top.path, "engine", str(exc)) from None


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Parse and validate scenario TOML ``text``; raises :class:`ScenarioError`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        match = _LINE.search(msg)
        where = f"line {match.group(1)}, column {match.group(2)}" if match else "TOML syntax"
        raise ScenarioError(path, where, f"invalid TOML: {_LINE.sub('', msg).strip()}") from None
    except RecursionError:
        raise ScenarioError(path, "TOML syntax", "invalid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. Python's int() limit: an integer of over 4300 digits
        problem = str(exc).split(";", 1)[0]
        raise ScenarioError(path, "TOML syntax", f"invalid TOML: {problem}") from None
    _check_numbers(doc, path)
    top = _Reader(path, doc, "")
    top.only(_TOP)
    config = _engine_config(top)
    base = 0
    if top.has("clock_base"):
        base = _time(top, "clock_base", 0) or 0
    speed_value = doc.get("speed", DEFAULT_SPEED)
    if not isinstance(speed_value, int | float) or isinstance(speed_value, bool):
        raise top.fail("speed", f"must be a number, got {_tname(speed_value)} {speed_value!r}")
    too_fast_or_slow = speed_problem(speed_value)
    if too_fast_or_slow is not None:
        raise top.fail("speed", too_fast_or_slow)

    accounts = _accounts(top)
    names = {a.name for a in accounts}
    steps = _steps(top, names, base)
    expectations = _expectations(top)
    captured = [str(s.args["reply"]) for s in steps if s.action == "capture"]
    expected = {e.reply for e in expectations}
    for i, step in enumerate(steps):
        reply = step.args.get("reply")
        if step.action in ("ready", "wait") and reply is not None and reply not in captured:
            raise ScenarioError(path, f"steps[{i}].reply", f"reply {reply!r} is never captured")
    for reply in captured:
        if reply not in expected:
            raise ScenarioError(path, f"expect.{reply}", "missing: every captured reply needs one")
    for reply in sorted(expected - set(captured)):
        raise ScenarioError(path, f"expect.{reply}", f"reply {reply!r} is never captured")
    return Scenario(
        path=path,
        name=top.str_("name") or Path(path).stem,
        description=top.str_("description") or "",
        config=config,
        accounts=accounts,
        steps=steps,
        expectations=expectations,
        mapping=top.pairs("mapping"),
        seed=top.int_("seed") or 0,
        clock_base_ms=base,
        boot_ms=_opt(top.ms("boot_ms"), 0),
        connect_ms=_opt(top.ms("connect_ms"), 5),
        ack_ms=_opt(top.ms("ack_ms"), 5),
        speed=float(speed_value),
        timeout_ms=_opt(top.ms("timeout_ms", minimum=1), DEFAULT_TIMEOUT_MS),
    )


def _opt(value: int | None, default: int) -> int:
    return default if value is None else value


def _list_of_tables(top: _Reader, name: str) -> list[_Reader]:
    value = top.table.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise top.fail(name, f"must be an array of tables ([[{name}]]), got {_tname(value)}")
    return [_Reader(top.path, t, f"{name}[{i}]") for i, t in enumerate(value)]


def _accounts(top: _Reader) -> tuple[Account, ...]:
    out: list[Account] = []
    for r in _list_of_tables(top, "accounts"):
        r.only(_ACCOUNT_KEYS)
        name = r.str_("name", required=True)
        assert name is not None
        if any(a.name == name for a in out):
            raise r.fail("name", f"account {name!r} is declared twice")
        r.identity()
        out.append(Account(name, r.str_("pn"), r.str_("lid"), r.str_("e164"), r.pairs("auth_dir")))
    if not out:
        raise top.fail("accounts", "missing: declare at least one [[accounts]]")
    return tuple(out)


def _steps(top: _Reader, accounts: set[str], base: int) -> tuple[Step, ...]:
    out: list[Step] = []
    for r in _list_of_tables(top, "steps"):
        action = r.str_("action", required=True)
        assert action is not None
        if action not in ACTIONS:
            raise r.fail("action", f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        required, optional = ACTIONS[action]
        r.only(_COMMON | required | optional)
        for name in sorted(required):
            if name not in r.table:
                raise r.fail(name, f"missing required key for action {action!r}")
        for name in ("account", "reply", "chat", "kind", "message_id", "pn", "lid", "e164"):
            r.str_(name)
        for name in ("generation", "status"):
            r.int_(name, minimum=0)
        r.ms("deadline_ms", minimum=1)
        if action in ("relink", "login_as"):
            r.identity()
        if action == "learn_mapping":
            try:
                LidMapping.from_pairs([(str(r.table["pn"]), str(r.table["lid"]))])
            except JidError as exc:
                raise ScenarioError(r.path, r.where, f"not a valid PN<->LID pair: {exc}") from None
        if r.has("pairs"):
            r.pairs("pairs")
        if r.has("auth_dir"):
            r.pairs("auth_dir")
        for name in ("state", "not_state", "reason", "payload"):
            r.str_(name)
        account = r.table.get("account")
        if account is not None and account not in accounts:
            raise r.fail("account", f"unknown account {account!r} (declared: {sorted(accounts)})")
        kind = r.table.get("kind")
        if kind is not None and kind not in KINDS:
            raise r.fail("kind", f"unknown kind {kind!r} (known: {sorted(KINDS)})")
        if action == "wait" and sum(r.has(k) for k in ("state", "not_state", "reply")) != 1:
            raise r.fail("action", "wait needs exactly one of state, not_state or reply")
        if action == "wait" and not r.has("reply") and not r.has("account"):
            raise r.fail("account", "missing required key for a state wait")
        if r.has("at") and r.has("after"):
            raise r.fail("after", "give either at or after, not both")
        args = {k: v for k, v in r.table.items() if k not in _COMMON}
        out.append(
            Step(
                action,
                args,
                _time(r, "at", base),
                _time(r, "after", base),
                r.str_("note"),
                r.ms("timeout_ms", minimum=1),
            )
        )
    if not out:
        raise top.fail("steps", "missing: declare at least one [[steps]]")
    return tuple(out)


def _expectations(top: _Reader) -> tuple[Expectation, ...]:
    expect = top.table_("expect")
    if expect is None:
        return ()
    out = []
    for reply in expect.table:
        r = expect.table_(reply)
        assert r is not None
        r.only(_EXPECT_KEYS)
        outcome = r.str_("outcome", required=True)
        if outcome not in OUTCOMES:
            raise r.fail("outcome", f"must be one of {sorted(OUTCOMES)}, got {outcome!r}")
        via = r.str_("via")
        if via is not None and via not in VIAS:
            raise r.fail("via", f"must be one of {sorted(VIAS)}, got {via!r}")
        out.append(
            Expectation(
                reply,
                outcome,
                via,
                r.int_("generation", minimum=1),
                r.str_("reason"),
                r.str_("received_by"),
            )
        )
    return tuple(out)


def load_scenario(path: str | Path) -> Scenario:
    """Read and parse a scenario file; unreadable files are a :class:`ScenarioError` too."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL byte in the path
        raise ScenarioError(name, "file", f"cannot read: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(name, "file", f"is larger than {MAX_FILE_BYTES} bytes")
    return parse_scenario(text, name)


# --------------------------------------------------------------------------- the script


def scenario_script(sc: Scenario, gw: GatewayBase, channel: ChannelControl) -> Script:
    """The scenario as a runtime-neutral script (for the fake or the asyncio gateway)."""
    for acct in sc.accounts:
        channel.add_account(acct.name, acct.pn, acct.lid, acct.e164)
        gw.auth_dir[acct.name] = list(acct.auth_dir)
    for pn, lid in sc.mapping:
        gw.feed(MappingLearned(pn=pn, lid=lid))
    captured: list[str] = []
    last = gw.now_ms()
    for step in sc.steps:
        if step.at_ms is not None:
            yield At(step.at_ms)
        elif step.after_ms is not None:
            yield At(last + step.after_ms)
        if step.note:
            gw.note(step.note, account=step.args.get("account"))
        timeout = step.timeout_ms or sc.timeout_ms
        if step.action == "wait":
            yield _wait(gw, step, timeout)
        else:
            _act(step, gw, channel, captured)
        last = gw.now_ms()
    yield Until(
        lambda: all(r in gw.outcomes for r in captured),
        sc.timeout_ms,
        f"every captured reply ends ({', '.join(captured)})",
    )


def _wait(gw: GatewayBase, step: Step, timeout: int) -> Until:
    a = step.args
    if "reply" in a:
        reply = str(a["reply"])
        return Until(lambda: reply in gw.outcomes, timeout, f"reply {reply} ends")
    account = str(a["account"])

    def gen() -> int | None:
        g = a.get("generation")
        return int(g) if g is not None else gw.engine.current(account)

    def state() -> str | None:
        g = gen()
        return None if g is None else gw.engine.controller_state(account, g)

    which = f" generation {a['generation']}" if "generation" in a else ""
    if "state" in a:
        want = str(a["state"])
        return Until(lambda: state() == want, timeout, f"{account}{which} controller {want}")
    avoid = str(a["not_state"])
    return Until(
        lambda: state() not in (avoid, None), timeout, f"{account}{which} controller not {avoid}"
    )


def _current(gw: GatewayBase, account: str, explicit: object) -> int:
    if explicit is not None:
        return int(str(explicit))
    generation = gw.engine.current(account)
    return 0 if generation is None else generation  # 0: the engine rejects it, reported


def _act(step: Step, gw: GatewayBase, channel: ChannelControl, captured: list[str]) -> None:
    a = step.args
    action = step.action
    account = a.get("account")
    if action == "start":
        gw.feed(Start(account=str(account)))
    elif action == "stop":
        generation = _current(gw, str(account), a.get("generation"))
        gw.feed(Stop(account=str(account), generation=generation, reason=a.get("reason", "owner")))
    elif action == "close":
        gw.note(f"channel closes with status {a.get('status')}", account=account)
        channel.close_account(str(account), a.get("status"))
    elif action == "drop":
        gw.note("channel drops the connection (no status)", account=account)
        channel.close_account(str(account), None)
    elif action == "logout":
        gw.note("channel logs the account out", account=account)
        channel.logout(str(account), a.get("status", 401))
    elif action in ("relink", "login_as"):
        pn, lid, e164 = a.get("pn"), a.get("lid"), a.get("e164")
        if "auth_dir" in a:
            gw.auth_dir[str(account)] = [(p[0], p[1]) for p in a["auth_dir"]]
        forms = " / ".join(x for x in (pn, lid, e164) if x) or "(unauthenticated)"
        if action == "relink":
            gw.note(f"account relinked to {forms}", account=account)
            channel.relink(str(account), pn, lid, e164, a.get("status", 401))
        else:
            gw.note(f"next login shows {forms}", account=account)
            channel.add_account(str(account), pn, lid, e164)
    elif action == "auth_dir":
        gw.auth_dir[str(account)] = [(p[0], p[1]) for p in a["pairs"]]
    elif action == "capture":
        reply = str(a["reply"])
        captured.append(reply)
        deadline = a.get("deadline_ms")
        gw.feed(
            ReplyCaptured(
                reply_id=reply,
                account=str(account),
                generation=_current(gw, str(account), a.get("generation")),
                chat=a.get("chat", "120363000000000000@g.us"),
                kind=a.get("kind", "text"),
                deadline_ms=None if deadline is None else gw.now_ms() + int(deadline),
                message_id=a.get("message_id"),
            )
        )
    elif action == "ready":
        gw.feed(ReplyReady(reply_id=str(a["reply"]), payload=a.get("payload", "")))
    elif action == "health_check":
        gw.feed(HealthCheck())
    elif action == "learn_mapping":
        gw.feed(MappingLearned(pn=str(a["pn"]), lid=str(a["lid"])))
    else:  # pragma: no cover - parse_scenario only lets known actions through
        raise ValueError(f"unknown action {action!r}")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    runtime: str
    outcomes: dict[str, ReplyOutcome]
    timeline: list[TimelineEntry]
    transmissions: int
    ledger: Ledger
    error: str | None = None
    checks: list[Check] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    def outcome_rows(self) -> list[tuple[str, str, str | None, int | None, str]]:
        """(reply, outcome, via, generation, reason) per reply, sorted: compare runtimes with it."""
        return sorted(
            (o.reply_id, o.outcome, o.via, o.generation, o.reason) for o in self.outcomes.values()
        )

    def to_json(self) -> dict[str, Any]:
        summary = self.ledger.summary()
        return {
            "scenario": self.scenario.name,
            "file": self.scenario.path,
            "runtime": self.runtime,
            "ok": self.ok,
            "error": self.error,
            "replies": [
                {"reply_id": r, "outcome": o, "via": v, "generation": g, "reason": why}
                for r, o, v, g, why in self.outcome_rows()
            ],
            "transmissions": self.transmissions,
            "ledger": {
                "total": summary.total,
                "duplicates_suppressed": summary.duplicates_suppressed,
                "cross_identity": list(summary.cross_identity),
                "identities": [
                    {"identity": str(i.identity), "message_ids": list(i.message_ids)}
                    for i in summary.identities
                ],
            },
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "wall_s": round(self.wall_s, 3),
        }


def check_result(result: ScenarioResult) -> list[Check]:
    """Each expectation, plus the safety invariants every scenario must keep."""
    sc = result.scenario
    ids = sc.message_ids
    checks: list[Check] = []
    for exp in sc.expectations:
        got = result.outcomes.get(exp.reply)
        name = f"{exp.reply}: {exp.outcome}" + (f" via {exp.via}" if exp.via else "")
        if exp.generation is not None:
            name += f" (generation {exp.generation})"
        problems: list[str] = []
        if got is None:
            problems.append("never ended")
        else:
            if got.outcome != exp.outcome:
                problems.append(f"outcome {got.outcome}")
            if exp.via is not None and got.via != exp.via:
                problems.append(f"via {got.via}")
            if exp.generation is not None and got.generation != exp.generation:
                problems.append(f"generation {got.generation}")
            if exp.reason is not None and exp.reason not in got.reason:
                problems.append(f"reason {got.reason!r} lacks {exp.reason!r}")
        checks.append(Check(name, not problems, "; ".join(problems)))
        if exp.received_by is not None:
            holders = result.ledger.holders(ids[exp.reply])
            ok = len(holders) == 1 and holders[0].has_form(exp.received_by)
            checks.append(
                Check(
                    f"{exp.reply}: ledger shows it only under {exp.received_by}",
                    ok,
                    "" if ok else f"holders: {[str(h) for h in holders] or 'nobody'}",
                )
            )
    summary = result.ledger.summary()
    checks.append(
        Check(
            "no message id received by two identities",
            not summary.cross_identity,
            ", ".join(summary.cross_identity),
        )
    )
    not_sent = [
        r
        for r, o in result.outcomes.items()
        if o.outcome in ("refused", "failed") and result.ledger.holders(ids.get(r, r))
    ]
    checks.append(
        Check("refused/failed replies never reached the channel", not not_sent, ", ".join(not_sent))
    )
    return checks


def _finish(
    sc: Scenario,
    runtime: str,
    gw: GatewayBase,
    ledger: Ledger,
    error: str | None,
    started: float,
) -> ScenarioResult:
    result = ScenarioResult(
        sc, runtime, dict(gw.outcomes), list(gw.timeline), len(gw.transmissions), ledger, error
    )
    for rejected in gw.rejections:
        result.checks.append(
            Check(f"engine accepted every input ({rejected.code})", False, rejected.message)
        )
    result.checks.extend(check_result(result))
    result.wall_s = time.monotonic() - started
    return result


def run_fake(sc: Scenario, *, seed: int | None = None) -> ScenarioResult:
    """Play the scenario on virtual time (the fake runtime)."""
    started = time.monotonic()
    gw = FakeGateway(
        sc.config,
        random=random.Random(sc.seed if seed is None else seed).random,
        boot_ms=sc.boot_ms,
        connect_ms=sc.connect_ms,
        ack_ms=sc.ack_ms,
    )
    error = None
    try:
        gw.run(scenario_script(sc, gw, gw.channel))
    except ScriptTimeout as exc:
        error = str(exc)
    return _finish(sc, "fake", gw, gw.channel.ledger, error, started)


async def run_real(
    sc: Scenario, *, seed: int | None = None, speed: float | None = None
) -> ScenarioResult:
    """Play the scenario on loopback sockets: a fresh reference server and an AsyncGateway."""
    started = time.monotonic()
    speed = sc.speed if speed is None else speed
    server = ChannelServer()
    await server.start()
    error = None
    try:
        if sc.ack_ms:
            server.set_ack_delay(max(0, round(sc.ack_ms / speed)))
        gw = AsyncGateway.over_channel(
            server.port,
            sc.config,
            random=random.Random(sc.seed if seed is None else seed).random,
            boot_ms=sc.boot_ms,
            speed=speed,
        )
        async with gw:
            try:
                await gw.run(scenario_script(sc, gw, server))
            except ScriptTimeout as exc:
                error = str(exc)
        return _finish(sc, "real", gw, server.ledger, error, started)
    finally:
        await server.stop()


# --------------------------------------------------------------------------- rendering and CLI


def _clock(sc: Scenario, ms: int) -> str:
    total = sc.clock_base_ms + ms
    h, rest = divmod(total // 1000, 3600)
    m, s = divmod(rest, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}.{total % 1000:03d}"


def render(console: Console, result: ScenarioResult, *, timeline: bool = True) -> None:
    sc = result.scenario
    console.print(Text(f"{sc.name} ({result.runtime}) - {sc.path}", style="bold"))
    if sc.description:
        console.print(sc.description)
    if timeline:
        for e in result.timeline:
            who = "" if e.generation is None else f"g{e.generation}"
            style = "cyan" if e.level == "note" else ("yellow" if e.level == "warning" else "")
            console.print(Text(f"{_clock(sc, e.at_ms)}  {who:<3} {e.message}", style=style))
    replies = Table(title="Replies", title_justify="left")
    for column in ("reply", "outcome", "via", "generation", "reason"):
        replies.add_column(column, overflow="fold")
    for r, o, v, g, why in result.outcome_rows():
        style = "green" if o == "delivered" else "red"
        replies.add_row(r, Text(o, style=style), v or "", "" if g is None else str(g), why)
    checks = Table(title="Expectations and invariants", title_justify="left")
    checks.add_column("check", overflow="fold")
    checks.add_column("held")
    checks.add_column("detail", overflow="fold")
    for c in result.checks:
        checks.add_row(c.name, Text("yes" if c.ok else "NO", "green" if c.ok else "red"), c.detail)
    console.print(replies)
    console.print(checks)
    if result.error:
        console.print(Text(f"scenario did not finish: {result.error}", style="bold red"))
    verdict = "every expectation held" if result.ok else "an expectation FAILED"
    console.print(
        Text(
            f"{verdict} ({result.transmissions} transmissions, {result.wall_s:.2f}s)",
            style="bold green" if result.ok else "bold red",
        )
    )


def add_run_parser(
    subparsers: Any,
) -> None:  # argparse._SubParsersAction (not subscriptable at run time)
    """Register ``heirline run SCENARIO [--real] [--json] [--seed N] [--speed X] [--no-color]``."""
    p = subparsers.add_parser(
        "run",
        help="run a scenario file (TOML) and check its expectations",
        description="Run a scenario on virtual time with the fake runtime, or with --real on "
        "loopback sockets. Exit 0 if every expectation held, 1 if not, 2 if the file is "
        "malformed. The format is in docs/scenarios.md.",
    )
    p.add_argument("scenario", help="path to the scenario .toml file")
    p.add_argument("--real", action="store_true", help="run on loopback sockets (asyncio)")
    p.add_argument("--json", action="store_true", help="print a machine-readable outcome")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument(
        "--speed",
        type=_speed_arg,
        default=None,
        help="with --real: engine ms per real ms, 1 (real time) to 1000",
    )
    p.add_argument("--quiet", action="store_true", help="omit the timeline")
    p.add_argument("--no-color", action="store_true", help="plain text output")
    p.set_defaults(handler=run_command)


def _speed_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    problem = speed_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def run_command(args: argparse.Namespace, *, out: Any = None, err: Any = None) -> int:
    """Handler of ``heirline run``: 0 if every expectation held, 1 if not, 2 if malformed.

    ``out``/``err`` are text streams (default stdout/stderr; any object with ``write``).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"heirline run: {exc}", file=err)
        return 2
    speed = getattr(args, "speed", None)
    problem = None if speed is None else speed_problem(speed)
    if problem is not None:
        print(f"heirline run: --speed {problem}", file=err)
        return 2
    seed = getattr(args, "seed", None)
    if getattr(args, "real", False):
        budget = sc.timeout_ms * (len(sc.steps) + 1) / 1000 / (speed or sc.speed) + 30
        try:
            result = asyncio.run(asyncio.wait_for(run_real(sc, seed=seed, speed=speed), budget))
        except (OSError, TimeoutError) as exc:
            print(f"heirline run: {sc.path}: could not run on loopback: {exc!r}", file=err)
            return 2
    else:
        result = run_fake(sc, seed=seed)
    if getattr(args, "json", False):
        out.write(dumps_pretty(result.to_json()) + "\n")
    else:
        color = not getattr(args, "no_color", False)
        console = Console(
            file=out,
            no_color=not color,
            color_system="auto" if color else None,
            highlight=False,
            width=None if out is sys.stdout else 120,
        )
        render(console, result, timeline=not getattr(args, "quiet", False))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (until ``heirline run`` is wired into the CLI)."""
    parser = argparse.ArgumentParser(prog="heirline")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
