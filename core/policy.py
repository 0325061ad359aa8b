"""What a socket close means: the per-status close policy.

A close's status code (Baileys' ``DisconnectReason``, the watchdog's 499, or
none at all) is mapped to a :class:`CloseDecision`: retry with backoff,
reconnect at once, or one of the terminal outcomes. The table is plain data so
a deployment can override single codes (:meth:`StatusPolicy.with_overrides`);
the reasoning behind each default is in ``docs/lifecycle.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from heirline.core.errors import ConfigError


class CloseAction(StrEnum):
    """What the controller does after a close."""

    RETRY = "retry"
    """Reconnect after a backoff delay; spends one retry attempt."""
    RECONNECT = "reconnect"
    """Reconnect at once without spending an attempt (515 restartRequired)."""
    LOGGED_OUT = "logged_out"
    """Terminal: the credentials are no longer valid; a human must relink."""
    REPLACED = "replaced"
    """Terminal: another client took over the session (440); never auto-reconnect."""
    FORBIDDEN = "forbidden"
    """Terminal: the account is barred from connecting (403)."""


@dataclass(frozen=True, slots=True)
class CloseDecision:
    """A close's action plus a short human reason (``"connection lost"``)."""

    action: CloseAction
    reason: str


@dataclass(frozen=True, slots=True)
class StatusPolicy:
    """Status code -> decision, with fallbacks for a close without status and unknown codes.

    ``by_status`` is copied into a read-only mapping at construction, so later
    changes to the caller's dict cannot alter a policy in use.
    """

    by_status: Mapping[int, CloseDecision]
    no_status: CloseDecision
    unknown: CloseDecision

    def __post_init__(self) -> None:
        for status in self.by_status:
            if isinstance(status, bool) or not isinstance(status, int):
                raise ConfigError(f"StatusPolicy.by_status: key {status!r} is not an int status")
        object.__setattr__(self, "by_status", MappingProxyType(dict(self.by_status)))

    def decide(self, status: int | None) -> CloseDecision:
        """The decision for a close with ``status`` (``None``: the close gave no status)."""
        if status is None:
            return self.no_status
        return self.by_status.get(status, self.unknown)

    def with_overrides(self, overrides: Mapping[int, CloseDecision]) -> StatusPolicy:
        """A copy of this policy where ``overrides`` replace (or add) single codes."""
        return StatusPolicy(
            by_status={**self.by_status, **overrides},
            no_status=self.no_status,
            unknown=self.unknown,
        )


_RETRY = CloseAction.RETRY

DEFAULT_STATUS_POLICY = StatusPolicy(
    by_status={
        401: CloseDecision(CloseAction.LOGGED_OUT, "logged out"),
        403: CloseDecision(CloseAction.FORBIDDEN, "forbidden"),
        408: CloseDecision(_RETRY, "connection lost"),
        411: CloseDecision(CloseAction.LOGGED_OUT, "multi-device mismatch: relink required"),
        428: CloseDecision(_RETRY, "connection closed"),
        440: CloseDecision(CloseAction.REPLACED, "connection replaced by another client"),
        499: CloseDecision(_RETRY, "closed by the watchdog"),
        500: CloseDecision(_RETRY, "bad session or stream error"),
        503: CloseDecision(_RETRY, "service unavailable"),
        515: CloseDecision(CloseAction.RECONNECT, "restart required"),
    },
    no_status=CloseDecision(_RETRY, "closed without a status"),
    unknown=CloseDecision(_RETRY, "unknown status"),
)
"""The defaults: terminal for 401, 403, 411 and 440; reconnect at once for 515; retry otherwise."""
