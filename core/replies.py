"""The reply side of the engine: capture, routing, transmissions and their outcomes.

:class:`Replies` holds the handlers of the facts about replies and the routing
step every socket consumer goes through (``_route``: the decision of
:mod:`heirline.core.routing`, carried out by the reply book). It is the base of
:class:`~heirline.core.sockets.Controllers`, which is the base of
:class:`~heirline.core.engine.Engine`: one object, its handlers in three short
modules. The state it reads is declared here and created by ``Engine``.
"""

from __future__ import annotations

from collections.abc import Callable

from heirline.core.accounts import Accounts
from heirline.core.book import ReplyBook
from heirline.core.config import MAX_SAFE_INT, EngineConfig
from heirline.core.controller import Controller
from heirline.core.delivery import Reply, ReplyState
from heirline.core.effects import (
    Effect,
    Log,
    LogLevel,
)
from heirline.core.errors import (
    Rejection,
)
from heirline.core.events import (
    ReplyCaptured,
    ReplyReady,
    TransmitAcked,
    TransmitFailed,
)
from heirline.core.identity import (
    UNAUTHENTICATED,
    MappingTable,
    resolve,
)
from heirline.core.lifecycle import State
from heirline.core.routing import RouteKind, decide_route

# Enum members the hot paths read, as module constants (class attribute access is slow on 3.11).
_REPLYSTATE_WAITING = ReplyState.WAITING
_ROUTEKIND_ORIGIN = RouteKind.ORIGIN
_ROUTEKIND_SUCCESSOR = RouteKind.SUCCESSOR
_STATE_OPEN = State.OPEN


class Replies:
    """The engine's handlers of reply facts (see the module docstring)."""

    config: EngineConfig
    _accounts: Accounts
    _book: ReplyBook
    _mapping: MappingTable
    _log_level: LogLevel

    # ------------------------------------------------------------- logging

    def _log(
        self,
        level: LogLevel,
        code: str,
        message: Callable[[], str] | str,
        account: str | None,
        generation: int | None,
    ) -> list[Effect]:
        """One log record if ``level`` is built at all (``message`` may be a deferred string)."""
        if level < self._log_level:
            return []
        text = message if isinstance(message, str) else message()
        return [Log(level.label, code, text, account, generation)]

    def _lose_in_flight(self, ctl: Controller, attempt: int, why: str, now: int) -> list[Effect]:
        if not self._book.has_in_flight(ctl.account, attempt):
            return []
        out: list[Effect] = []
        for reply in self._book.through(ctl.account, attempt):
            out += self._lost(reply, True, why, now)
        return out

    # ----------------------------------------------------------------- replies

    def _on_captured(self, ev: ReplyCaptured, now: int) -> list[Effect]:
        message_id = ev.message_id if ev.message_id is not None else ev.reply_id
        self._book.check_new(ev.reply_id, ev.kind, message_id)
        ctl = self._accounts.lookup(ev.account, ev.generation)
        if ctl is None:
            raise Rejection(
                "generation_forgotten",
                f"generation {ev.generation} of {ev.account!r} is over and forgotten; "
                "capture replies with a live generation",
            )
        deadline = (
            ev.deadline_ms if ev.deadline_ms is not None else now + self.config.reply_deadline_ms
        )
        if not now < deadline <= MAX_SAFE_INT:
            raise Rejection(
                "bad_deadline", f"deadline {deadline} is not in ({now}, {MAX_SAFE_INT}]"
            )
        identity = resolve(ctl.last_identity or UNAUTHENTICATED, self._mapping)
        out = self._book.capture(ev.reply_id, ctl, ev.chat, ev.kind, message_id, identity, deadline)
        if ctl.state is _STATE_OPEN:  # an inbound message was handled: the socket is busy
            ctl.activity(now)
            self._accounts.touch(ctl, now)
        return out

    def _on_ready(self, ev: ReplyReady, now: int) -> list[Effect]:
        reply = self._book.ready(ev.reply_id, ev.payload)
        return self._route(reply, now)

    def _route(self, reply: Reply, now: int) -> list[Effect]:
        acct = self._accounts.get(reply.account)
        assert acct is not None
        current_gen = acct.current
        latest = acct.latest
        current = (
            latest
            if current_gen == latest.generation
            else None
            if current_gen is None
            else self._accounts.find(reply.account, current_gen)
        )
        route, generation = decide_route(reply.keys, reply.origin, current)
        kind = route.kind
        via = (
            reply.origin
            if kind is _ROUTEKIND_ORIGIN
            else current
            if kind is _ROUTEKIND_SUCCESSOR
            else None
        )
        if via is not None:
            self._accounts.touch(via, now)  # a transmission is activity
        return self._book.apply(reply, route, generation, via)

    def _wake(self, account: str, now: int) -> list[Effect]:
        if not self._book.has_waiting(account):
            return []
        out: list[Effect] = []
        for reply in self._book.waiting(account):
            if reply.state is _REPLYSTATE_WAITING:
                out += self._route(reply, now)
        return out

    def _lost(self, reply: Reply, io_started: bool, why: str, now: int) -> list[Effect]:
        ended = self._book.lost(reply, io_started, why)
        return self._route(reply, now) if ended is None else ended

    def _on_acked(self, ev: TransmitAcked, now: int) -> list[Effect]:
        reply = self._book.get(ev.reply_id)
        out = self._book.acked(ev.reply_id, ev.generation, ev.attempt)
        ctl = None if reply is None else self._accounts.find(reply.account, ev.generation)
        if ctl is not None and ctl.socket == ev.attempt and ctl.state is _STATE_OPEN:
            ctl.activity(now)  # the channel answered through this socket
            self._accounts.touch(ctl, now)
        return out

    def _on_failed(self, ev: TransmitFailed, now: int) -> list[Effect]:
        lost = self._book.failed(ev.reply_id, ev.generation, ev.attempt, ev.io_started, ev.error)
        if isinstance(lost, list):
            return lost
        return self._lost(lost, ev.io_started, ev.error or "transmission failed", now)
