"""One health sweep: the policy applied to the accounts that may need attention.

The sweep asks :meth:`Accounts.due <heirline.core.accounts.Accounts.due>` for
the watched accounts whose newest generation is not open, and the open ones
quiet for longer than the stale threshold, in name order; every other watched
account is healthy by construction and is not looked at. For each, the policy
(:class:`~heirline.core.health.HealthMonitor`) decides: healthy (nothing),
hold (say why), or restart (record it, start a new generation).
"""

from __future__ import annotations

from collections.abc import Callable

from heirline.core.accounts import Accounts
from heirline.core.controller import Controller
from heirline.core.effects import Effect, Log, LogLevel
from heirline.core.health import ControllerSnapshot, HealthAction, HealthMonitor
from heirline.core.lifecycle import State

#: Starts a new generation of an account at a time: the engine's own ``Start``.
Restart = Callable[[str, int], list[Effect]]

# Enum members the hot paths read, as module constants (class attribute access is slow on 3.11).
_HEALTHACTION_HEALTHY = HealthAction.HEALTHY
_HEALTHACTION_HOLD = HealthAction.HOLD
_LOGLEVEL_INFO = LogLevel.INFO
_LOGLEVEL_WARNING = LogLevel.WARNING
_STATE_CLOSING = State.CLOSING
_STATE_CONNECTING = State.CONNECTING


def snapshot(ctl: Controller) -> ControllerSnapshot:
    """What the health policy sees of one controller generation."""
    state = ctl.state
    return ControllerSnapshot(
        account=ctl.account,
        generation=ctl.generation,
        state=state,
        started_at_ms=ctl.started_at_ms if ctl.started_at_ms is not None else ctl.event_ms,
        last_event_ms=ctl.event_ms,
        opened_at_ms=ctl.opened_at_ms,
        retry_at_ms=ctl.retry_at_ms,
        retries=ctl.retries,
        connecting_since_ms=ctl.last_change_ms if state is _STATE_CONNECTING else None,
        closing_since_ms=ctl.last_change_ms if state is _STATE_CLOSING else None,
        max_attempts=ctl.config.backoff.max_attempts,
    )


def sweep(
    accounts: Accounts, health: HealthMonitor, now: int, log_level: LogLevel, restart: Restart
) -> list[Effect]:
    """Apply the health policy at ``now``; the effects of every hold and restart, in order."""
    out: list[Effect] = []
    for acct in accounts.due(now, health.config.stale_after_ms):
        decision = health.evaluate(snapshot(acct.latest), now)
        action = decision.action
        if action is _HEALTHACTION_HEALTHY:
            continue
        account = acct.name
        reason = decision.reason.value if decision.reason is not None else None
        fields: dict[str, str | int | float | bool | None] = {
            "action": action.value,
            "reason": reason,
        }
        if action is _HEALTHACTION_HOLD:
            if log_level <= _LOGLEVEL_INFO:
                message = f"health-monitor: holding ({decision.detail})"
                out.append(
                    Log("info", "health_hold", message, account, decision.generation, fields)
                )
            continue
        if log_level <= _LOGLEVEL_WARNING:
            message = f"health-monitor: restarting (reason: {reason or 'unknown'})"
            out.append(
                Log("warning", "health_restart", message, account, decision.generation, fields)
            )
        health.record_restart(account, now)
        out += restart(account, now)
    return out
