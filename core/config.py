"""The engine's configuration: every knob in one validated, immutable record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Final

from heirline.core import delivery
from heirline.core.effects import LogLevel
from heirline.core.errors import ConfigError
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import LifecycleConfig

#: The largest integer every binding holds exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INT: Final = 2**53 - 1


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything tunable about the engine; validated on construction.

    ``log_level`` applies to every log record, the controllers' included
    (``lifecycle.log_level`` is set to it).
    """

    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    #: How long a captured reply may take to end, from capture (the peers give up after 2-4 min).
    reply_deadline_ms: int = 300_000
    #: Transmissions of one reply before giving up (each a resend with the same message id).
    max_transmissions: int = 5
    #: Kinds that may be resent with the same message id after I/O may have started.
    resendable_kinds: frozenset[str] = delivery.KINDS
    #: Ended reply ids remembered to tell a late ack from a bogus one.
    remember_ended: int = 10_000
    #: Whether the engine arms its own periodic health-check timer.
    health_timer: bool = True
    #: Whether registration goes through an external registry (``RegisterRequest`` effects
    #: answered by ``RegistryAnswer`` events); the default in-memory one answers at once.
    external_registry: bool = False
    #: The lowest level of log record the engine builds (``LogLevel.OFF``: none).
    log_level: LogLevel = LogLevel.DEBUG
    #: Whether the engine records what changed in its durable state for a journal
    #: (``Engine.take_changes``; see ``heirline.core.journal``).
    journal: bool = False

    def __post_init__(self) -> None:
        for name in ("reply_deadline_ms", "max_transmissions", "remember_ended"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"EngineConfig.{name} must be >= 1, got {value!r}")
        unknown = self.resendable_kinds - delivery.KINDS
        if unknown:
            raise ConfigError(
                f"EngineConfig.resendable_kinds has unknown kinds {sorted(unknown)}; "
                f"known: {sorted(delivery.KINDS)}"
            )
        if self.lifecycle.log_level != self.log_level:
            lifecycle = dataclasses.replace(self.lifecycle, log_level=self.log_level)
            object.__setattr__(self, "lifecycle", lifecycle)

    @property
    def horizon_ms(self) -> int:
        """The furthest ahead of ``now`` the engine ever sets a deadline."""
        return max(
            self.reply_deadline_ms,
            self.health.check_interval_ms,
            self.lifecycle.backoff.max_ms,
            self.lifecycle.watchdog_ms or 0,
        )
