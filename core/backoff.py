"""Retry delays: exponential backoff with additive jitter, capped, from a caller's random draw.

``delay(k) = min(max_ms, round(initial_ms * factor**(k-1) * (1 + jitter * u)))``
for the 1-based retry ``k`` and a number ``u`` in ``[0, 1)`` the caller drew
from its own (seedable) random source. The core never draws randomness itself,
so the same ``u`` sequence always gives the same schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from heirline.core.errors import ConfigError


def _int_field(name: str, value: object, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"BackoffConfig.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"BackoffConfig.{name} must be >= {minimum}, got {value!r}")


def _float_field(name: str, value: object, low: float, high: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"BackoffConfig.{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"BackoffConfig.{name} must be in [{low}, {high}], got {value!r}")


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """How retries are spaced and how many are allowed; validated at construction.

    ``jitter`` is additive: a delay is its base plus ``0 .. jitter`` of the base.
    ``max_attempts`` is the exact number of retries (0: never retry).
    ``healthy_after_ms``: a connection open longer than this resets the count.
    """

    initial_ms: int = 2000
    factor: float = 1.8
    max_ms: int = 30000
    jitter: float = 0.25
    max_attempts: int = 12
    healthy_after_ms: int = 60000
    #: The base delay of each retry 1..max_attempts (capped), computed once.
    bases: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _int_field("initial_ms", self.initial_ms, 1)
        _float_field("factor", self.factor, 1.0, 1000.0)
        _int_field("max_ms", self.max_ms, 1)
        if self.max_ms < self.initial_ms:
            raise ConfigError(
                f"BackoffConfig.max_ms must be >= initial_ms ({self.initial_ms}), "
                f"got {self.max_ms!r}"
            )
        _float_field("jitter", self.jitter, 0.0, 1.0)
        _int_field("max_attempts", self.max_attempts, 0)
        _int_field("healthy_after_ms", self.healthy_after_ms, 0)
        bases = tuple(_base(self, k) for k in range(1, min(self.max_attempts, 64) + 1))
        object.__setattr__(self, "bases", bases)


def _base(config: BackoffConfig, attempt: int) -> float:
    """``initial_ms * factor**(attempt-1)``, or ``max_ms`` once it would exceed the cap."""
    try:
        base = config.initial_ms * config.factor ** (attempt - 1)
    except OverflowError:
        return float(config.max_ms)
    return min(base, float(config.max_ms))


def retry_delay_ms(config: BackoffConfig, attempt: int, u: float) -> int:
    """The delay before 1-based retry ``attempt``, for a random draw ``u`` in ``[0, 1)``.

    Deterministic: the same arguments always give the same delay. Bounds: at
    least the base ``initial_ms * factor**(attempt-1)``, at most
    ``base * (1 + jitter)``, never above ``max_ms``.
    """
    if attempt < 1:
        raise ConfigError(f"retry_delay_ms: attempt is 1-based, got {attempt!r}")
    if not 0.0 <= u < 1.0:
        raise ConfigError(f"retry_delay_ms: u must be in [0, 1), got {u!r}")
    cap = config.max_ms
    bases = config.bases
    base = bases[attempt - 1] if attempt <= len(bases) else _base(config, attempt)
    if base >= cap:
        return cap
    delay = round(base * (1.0 + config.jitter * u))
    return cap if delay > cap else delay
