"""The health policy: from controller snapshots and the time, decide restart or not.

Pure: time comes in as integer milliseconds, nothing is read from a clock. A
:class:`HealthMonitor` keeps only per-account restart history (for cooldown
and the restart-intensity limit), mutated in place by its owner.

What is wanted, from a snapshot (first match wins):

* account not expected to run -> HEALTHY (nothing to restart);
* ``logged_out`` / ``replaced`` / ``forbidden`` -> HOLD with that reason: a
  restart cannot fix them, and restarting on 440 is how two gateways fight;
* ``exhausted`` -> restart GAVE_UP; ``stopped`` -> restart STOPPED;
* ``open`` with no event for longer than ``stale_after_ms`` -> restart STALE;
* any other state younger than ``connect_grace_ms`` -> HEALTHY (still starting);
* ``attempt >= gave_up_attempts`` -> restart GAVE_UP;
* ``connecting`` for longer than ``connect_grace_ms`` -> restart STUCK;
* ``backoff`` / ``closing`` / ``idle`` -> restart DISCONNECTED.

A wanted restart is then held (HOLD, same reason, detail says why) by, in this
order: the monitor's start-up grace, the retry grace (DISCONNECTED only), the
per-account cooldown, the restart-intensity limit. See ``docs/health.md``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum

from heirline.core.errors import ConfigError, HeirlineError

#: Controller states the lifecycle machine reports (plain strings).
CONTROLLER_STATES: frozenset[str] = frozenset(
    {
        "idle",
        "connecting",
        "open",
        "closing",
        "backoff",
        "logged_out",
        "replaced",
        "forbidden",
        "exhausted",
        "stopped",
    }
)
_DISCONNECTED_STATES = frozenset({"backoff", "closing", "idle"})


class HealthInputError(HeirlineError, ValueError):
    """An input to the health policy is unusable.

    A snapshot with an unknown state or a negative attempt count, or a restart
    recorded before the previous one of the same account (time went backwards).
    """


class HealthReason(StrEnum):
    """Why a restart is wanted (or why a controller is held although unhealthy)."""

    DISCONNECTED = "disconnected"
    STALE = "stale-socket"
    STUCK = "stuck"
    GAVE_UP = "gave-up"
    STOPPED = "stopped"
    # Unhealthy, but never restarted: a restart cannot fix these.
    LOGGED_OUT = "logged-out"
    REPLACED = "replaced"
    FORBIDDEN = "forbidden"


class HealthAction(StrEnum):
    """What the owner should do about one controller."""

    HEALTHY = "healthy"
    RESTART = "restart"
    #: Not healthy, but no restart now (cooldown, intensity, a grace, or unfixable by restart).
    HOLD = "hold"


_NOT_RESTARTABLE: dict[str, tuple[HealthReason, str]] = {
    "logged_out": (HealthReason.LOGGED_OUT, "logged out (401): relink the account"),
    "replaced": (
        HealthReason.REPLACED,
        "replaced (440): another session holds the account; restarting would fight it",
    ),
    "forbidden": (HealthReason.FORBIDDEN, "forbidden (403): the account is barred"),
}


def _secs(ms: int) -> str:
    """Milliseconds as a short human duration: ``30s``, ``2.03s``."""
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms / 1000:.2f}s"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Thresholds of the health policy; defaults are openclaw's monitor (times in ms).

    ``retry_grace_ms``: a controller in backoff whose own retry is due within
    this window is not torn down; ``None`` turns the grace off (openclaw's
    behaviour, which reproduces the 114 ms incident). ``max_restarts=0`` makes
    the monitor report only, never restart.
    """

    check_interval_ms: int = 300_000
    startup_grace_ms: int = 60_000
    connect_grace_ms: int = 120_000
    stale_after_ms: int = 1_800_000
    cooldown_ms: int = 600_000
    max_restarts: int = 10
    window_ms: int = 3_600_000
    gave_up_attempts: int = 10
    retry_grace_ms: int | None = 30_000

    def __post_init__(self) -> None:
        minimum = {
            "check_interval_ms": 1,
            "startup_grace_ms": 0,
            "connect_grace_ms": 0,
            "stale_after_ms": 1,
            "cooldown_ms": 0,
            "max_restarts": 0,
            "window_ms": 1,
            "gave_up_attempts": 1,
            "retry_grace_ms": 0,
        }
        for f in fields(self):
            value: object = getattr(self, f.name)
            if value is None and f.name == "retry_grace_ms":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"HealthConfig.{f.name} must be an int, got {value!r}")
            if value < minimum[f.name]:
                raise ConfigError(
                    f"HealthConfig.{f.name} must be >= {minimum[f.name]}, got {value!r}"
                )


@dataclass(frozen=True, slots=True)
class ControllerSnapshot:
    """What the health policy sees of one controller generation (times in ms).

    ``last_event_ms``: last traffic or fact seen for this controller.
    ``connecting_since_ms``: when the current connect began (defaults to
    ``started_at_ms``). ``retry_at_ms``: when the controller's own retry is due
    (backoff). ``expected``: whether the owner still wants the account running.
    """

    account: str
    generation: int
    state: str
    started_at_ms: int
    last_event_ms: int
    opened_at_ms: int | None = None
    retry_at_ms: int | None = None
    attempt: int = 0
    connecting_since_ms: int | None = None
    expected: bool = True

    def __post_init__(self) -> None:
        if self.state not in CONTROLLER_STATES:
            raise HealthInputError(
                f"snapshot of {self.account!r}: unknown controller state {self.state!r}"
            )
        if self.attempt < 0:
            raise HealthInputError(f"snapshot of {self.account!r}: attempt {self.attempt} < 0")


@dataclass(frozen=True, slots=True)
class HealthDecision:
    """The policy's answer for one controller; ``detail`` is one human sentence."""

    action: HealthAction
    account: str
    generation: int
    reason: HealthReason | None
    detail: str


class HealthMonitor:
    """Pure health policy with per-account restart history, mutated in place by its owner."""

    __slots__ = ("_config", "_last", "_restarts", "_started_at_ms")

    def __init__(self, config: HealthConfig, started_at_ms: int) -> None:
        self._config = config
        self._started_at_ms = started_at_ms
        self._restarts: dict[str, deque[int]] = {}
        self._last: dict[str, int] = {}

    @property
    def config(self) -> HealthConfig:
        """The thresholds this monitor applies."""
        return self._config

    def evaluate(self, snap: ControllerSnapshot, now: int) -> HealthDecision:
        """Decide for one controller; records nothing (call :meth:`record_restart`)."""
        wanted = self._wanted(snap, now)
        if isinstance(wanted, HealthDecision):
            return wanted
        reason, why = wanted
        hold = self._held(snap, reason, now)
        if hold is not None:
            return HealthDecision(HealthAction.HOLD, snap.account, snap.generation, reason, hold)
        return HealthDecision(HealthAction.RESTART, snap.account, snap.generation, reason, why)

    def record_restart(self, account: str, now: int) -> None:
        """Count a restart attempt of ``account`` at ``now``, successful or failed."""
        last = self._last.get(account)
        if last is not None and now < last:
            raise HealthInputError(
                f"restart of {account!r} at {now} is before the last one at {last}"
            )
        self._last[account] = now
        history = self._restarts.setdefault(account, deque())
        history.append(now)
        self._prune(history, now)

    def check(self, snaps: Iterable[ControllerSnapshot], now: int) -> list[HealthDecision]:
        """Evaluate every snapshot at ``now`` (in order); records nothing."""
        return [self.evaluate(snap, now) for snap in snaps]

    def restarts_in_window(self, account: str, now: int) -> int:
        """Restarts of ``account`` counted against the intensity limit at ``now``."""
        history = self._restarts.get(account)
        if not history:
            return 0
        return sum(1 for t in history if t > now - self._config.window_ms)

    def forget(self, account: str) -> None:
        """Drop ``account``'s restart history (the owner removed the account)."""
        self._restarts.pop(account, None)
        self._last.pop(account, None)

    # --- internals -------------------------------------------------------------------

    def _prune(self, history: deque[int], now: int) -> None:
        horizon = now - self._config.window_ms
        while history and history[0] <= horizon:
            history.popleft()

    def _wanted(
        self, snap: ControllerSnapshot, now: int
    ) -> HealthDecision | tuple[HealthReason, str]:
        """Either a final decision (no restart wanted) or the reason a restart is wanted."""
        cfg = self._config

        def healthy(detail: str) -> HealthDecision:
            return HealthDecision(HealthAction.HEALTHY, snap.account, snap.generation, None, detail)

        state = snap.state
        if not snap.expected:
            return healthy("account is not expected to run; nothing to restart")
        if state in _NOT_RESTARTABLE:
            reason, detail = _NOT_RESTARTABLE[state]
            return HealthDecision(
                HealthAction.HOLD,
                snap.account,
                snap.generation,
                reason,
                f"{detail}; a restart cannot fix this, so none is made",
            )
        if state == "exhausted":
            return HealthReason.GAVE_UP, "controller exhausted its reconnect attempts"
        if state == "stopped":
            return HealthReason.STOPPED, "controller stopped while the account is expected"
        if state == "open":
            silent = now - snap.last_event_ms
            if silent > cfg.stale_after_ms:
                return (
                    HealthReason.STALE,
                    f"no event for {_secs(silent)}, over the {_secs(cfg.stale_after_ms)} limit",
                )
            return healthy(f"open, last event {_secs(silent)} ago")
        age = now - snap.started_at_ms
        if age <= cfg.connect_grace_ms:
            return healthy(
                f"{state}, started {_secs(age)} ago, within the "
                f"{_secs(cfg.connect_grace_ms)} connect grace"
            )
        if snap.attempt >= cfg.gave_up_attempts:
            return (
                HealthReason.GAVE_UP,
                f"{snap.attempt} reconnect attempts (gives up at {cfg.gave_up_attempts})",
            )
        if state == "connecting":
            since = snap.connecting_since_ms
            took = now - (snap.started_at_ms if since is None else since)
            if took > cfg.connect_grace_ms:
                return (
                    HealthReason.STUCK,
                    f"connecting for {_secs(took)}, over the "
                    f"{_secs(cfg.connect_grace_ms)} connect grace",
                )
            return healthy(f"connecting for {_secs(took)}")
        assert state in _DISCONNECTED_STATES
        return HealthReason.DISCONNECTED, f"{state} with no socket"

    def _held(self, snap: ControllerSnapshot, reason: HealthReason, now: int) -> str | None:
        """Why a wanted restart is suppressed now, or ``None`` when it may go ahead."""
        cfg = self._config
        up = now - self._started_at_ms
        if up < cfg.startup_grace_ms:
            return (
                f"monitor started {_secs(up)} ago, within the "
                f"{_secs(cfg.startup_grace_ms)} start-up grace"
            )
        grace = cfg.retry_grace_ms
        if (
            grace is not None
            and reason is HealthReason.DISCONNECTED
            and snap.state == "backoff"
            and snap.retry_at_ms is not None
        ):
            due = snap.retry_at_ms - now
            if 0 <= due <= grace:
                return f"retry due in {_secs(due)}, within the {_secs(grace)} retry grace"
            if -grace <= due < 0:
                return f"retry overdue by {_secs(-due)}, within the {_secs(grace)} retry grace"
        last = self._last.get(snap.account)
        if last is not None and now - last < cfg.cooldown_ms:
            return (
                f"last restart {_secs(now - last)} ago, within the "
                f"{_secs(cfg.cooldown_ms)} cooldown"
            )
        count = self.restarts_in_window(snap.account, now)
        if count >= cfg.max_restarts:
            return (
                f"{count} restarts in the last {_secs(cfg.window_ms)}, "
                f"at the limit of {cfg.max_restarts}"
            )
        return None
