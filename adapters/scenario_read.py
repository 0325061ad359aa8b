"""Reading scenario files: TOML in, a validated :class:`Scenario` out, or a :class:`ScenarioError`.

The file's shape is :mod:`heirline.adapters.scenario_doc`; what it cannot say
is checked here after it: the accounts and replies steps name, and the Baileys
auth dirs accounts name (read here, once, so that a run never meets a bad one).
Every problem is a :class:`ScenarioError` naming the file, the key path (or the
TOML line) and what is wrong.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from heirline.adapters.authdir import AuthDir, AuthDirError, read_auth_dir
from heirline.adapters.scenario_doc import (
    ACTIONS,
    DEFAULT_SPEED,
    DEFAULT_TIMEOUT_MS,
    MAX_SPAN_MS,
    SCENARIO,
    AccountDoc,
    CaptureStep,
    ClockTime,
    ExpectDoc,
    Kind,
    LatencyDoc,
    Outcome,
    ScenarioDoc,
    StepDoc,
    Via,
    clock_text,
    scenario_schema,
)
from heirline.core.engine import EngineConfig
from heirline.core.errors import ValidationError

__all__ = [
    "ACTIONS",
    "DEFAULT_SPEED",
    "DEFAULT_TIMEOUT_MS",
    "MAX_FILE_BYTES",
    "MAX_SPAN_MS",
    "SCENARIO",
    "Account",
    "Expectation",
    "Kind",
    "Outcome",
    "Scenario",
    "ScenarioError",
    "Step",
    "Via",
    "load_scenario",
    "parse_scenario",
    "scenario_schema",
]

#: Larger scenario files are refused (the examples are 2-3 KiB).
MAX_FILE_BYTES: Final = 1 << 20
_LINE: Final = re.compile(r"\(at line (\d+), column (\d+)\)")
_COMMON: Final = frozenset(f.name for f in fields(StepDoc))


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
    """An account: the identity its logins show, and what its auth dir holds.

    ``auth_dir`` are PN<->LID pairs given in the file; ``auth`` is a Baileys auth dir
    the file named, read at load time (its pairs and its own identity feed the
    engine once, when the account first boots).
    """

    name: str
    pn: str | None = None
    lid: str | None = None
    e164: str | None = None
    auth_dir: tuple[tuple[str, str], ...] = ()
    auth: AuthDir | None = None


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
    """How one captured reply must end (``transmissions``: how often it went out)."""

    reply: str
    outcome: str
    via: str | None = None
    generation: int | None = None
    reason: str | None = None
    received_by: str | None = None
    transmissions: int | None = None


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
    latency: tuple[LatencyDoc, ...] = ()

    @property
    def message_ids(self) -> dict[str, str]:
        """reply id -> the message id its transmissions carry."""
        ids: dict[str, str] = {}
        for step in self.steps:
            if step.action == "capture":
                reply = str(step.args["reply"])
                ids[reply] = str(step.args.get("message_id", reply))
        return ids


# --------------------------------------------------------------------------- reading


def _ms(value: int | ClockTime | None, base: int, where: str, path: str) -> int | None:
    """``at``: ms, or a time of day minus ``clock_base``; ``after``: ms or a duration."""
    if not isinstance(value, ClockTime):
        return value
    ms = value.ms - base
    if ms < 0:
        raise ScenarioError(path, where, f"{clock_text(value.ms)!r} is before clock_base")
    return ms


def _step(i: int, doc: StepDoc, base: int, path: str) -> Step:
    args = {
        f.name: getattr(doc, f.name)
        for f in fields(doc)
        if f.name not in _COMMON and getattr(doc, f.name) is not None
    }
    at = _ms(doc.at, base, f"steps[{i}].at", path)
    after = _ms(doc.after, 0, f"steps[{i}].after", path)
    return Step(doc.ACTION, args, at, after, doc.note, doc.timeout_ms)


def _account(i: int, doc: AccountDoc, path: str) -> Account:
    if not isinstance(doc.auth_dir, str):
        return Account(doc.name, doc.pn, doc.lid, doc.e164, doc.auth_dir)
    where = Path(doc.auth_dir)
    if not where.is_absolute():
        where = Path(path).parent / where
    try:
        auth = read_auth_dir(where)
    except AuthDirError as exc:
        raise ScenarioError(path, f"accounts[{i}].auth_dir", str(exc)) from None
    pn, lid, e164 = doc.pn, doc.lid, doc.e164
    if pn is None and lid is None and e164 is None:  # the login shows what creds.json says
        me = auth.identity
        pn = None if me.pn is None else str(me.pn)
        lid = None if me.lid is None else str(me.lid)
    return Account(doc.name, pn, lid, e164, (), auth)


def _expectation(reply: str, e: ExpectDoc) -> Expectation:
    return Expectation(
        reply, e.outcome, e.via, e.generation, e.reason, e.received_by, e.transmissions
    )


def _check_references(sc: ScenarioDoc, path: str) -> None:
    names = [a.name for a in sc.accounts]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ScenarioError(path, f"accounts[{i}].name", f"account {name!r} is declared twice")
    seen: set[tuple[str, int]] = set()
    for i, lat in enumerate(sc.latency):
        if lat.account not in names:
            known = f"unknown account {lat.account!r} (declared: {sorted(names)})"
            raise ScenarioError(path, f"latency[{i}].account", known)
        if (lat.account, lat.generation) in seen:
            twice = f"generation {lat.generation} of {lat.account!r} is given twice"
            raise ScenarioError(path, f"latency[{i}].generation", twice)
        seen.add((lat.account, lat.generation))
    captured: list[str] = []
    for i, step in enumerate(sc.steps):
        account = getattr(step, "account", None)
        if account is not None and account not in names:
            known = f"unknown account {account!r} (declared: {sorted(names)})"
            raise ScenarioError(path, f"steps[{i}].account", known)
        reply = getattr(step, "reply", None)
        if isinstance(step, CaptureStep):
            captured.append(step.reply)
        elif reply is not None and reply not in captured:
            raise ScenarioError(path, f"steps[{i}].reply", f"reply {reply!r} is never captured")
    for reply in captured:
        if reply not in sc.expect:
            raise ScenarioError(path, f"expect.{reply}", "missing: every captured reply needs one")
    for reply in sorted(set(sc.expect) - set(captured)):
        raise ScenarioError(path, f"expect.{reply}", f"reply {reply!r} is never captured")


def _toml(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
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


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Parse and validate scenario TOML ``text``; raises :class:`ScenarioError`."""
    try:
        doc = SCENARIO.decode(_toml(text, path))
    except ValidationError as exc:
        raise ScenarioError(path, exc.where or "file", exc.problem) from None
    assert isinstance(doc, ScenarioDoc)
    _check_references(doc, path)
    base = 0
    if doc.clock_base is not None:
        base = doc.clock_base.ms if isinstance(doc.clock_base, ClockTime) else doc.clock_base
    return Scenario(
        path=path,
        name=doc.name or Path(path).stem,
        description=doc.description,
        config=doc.engine,
        accounts=tuple(_account(i, a, path) for i, a in enumerate(doc.accounts)),
        steps=tuple(_step(i, s, base, path) for i, s in enumerate(doc.steps)),
        expectations=tuple(_expectation(reply, e) for reply, e in doc.expect.items()),
        mapping=doc.mapping,
        seed=doc.seed,
        clock_base_ms=base,
        boot_ms=doc.boot_ms,
        connect_ms=doc.connect_ms,
        ack_ms=doc.ack_ms,
        speed=doc.speed,
        timeout_ms=doc.timeout_ms,
        latency=doc.latency,
    )


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
