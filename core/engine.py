"""The engine facade: ``Engine.handle(event, now) -> list[Effect]``.

The engine orchestrates: it dispatches each fact to its handler, keeps the
accounts and their controller generations (:mod:`heirline.core.accounts`),
runs the health policy over the accounts that may need attention, resolves
identities through the PN<->LID mapping, and calls into the reply book
(:mod:`heirline.core.book`), which owns the delivery policy. It never does
I/O, never reads a clock (``now`` is an argument, integer milliseconds) and
draws randomness only from the ``random`` callable its owner passes in.

Bad input (an unknown controller, socket or reply, an input a machine does not
accept in its state, a malformed identity, a contradictory mapping, time going
backwards) yields one ``Rejected`` effect with a stable snake_case code; every
handler validates before it mutates, so the engine's state -- clocks and
counters included -- is exactly as it was. Facts that arrive late (about an
older socket, a forgotten generation, a reply that already ended) change
nothing and say so in a ``Log`` (at debug level).

Every step costs O(1) in the number of accounts, except what the step is about:
a health sweep looks at the accounts that may need attention, a new mapping pair
at the identities it can complete.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar, cast

from heirline.core.accounts import Accounts
from heirline.core.book import ReplyBook
from heirline.core.config import MAX_SAFE_INT, EngineConfig
from heirline.core.controller import Controller
from heirline.core.delivery import ReplyState
from heirline.core.effects import (
    Effect,
    Rejected,
)
from heirline.core.errors import (
    ConfigError,
    HeirlineError,
    JidError,
    MappingConflictError,
    Rejection,
)
from heirline.core.events import (
    Activity,
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
from heirline.core.health import HealthMonitor
from heirline.core.identity import (
    KeyIndex,
    Keys,
    LidMapping,
    MappingTable,
    SelfIdentity,
    resolve,
)
from heirline.core.journal import AccountRecord, Changes, JournalError, Snapshot
from heirline.core.lifecycle import State
from heirline.core.sockets import Controllers

__all__ = ["MAX_SAFE_INT", "Engine", "EngineConfig"]

E = TypeVar("E", bound=Event)
_Handler = Callable[[Event, int], list[Effect]]


class Engine(Controllers):
    """The decision engine. Owns its state; mutated only through :meth:`handle`."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        random: Callable[[], float],
        mapping: LidMapping | None = None,
    ) -> None:
        self.config = config if config is not None else EngineConfig()
        cfg = self.config
        self._random = random
        self._mapping = MappingTable(mapping if mapping is not None else LidMapping())
        self._mapping_version = 0
        self._accounts = Accounts(cfg.lifecycle, journal=cfg.journal)
        self._pairs: list[tuple[str, str]] | None = [] if cfg.journal else None
        self._incomplete: KeyIndex[Controller] = KeyIndex()
        # (pn, lid, e164) as a socket showed them -> (identity, its keys, mapping version)
        self._identities: OrderedDict[
            tuple[str | None, str | None, str | None], tuple[SelfIdentity, Keys, int]
        ] = OrderedDict()
        self._health: HealthMonitor | None = None
        self._health_armed = False
        self._now: int | None = None  # the last accepted time
        self._max_now = MAX_SAFE_INT - cfg.horizon_ms
        self._shut_down: str | None = None
        self._log_level = cfg.log_level
        self._book = ReplyBook(
            max_transmissions=cfg.max_transmissions,
            resendable_kinds=cfg.resendable_kinds,
            remember_ended=cfg.remember_ended,
            release=self._accounts.settle,
            log_level=cfg.log_level,
            journal=cfg.journal,
        )
        self._handlers: dict[type[Event], _Handler] = {}
        self._on(Start, self._on_start)
        self._on(Stop, self._on_stop)
        self._on(SocketOpened, self._on_opened)
        self._on(SocketClosed, self._on_closed)
        self._on(Activity, self._on_activity)
        self._on(WatchdogSilence, self._on_watchdog)
        self._on(TimerFired, self._on_timer)
        self._on(HealthCheck, self._on_health_check)
        self._on(MappingLearned, self._on_mapping)
        self._on(ReplyCaptured, self._on_captured)
        self._on(ReplyReady, self._on_ready)
        self._on(TransmitAcked, self._on_acked)
        self._on(TransmitFailed, self._on_failed)
        self._on(RegistryAnswer, self._on_registry_answer)
        self._on(Shutdown, self._on_shutdown)

    def _on(self, cls: type[E], handler: Callable[[E, int], list[Effect]]) -> None:
        # Dispatch is keyed by the exact class, so the handler only ever sees a `cls`.
        self._handlers[cls] = cast(_Handler, handler)

    # ------------------------------------------------------------------ facade

    def handle(self, event: Event, now: int) -> list[Effect]:
        """Apply one fact at time ``now`` (ms) and return what to do, in order.

        Never raises for bad input: a refused input is answered with one
        ``Rejected`` effect and changes nothing.
        """
        handler = self._handlers.get(type(event))
        if handler is None:
            return [Rejected("unknown_event", f"unknown event {event!r}")]
        if not 0 <= now <= self._max_now:
            return [self._bad_now(now)]
        last = self._now
        if last is not None and now < last:
            return [Rejected("now_backwards", f"now {now} is before the previous now {last}")]
        if self._shut_down is not None:
            return [Rejected("shut_down", f"the engine was shut down ({self._shut_down})")]
        first = self._health is None
        if first:  # the health policy's clock starts with the first accepted event
            self._health = HealthMonitor(self.config.health, now)
        try:
            effects = handler(event, now)
        except HeirlineError as err:
            if first:
                self._health = None
            return [Rejected(err.code, str(err))]
        self._now = now
        return effects

    def _bad_now(self, now: int) -> Rejected:
        horizon = self.config.horizon_ms
        return Rejected(
            "bad_now",
            f"now {now} is outside 0..{self._max_now} (2**53-1 minus the "
            f"longest deadline the engine sets, {horizon} ms)",
        )

    # ------------------------------------------------------------------ queries

    @property
    def mapping(self) -> LidMapping:
        """The PN<->LID mapping the guard resolves identities through (a snapshot)."""
        return self._mapping.snapshot()

    def current(self, account: str) -> int | None:
        """The registered generation of ``account``."""
        acct = self._accounts.get(account)
        return None if acct is None else acct.current

    def generations(self, account: str) -> tuple[int, ...]:
        """The generations of ``account`` the engine still keeps, oldest first."""
        return self._accounts.generations(account)

    def controller_state(self, account: str, generation: int) -> State | None:
        """The lifecycle state of a generation, or ``None`` if unknown or forgotten."""
        ctl = self._accounts.find(account, generation)
        return None if ctl is None else ctl.state

    def controller_identity(self, account: str, generation: int) -> SelfIdentity | None:
        """The self identity the generation's current socket reported."""
        ctl = self._accounts.find(account, generation)
        return None if ctl is None else ctl.identity

    def controller_socket(self, account: str, generation: int) -> int | None:
        """The attempt number of the generation's latest socket, or ``None``."""
        ctl = self._accounts.find(account, generation)
        return None if ctl is None else ctl.socket

    def reply_state(self, reply_id: str) -> ReplyState | None:
        """The delivery state of a reply (terminal states stay visible while remembered)."""
        reply = self._book.get(reply_id)
        if reply is not None:
            return reply.state
        ended = self._book.ended(reply_id)
        return None if ended is None else ended.state

    def in_flight(self) -> dict[str, int]:
        """Reply id -> generation, for every reply with a transmission awaiting its ack."""
        return self._book.in_flight()

    def open_replies(self) -> tuple[str, ...]:
        """Ids of replies that have not ended yet."""
        return self._book.open_ids()

    def watched(self) -> tuple[str, ...]:
        """Accounts the health policy keeps running, sorted."""
        return tuple(sorted(a.name for a in self._accounts if a.watched))

    @property
    def shut_down(self) -> bool:
        """Whether the engine was shut down (it then rejects every input)."""
        return self._shut_down is not None

    # ----------------------------------------------------------------- journal

    def take_changes(self) -> Changes:
        """What changed in the durable state since the last call (``EngineConfig.journal``).

        An adapter writes it durably after ``handle`` returns and before it
        carries out the effects, so whatever the world may have seen is on disk.
        """
        accounts = self._accounts.changed
        if accounts is None or self._pairs is None:
            raise ConfigError("take_changes needs EngineConfig(journal=True)")
        counters = tuple(AccountRecord(a.name, a.issued, a.last_attempt) for a in accounts.values())
        accounts.clear()
        replies, ended = self._book.take()
        pairs = tuple(self._pairs)
        self._pairs.clear()
        return Changes(self._now, counters, replies, ended, pairs)

    def restore(self, snapshot: Snapshot) -> list[Effect]:
        """Carry on from a journal: counters, open replies, ended replies, mapping, clock.

        Every socket of the process that wrote it is gone: the accounts come
        back with no live generation (the owner starts them again, with newer
        generations), a reply that was in flight waits to be resent with the
        same message id or ends ``unknown``, a reply waiting for a successor
        keeps waiting for a same-identity one. Returns the effects to carry out
        (each open reply's deadline timer, outcomes of replies that end now).
        An account already known to this engine is a :class:`JournalError`.
        """
        now = snapshot.now if snapshot.now is not None else 0
        if self._now is not None and now < self._now:
            raise JournalError(f"journal clock {now} is before this engine's {self._now}")
        try:
            for pn, lid in snapshot.mapping:
                if self._mapping.add(pn, lid) is not None:
                    self._mapping_version += 1
            for rec in snapshot.accounts:
                self._accounts.restore(rec.account, rec.generation, rec.attempt, now)
            for ended in snapshot.ended:
                self._book.remember(ended)
            out: list[Effect] = []
            for reply in snapshot.replies:
                acct = self._accounts.get(reply.account)
                if acct is None or not 1 <= reply.origin <= acct.issued:
                    raise JournalError(
                        f"reply {reply.reply_id!r}: generation {reply.origin} of "
                        f"{reply.account!r} is not in the journal's accounts"
                    )
                origin = self._accounts.find(reply.account, reply.origin)
                if origin is None:
                    origin = self._accounts.stand_in(acct, reply.origin, now)
                identity = resolve(
                    SelfIdentity.parse(pn=reply.pn, lid=reply.lid, e164=reply.e164), self._mapping
                )
                out += self._book.adopt(reply, origin, identity)
        except (Rejection, JidError, MappingConflictError, ValueError) as err:
            raise JournalError(f"journal does not fit this engine: {err}") from err
        self._now = now if self._now is None else max(self._now, now)
        return out

    def release(self, account: str, reason: str = "handed over") -> list[Effect]:
        """Give ``account`` up (another owner adopts it): stop it, hand its replies over.

        Its controllers stop (sockets close) and it leaves health watch; its open
        replies leave this engine without an outcome -- the owner that adopts the
        account's journal ends them. Counters stay, so fencing tokens keep growing.
        """
        acct = self._accounts.get(account)
        if acct is None:
            return []
        out = self._book.release(account)
        for ctl in [c for c in self._accounts.controllers() if c.account == account]:
            if not ctl.is_terminal:
                out += self._stop_ctl(ctl, reason, self._now or 0)
        acct.watched = False
        if self._health is not None:
            self._health.forget(account)
        self._accounts.place(acct)
        self._accounts.drop_older(account)
        return out
