"""heirline.core: the pure decision engine (no I/O, no clocks, no global state).

Time comes in as integer milliseconds, randomness as numbers the caller draws,
and everything observable leaves as an effect::

    import random
    from heirline.core import Engine, Start

    engine = Engine(random=random.Random(7).random)
    effects = engine.handle(Start(account="acct"), now=0)

The names below are the public API (``docs/core.md`` lists them by module);
everything else is internal and may change. The core imports only the
standard library.
"""

from heirline.core.backoff import BackoffConfig
from heirline.core.config import MAX_SAFE_INT, EngineConfig
from heirline.core.delivery import ReplyState
from heirline.core.effects import (
    EFFECT_TYPES,
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogLevel,
    OpenSocket,
    Registered,
    RegisterRequest,
    Rejected,
    ReplyDelivered,
    ReplyFailed,
    StartTimer,
    Transmit,
    Unregistered,
)
from heirline.core.engine import Engine
from heirline.core.errors import (
    ConfigError,
    HeirlineError,
    InvalidTransition,
    JidError,
    MappingConflictError,
    Rejection,
    WireError,
)
from heirline.core.events import (
    EVENT_TYPES,
    Activity,
    ActivityKind,
    Event,
    HealthCheck,
    MappingLearned,
    RegistryAnswer,
    ReplyCaptured,
    ReplyReady,
    Shutdown,
    SocketClosed,
    SocketOpened,
    Start,
    Stop,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
    WatchdogSilence,
)
from heirline.core.health import HealthConfig
from heirline.core.identity import LidMapping, SelfIdentity, Verdict, VerdictKind, compare
from heirline.core.lifecycle import LifecycleConfig, State
from heirline.core.policy import CloseAction, CloseDecision, Status, StatusPolicy
from heirline.core.timers import DeadlineTimer, HealthTimer, RetryTimer, Timer, WatchdogTimer

__version__ = "0.2.0"
"""heirline's version: the one place it is written (pyproject.toml reads it from here)."""

__all__ = [
    "EFFECT_TYPES",
    "EVENT_TYPES",
    "MAX_SAFE_INT",
    "Activity",
    "ActivityKind",
    "BackoffConfig",
    "CancelTimer",
    "CloseAction",
    "CloseDecision",
    "CloseSocket",
    "ConfigError",
    "DeadlineTimer",
    "Effect",
    "Engine",
    "EngineConfig",
    "Event",
    "HealthCheck",
    "HealthConfig",
    "HealthTimer",
    "HeirlineError",
    "InvalidTransition",
    "JidError",
    "LidMapping",
    "LifecycleConfig",
    "Log",
    "LogLevel",
    "MappingConflictError",
    "MappingLearned",
    "OpenSocket",
    "RegisterRequest",
    "Registered",
    "RegistryAnswer",
    "Rejected",
    "Rejection",
    "ReplyCaptured",
    "ReplyDelivered",
    "ReplyFailed",
    "ReplyReady",
    "ReplyState",
    "RetryTimer",
    "SelfIdentity",
    "Shutdown",
    "SocketClosed",
    "SocketOpened",
    "Start",
    "StartTimer",
    "State",
    "Status",
    "StatusPolicy",
    "Stop",
    "Timer",
    "TimerFired",
    "Transmit",
    "TransmitAcked",
    "TransmitFailed",
    "Unregistered",
    "Verdict",
    "VerdictKind",
    "WatchdogSilence",
    "WatchdogTimer",
    "WireError",
    "__version__",
    "compare",
]
