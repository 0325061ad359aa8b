"""The shape of a scenario file, declared once as dataclasses (see ``docs/scenarios.md``).

:data:`SCENARIO` reads a parsed TOML document into a :class:`ScenarioDoc` with
the mechanism the protocol uses (:mod:`heirline.core.codec`) -- wrong types,
unknown or missing keys, integers beyond +-(2**53-1) and numbers out of their
bounds are reported with the key's full path -- and :func:`scenario_schema`
describes it as JSON Schema. The ``[engine]`` table is the stdio hello's
``config`` document (:mod:`heirline.adapters.config`). Each dataclass checks
what its fields alone cannot say (an identity, PN<->LID pairs, a wait's target).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from typing import Annotated, ClassVar, Final, Literal

from heirline.adapters.aio import speed_problem
from heirline.adapters.config import CONFIG
from heirline.core.codec import Bounds, Custom, Record, Tagged
from heirline.core.engine import EngineConfig
from heirline.core.errors import JidError, MappingConflictError, ValidationError
from heirline.core.identity import LidMapping, SelfIdentity
from heirline.core.lifecycle import State

__all__ = [
    "ACTIONS",
    "DEFAULT_SPEED",
    "DEFAULT_TIMEOUT_MS",
    "MAX_SPAN_MS",
    "SCENARIO",
    "STEP_TYPES",
    "AccountDoc",
    "ClockTime",
    "ExpectDoc",
    "Kind",
    "LatencyDoc",
    "Outcome",
    "ScenarioDoc",
    "StepDoc",
    "Via",
    "clock_text",
    "scenario_schema",
]

DEFAULT_TIMEOUT_MS: Final = 600_000
DEFAULT_SPEED: Final = 20.0
#: The longest engine-time span one key may give: a day (what an "HH:MM:SS.mmm" time covers).
#: It bounds every wait (``timeout_ms``), step time (``at``, ``after``), capture deadline and
#: latency, so a scenario cannot wait forever.
MAX_SPAN_MS: Final = 86_400_000

_CLOCK: Final = re.compile(r"^([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,3}))?$")
_LINE: Final = re.compile(r"\(at line (\d+), column (\d+)\)")

# --------------------------------------------------------------------------- the file's shape


@dataclass(frozen=True, slots=True)
class ClockTime:
    """A time of day, ``"HH:MM:SS.mmm"``, as ms since midnight."""

    ms: int


def _clock_time(text: str) -> ClockTime:
    match = _CLOCK.match(text)
    if match is None:
        raise ValueError(f'must be ms or "HH:MM:SS.mmm", got {text!r}')
    h, m, s = (int(x) for x in match.groups()[:3])
    if h > 23 or m > 59 or s > 59:
        raise ValueError(f"{text!r} is not a time of day (HH 00-23, MM and SS 00-59)")
    return ClockTime(((h * 60 + m) * 60 + s) * 1000 + int((match.group(4) or "0").ljust(3, "0")))


_CLOCK_TIME: Final = Custom(
    (str,),
    '"HH:MM:SS.mmm"',
    _clock_time,
    lambda t: clock_text(t.ms),
    {"type": "string", "pattern": _CLOCK.pattern, "description": "a time of day"},
)

Span = Annotated[int, Bounds(0, MAX_SPAN_MS)]
"""An engine-time span in ms, at most a day."""
PositiveSpan = Annotated[int, Bounds(1, MAX_SPAN_MS)]
Time = Span | ClockTime
"""ms, or a time of day ("HH:MM:SS.mmm"; ``at`` counts it from ``clock_base``)."""
Count = Annotated[int, Bounds(0, None)]
Pairs = tuple[tuple[str, str], ...]
Kind = Literal["text", "media", "group_metadata", "read_receipt"]
Outcome = Literal["delivered", "refused", "failed", "unknown"]
Via = Literal["origin", "successor"]


def _pairs_error(pairs: Pairs, key: str) -> ValidationError | None:
    """What is wrong with a list of PN<->LID pairs (each valid, none contradicting another)."""
    for i, (pn, lid) in enumerate(pairs):
        try:
            LidMapping.from_pairs([(pn, lid)])
        except JidError as exc:
            return ValidationError(f"not a valid PN<->LID pair: {exc}", [key, i])
    try:
        LidMapping.from_pairs(pairs)
    except MappingConflictError as exc:
        return ValidationError(f"the pairs contradict each other: {exc}", [key])
    return None


def _identity_error(pn: str | None, lid: str | None, e164: str | None) -> ValidationError | None:
    """What is wrong with the identity a login shows (each form, then the three together)."""
    forms = {"pn": pn, "lid": lid, "e164": e164}
    for key, value in forms.items():
        if value is not None:
            try:
                SelfIdentity.parse(**{key: value})
            except JidError as exc:
                return ValidationError(f"not a valid self identity: {exc}", [key])
    try:
        SelfIdentity.parse(**forms)
    except JidError as exc:
        return ValidationError(f"not a valid self identity: {exc}", ["e164"])
    return None


def _raise(*errors: ValidationError | None) -> None:
    for error in errors:
        if error is not None:
            raise error


@dataclass(frozen=True, slots=True)
class AccountDoc:
    """An account: what its login shows, and its auth dir (pairs, or a Baileys auth dir)."""

    name: str
    pn: str | None = None
    lid: str | None = None
    e164: str | None = None
    auth_dir: Pairs | str = ()

    def __post_init__(self) -> None:
        pairs = None if isinstance(self.auth_dir, str) else _pairs_error(self.auth_dir, "auth_dir")
        _raise(_identity_error(self.pn, self.lid, self.e164), pairs)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDoc:
    """What every step has: when it runs, a note for the timeline, a wait's bound."""

    ACTION: ClassVar[str] = ""
    at: Time | None = None
    after: Time | None = None
    note: str | None = None
    timeout_ms: PositiveSpan | None = None

    def __post_init__(self) -> None:
        if self.at is not None and self.after is not None:
            raise ValidationError("give either at or after, not both", ["after"])


@dataclass(frozen=True, slots=True, kw_only=True)
class StartStep(StepDoc):
    """``Start``: a new controller generation (replaces the current one)."""

    ACTION: ClassVar[str] = "start"
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopStep(StepDoc):
    """``Stop`` of the current (or given) generation."""

    ACTION: ClassVar[str] = "stop"
    account: str
    generation: Count | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseStep(StepDoc):
    """The channel closes the account's sockets with ``status``."""

    ACTION: ClassVar[str] = "close"
    account: str
    status: Count | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DropStep(StepDoc):
    """The channel drops the account's sockets (no status)."""

    ACTION: ClassVar[str] = "drop"
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LogoutStep(StepDoc):
    """The account is logged out; logins get 401."""

    ACTION: ClassVar[str] = "logout"
    account: str
    status: Count | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelinkStep(StepDoc):
    """The account now logs in as another identity; live sockets close."""

    ACTION: ClassVar[str] = "relink"
    account: str
    pn: str | None = None
    lid: str | None = None
    e164: str | None = None
    status: Count | None = None
    auth_dir: Pairs | None = None

    def __post_init__(self) -> None:
        StepDoc.__post_init__(self)
        pairs = None if self.auth_dir is None else _pairs_error(self.auth_dir, "auth_dir")
        _raise(_identity_error(self.pn, self.lid, self.e164), pairs)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginAsStep(StepDoc):
    """The *next* login shows this identity (no close)."""

    ACTION: ClassVar[str] = "login_as"
    account: str
    pn: str | None = None
    lid: str | None = None
    e164: str | None = None
    auth_dir: Pairs | None = None

    def __post_init__(self) -> None:
        StepDoc.__post_init__(self)
        pairs = None if self.auth_dir is None else _pairs_error(self.auth_dir, "auth_dir")
        _raise(_identity_error(self.pn, self.lid, self.e164), pairs)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthDirStep(StepDoc):
    """Replace the account's auth-dir mapping pairs (Baileys wrote mapping files)."""

    ACTION: ClassVar[str] = "auth_dir"
    account: str
    pairs: Pairs

    def __post_init__(self) -> None:
        StepDoc.__post_init__(self)
        _raise(_pairs_error(self.pairs, "pairs"))


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureStep(StepDoc):
    """``ReplyCaptured`` on the current (or given) generation; ``deadline_ms`` from now."""

    ACTION: ClassVar[str] = "capture"
    reply: str
    account: str
    generation: Count | None = None
    chat: str | None = None
    kind: Kind | None = None
    message_id: str | None = None
    deadline_ms: PositiveSpan | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyStep(StepDoc):
    """``ReplyReady``."""

    ACTION: ClassVar[str] = "ready"
    reply: str
    payload: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckStep(StepDoc):
    """``HealthCheck``."""

    ACTION: ClassVar[str] = "health_check"


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnMappingStep(StepDoc):
    """``MappingLearned``."""

    ACTION: ClassVar[str] = "learn_mapping"
    pn: str
    lid: str

    def __post_init__(self) -> None:
        StepDoc.__post_init__(self)
        try:
            LidMapping.from_pairs([(self.pn, self.lid)])
        except JidError as exc:
            raise ValidationError(f"not a valid PN<->LID pair: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class LateCloseStep(StepDoc):
    """A close of an older socket reaches the engine late (``SocketClosed``, fed as is).

    ``attempt`` defaults to the generation's latest socket.
    """

    ACTION: ClassVar[str] = "late_close"
    account: str
    generation: Annotated[int, Bounds(1, None)]
    attempt: Annotated[int, Bounds(1, None)] | None = None
    status: Count | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LateAckStep(StepDoc):
    """An ack of a transmission reaches the engine late (``TransmitAcked``, fed as is).

    ``attempt`` defaults to the socket of the reply's last transmission by ``generation``.
    """

    ACTION: ClassVar[str] = "late_ack"
    reply: str
    generation: Annotated[int, Bounds(1, None)]
    attempt: Annotated[int, Bounds(1, None)] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitStep(StepDoc):
    """Continue once the controller is (not) in a state, or the reply ended."""

    ACTION: ClassVar[str] = "wait"
    account: str | None = None
    generation: Count | None = None
    state: State | None = None
    not_state: State | None = None
    reply: str | None = None

    def __post_init__(self) -> None:
        StepDoc.__post_init__(self)
        if sum(x is not None for x in (self.state, self.not_state, self.reply)) != 1:
            raise ValidationError("wait needs exactly one of state, not_state or reply", ["action"])
        if self.reply is None and self.account is None:
            raise ValidationError("missing required field for a state wait", ["account"])


STEP_TYPES: Final[tuple[type[StepDoc], ...]] = (
    StartStep,
    StopStep,
    CloseStep,
    DropStep,
    LogoutStep,
    RelinkStep,
    LoginAsStep,
    AuthDirStep,
    CaptureStep,
    ReadyStep,
    HealthCheckStep,
    LearnMappingStep,
    LateCloseStep,
    LateAckStep,
    WaitStep,
)
_COMMON: Final = frozenset(f.name for f in fields(StepDoc))
#: action -> (required keys, optional keys); ``at``/``after``/``note``/``timeout_ms`` are common.


def _keys(cls: type[StepDoc], required: bool) -> frozenset[str]:
    own = [f for f in fields(cls) if f.name not in _COMMON]
    return frozenset(f.name for f in own if (f.default is dataclasses.MISSING) == required)


ACTIONS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    cls.ACTION: (_keys(cls, True), _keys(cls, False)) for cls in STEP_TYPES
}


@dataclass(frozen=True, slots=True)
class ExpectDoc:
    """How a captured reply must end."""

    outcome: Outcome
    via: Via | None = None
    generation: Annotated[int, Bounds(1, None)] | None = None
    reason: str | None = None
    received_by: str | None = None
    transmissions: Count | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyDoc:
    """Latencies of one controller generation, instead of the file's ``boot_ms``/``connect_ms``."""

    account: str
    generation: Annotated[int, Bounds(1, None)]
    boot_ms: Span | None = None
    connect_ms: Span | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioDoc:
    """A scenario file (docs/scenarios.md)."""

    name: str | None = None
    description: str = ""
    seed: int = 0
    clock_base: Time | None = None
    boot_ms: Span = 0
    connect_ms: Span = 5
    ack_ms: Span = 5
    speed: float = DEFAULT_SPEED
    timeout_ms: PositiveSpan = DEFAULT_TIMEOUT_MS
    mapping: Pairs = ()
    engine: EngineConfig = field(default_factory=EngineConfig)
    accounts: tuple[AccountDoc, ...]
    latency: tuple[LatencyDoc, ...] = ()
    steps: tuple[StepDoc, ...]
    expect: dict[str, ExpectDoc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = speed_problem(self.speed)
        if problem is not None:
            raise ValidationError(problem, ["speed"])
        _raise(_pairs_error(self.mapping, "mapping"))
        if not self.accounts:
            raise ValidationError("missing: declare at least one [[accounts]]", ["accounts"])
        if not self.steps:
            raise ValidationError("missing: declare at least one [[steps]]", ["steps"])


_STEP: Final = Tagged(
    "action",
    [Record.of(c, hooks={ClockTime: _CLOCK_TIME}, tag=("action", c.ACTION)) for c in STEP_TYPES],
    "action",
)
#: The shape of a scenario file: one mechanism reads it, and :func:`scenario_schema` tells it.
SCENARIO: Final = Record.of(
    ScenarioDoc, hooks={ClockTime: _CLOCK_TIME, EngineConfig: CONFIG, StepDoc: _STEP}
)


def scenario_schema() -> dict[str, object]:
    """The JSON Schema of a scenario file (its TOML, read as JSON)."""
    return SCENARIO.schema()


def clock_text(ms: int) -> str:
    """ms since midnight as "HH:MM:SS.mmm"."""
    h, rest = divmod(ms // 1000, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms % 1000:03d}"
