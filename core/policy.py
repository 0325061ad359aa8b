"""What a socket close means: the per-status close policy.

A close's status code (Baileys' ``DisconnectReason``, the watchdog's 499, or
none at all) is mapped to a :class:`CloseDecision`: retry with backoff,
reconnect at once, or one of the terminal outcomes. The table is plain data so
a deployment can override single codes (:meth:`StatusPolicy.with_overrides`);
the reasoning behind each default is in ``docs/lifecycle.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType

from heirline.core.errors import ConfigError


class Status(IntEnum):
    """The close codes heirline knows by name: Baileys' ``DisconnectReason`` and the watchdog's.

    A close may carry any other integer too (it falls to :attr:`StatusPolicy.unknown`);
    the names are for code that means one of these. Wire values are the plain numbers.
    """

    LOGGED_OUT = 401
    """Baileys ``loggedOut``: the credentials are no longer valid."""
    FORBIDDEN = 403
    """Baileys ``forbidden``: the account is barred."""
    CONNECTION_LOST = 408
    """Baileys ``connectionLost`` (also ``timedOut``): the link dropped."""
    MULTIDEVICE_MISMATCH = 411
    """Baileys ``multideviceMismatch``: relink required."""
    CONNECTION_CLOSED = 428
    """Baileys ``connectionClosed``: also what a send on a closed socket fails with."""
    CONNECTION_REPLACED = 440
    """Baileys ``connectionReplaced``: another client took the session."""
    WATCHDOG = 499
    """heirline's (and openclaw's) watchdog close: the socket went silent."""
    BAD_SESSION = 500
    """Baileys ``badSession``: bad session or stream error."""
    UNAVAILABLE_SERVICE = 503
    """Baileys ``unavailableService``."""
    RESTART_REQUIRED = 515
    """Baileys ``restartRequired``: reconnect at once (after pairing, for instance)."""


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
    _table: dict[int | None, CloseDecision] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for status in self.by_status:
            if isinstance(status, bool) or not isinstance(status, int):
                raise ConfigError(f"StatusPolicy.by_status: key {status!r} is not an int status")
        table: dict[int | None, CloseDecision] = {int(k): v for k, v in self.by_status.items()}
        object.__setattr__(self, "by_status", MappingProxyType(dict(self.by_status)))
        table[None] = self.no_status
        object.__setattr__(self, "_table", table)

    def decide(self, status: int | None) -> CloseDecision:
        """The decision for a close with ``status`` (``None``: the close gave no status)."""
        return self._table.get(status, self.unknown)

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
        Status.LOGGED_OUT: CloseDecision(CloseAction.LOGGED_OUT, "logged out"),
        Status.FORBIDDEN: CloseDecision(CloseAction.FORBIDDEN, "forbidden"),
        Status.CONNECTION_LOST: CloseDecision(_RETRY, "connection lost"),
        Status.MULTIDEVICE_MISMATCH: CloseDecision(
            CloseAction.LOGGED_OUT, "multi-device mismatch: relink required"
        ),
        Status.CONNECTION_CLOSED: CloseDecision(_RETRY, "connection closed"),
        Status.CONNECTION_REPLACED: CloseDecision(
            CloseAction.REPLACED, "connection replaced by another client"
        ),
        Status.WATCHDOG: CloseDecision(_RETRY, "closed by the watchdog"),
        Status.BAD_SESSION: CloseDecision(_RETRY, "bad session or stream error"),
        Status.UNAVAILABLE_SERVICE: CloseDecision(_RETRY, "service unavailable"),
        Status.RESTART_REQUIRED: CloseDecision(CloseAction.RECONNECT, "restart required"),
    },
    no_status=CloseDecision(_RETRY, "closed without a status"),
    unknown=CloseDecision(_RETRY, "unknown status"),
)
"""The defaults: terminal for 401, 403, 411 and 440; reconnect at once for 515; retry otherwise."""
