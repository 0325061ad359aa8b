"""What a scenario is made of: timed steps over a gateway, and the channel it drives.

A scenario is written once as a generator (:data:`Script`) that acts on a
gateway (:class:`~heirline.adapters.gateway.GatewayBase`) and on a channel
(:class:`ChannelControl`), yielding :class:`At` / :class:`Until` waits; the fake
runtime runs it on virtual time, the asyncio runtime on real time, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from heirline.adapters.ledger import Identity, Ledger
from heirline.core.policy import Status

__all__ = ["STATUS_LOGGED_OUT", "At", "ChannelControl", "Script", "ScriptTimeout", "Until"]

#: Close status of a login refused (unknown or logged-out account), and of a logout.
STATUS_LOGGED_OUT = Status.LOGGED_OUT


@dataclass(frozen=True, slots=True)
class At:
    """Script step: continue at engine time ``ms`` (no-op if already past); ``what`` comes then."""

    ms: int
    what: str = ""


@dataclass(frozen=True, slots=True)
class Until:
    """Script step: continue once ``predicate()`` holds; fail after ``timeout_ms`` engine ms."""

    predicate: Callable[[], bool]
    timeout_ms: int
    what: str


#: A scenario: a generator that acts on a gateway and its channel, yielding waits.
Script = Iterator[At | Until]


class ScriptTimeout(Exception):
    """An :class:`Until` step did not hold in time."""


@runtime_checkable
class ChannelControl(Protocol):
    """The control surface a scenario drives (the reference server and the fake share it)."""

    @property
    def ledger(self) -> Ledger: ...

    def add_account(
        self, account: str, pn: str | None = None, lid: str | None = None, e164: str | None = None
    ) -> Identity: ...

    def close_account(self, account: str, status: int | None) -> int: ...

    def half_open(self, account: str) -> int: ...

    def logout(self, account: str, status: int | None = STATUS_LOGGED_OUT) -> int: ...

    def relink(
        self,
        account: str,
        pn: str | None,
        lid: str | None,
        e164: str | None,
        status: int | None = STATUS_LOGGED_OUT,
    ) -> int: ...
