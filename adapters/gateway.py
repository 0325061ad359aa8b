"""The effect dispatcher both runtimes share: events in, effects carried out, no decisions.

:class:`GatewayBase` feeds events to one :class:`~heirline.core.engine.Engine`
one at a time and carries out its effects in order; a runtime subclass
(:class:`~heirline.adapters.fake.FakeGateway` on virtual time,
:class:`~heirline.adapters.aio.AsyncGateway` on asyncio) supplies time, timers
and sockets. The channel's facts arrive through the
:class:`~heirline.adapters.transport.TransportCallbacks` methods and become
events. What happened is kept for the caller: a timeline of
:class:`TimelineEntry`, each reply's :class:`ReplyOutcome`, every transmission.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from heirline.adapters.authdir import AuthDir, AuthDirError, read_auth_dir
from heirline.adapters.durable import Durable
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogValue,
    OpenSocket,
    Registered,
    Rejected,
    ReplyDelivered,
    ReplyFailed,
    StartTimer,
    Transmit,
    Unregistered,
)
from heirline.core.engine import Engine, EngineConfig
from heirline.core.events import (
    Activity,
    ActivityKind,
    Event,
    MappingLearned,
    Shutdown,
    SocketClosed,
    SocketOpened,
    TransmitAcked,
    TransmitFailed,
)
from heirline.core.identity import LidMapping
from heirline.core.timers import Timer

__all__ = ["GatewayBase", "ReplyOutcome", "TimelineEntry"]


def _users(pair: tuple[str, str]) -> tuple[str, str]:
    """A PN<->LID pair by its users (a JID's device and server dropped), to count it once."""
    pn, lid = pair
    return pn.partition("@")[0].partition(":")[0], lid.partition("@")[0].partition(":")[0]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a run's timeline: an engine log record, an outcome, or a scenario note."""

    at_ms: int
    level: str
    code: str
    message: str
    account: str | None = None
    generation: int | None = None
    fields: dict[str, LogValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """How a reply ended: ``outcome`` is delivered, refused, failed or unknown."""

    reply_id: str
    outcome: str
    reason: str
    at_ms: int
    generation: int | None = None
    via: str | None = None


class GatewayBase:
    """Feeds events to one :class:`Engine` and carries out its effects (no decisions here).

    Engine access is serialized: :meth:`feed` queues the event, and only the
    outermost call drains the queue, one ``handle()`` at a time, so facts that
    arise while effects are being carried out are handled after them, in order.

    ``auth_dir`` maps an account to the PN<->LID pairs its auth dir holds; a
    controller reads it when it boots (on ``OpenSocket``, after ``boot_ms``),
    which the gateway reports as :class:`MappingLearned` events. Scenarios may
    change it between boots (Baileys writes mapping files as it learns them).
    ``auth_dirs`` (or :meth:`add_auth_dir`) names an account's Baileys auth dir:
    it is read once, at the account's first boot, and its ``lid-mapping-*`` pairs
    and the account's own PN<->LID pair (``creds.json``) join ``auth_dir``.
    Every pair is fed to the engine once, whichever account's boot finds it
    first: a reconnect, a retry or a restart storm feeds nothing again.

    Sockets are named ``(account, attempt)``: the engine's attempt number is
    unique within the account, and every channel fact echoes it.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        random: Callable[[], float],
        mapping: LidMapping | None = None,
        auth_dir: dict[str, list[tuple[str, str]]] | None = None,
        auth_dirs: Mapping[str, str | os.PathLike[str] | AuthDir] | None = None,
        boot_ms: int = 0,
    ) -> None:
        if boot_ms < 0:
            raise ValueError(f"boot_ms must be >= 0, got {boot_ms}")
        self.engine = Engine(config, random=random, mapping=mapping)
        self.auth_dir: dict[str, list[tuple[str, str]]] = dict(auth_dir or {})
        self._auth_dirs: dict[str, str | os.PathLike[str] | AuthDir] = dict(auth_dirs or {})
        #: Pairs fed to the engine (by their users): each is fed once.
        self._fed: set[tuple[str, str]] = set()
        self.boot_ms = boot_ms
        self.timeline: list[TimelineEntry] = []
        #: Called with each timeline entry as it is recorded (a CLI streams them).
        self.on_entry: Callable[[TimelineEntry], None] | None = None
        #: ``boot_ms`` of one generation, ``(account, generation) -> ms`` (else ``boot_ms``).
        self.boot_ms_of: dict[tuple[str, int], int] = {}
        #: The identity each socket opened as: (account, attempt) -> (pn, lid, e164).
        self.opened_as: dict[tuple[str, int], tuple[str | None, str | None, str | None]] = {}
        #: The latest socket each generation was given: (account, generation) -> attempt.
        self.last_attempt: dict[tuple[str, int], int] = {}
        self.outcomes: dict[str, ReplyOutcome] = {}
        self.transmissions: list[Transmit] = []
        self.rejections: list[Rejected] = []
        self.current: dict[str, int] = {}
        #: Open sockets: (account, attempt) -> generation.
        self.sockets: dict[tuple[str, int], int] = {}
        self._queue: deque[Event] = deque()
        #: The journal every step is written to before its effects are carried out (None: none).
        self.durable: Durable | None = None
        self._draining = False
        self._flight: dict[tuple[str, int, str], deque[str]] = {}

    # ------------------------------------------------------------ to override

    def now_ms(self) -> int:
        """Engine time now (ms)."""
        raise NotImplementedError

    def _start_timer(self, timer: Timer, deadline_ms: int) -> None:
        raise NotImplementedError

    def _cancel_timer(self, timer: Timer) -> None:
        raise NotImplementedError

    def _boot(self, account: str, generation: int, attempt: int) -> None:
        """Call :meth:`_booted` after ``boot_ms``."""
        raise NotImplementedError

    def _open(self, account: str, generation: int, attempt: int) -> None:
        raise NotImplementedError

    def _close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        raise NotImplementedError

    def _transmit(self, effect: Transmit) -> None:
        raise NotImplementedError

    def boot_delay(self, account: str, generation: int) -> int:
        """How long the generation's controller boots: its own ``boot_ms``, else the default."""
        return self.boot_ms_of.get((account, generation), self.boot_ms)

    def _record(self, entry: TimelineEntry) -> None:
        self.timeline.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def _changed(self) -> None:
        """Hook: the engine handled a batch of events (runtimes wake their waiters)."""

    # ------------------------------------------------------------ feeding

    def feed(self, event: Event) -> None:
        """Report one fact; it is handled after any event already being handled.

        After the engine's shutdown, facts still trickling in (sockets closing
        under it) are dropped: the engine has ended everything and answers nothing.
        """
        if not self._accepting():
            return
        self._queue.append(event)
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue and self._accepting():
                ev = self._queue.popleft()
                now = self.now_ms()
                effects = self.engine.handle(ev, now)
                if self.durable is not None:
                    self.durable.commit(self.engine)  # on disk before anything is carried out
                for effect in effects:
                    self._carry_out(effect, now)
        finally:
            self._draining = False
            if not self._accepting():  # the engine shut down: what was queued is dropped
                self._queue.clear()
        self._changed()

    def _accepting(self) -> bool:
        """Whether the engine still takes facts (a method: its answer changes while feeding)."""
        return not self.engine.shut_down

    def note(
        self, message: str, *, account: str | None = None, generation: int | None = None
    ) -> None:
        """Add a scenario or channel note to the timeline (not an engine decision)."""
        self._record(TimelineEntry(self.now_ms(), "note", "note", message, account, generation))

    def current_socket(self, account: str) -> tuple[int, int] | None:
        """``(generation, attempt)`` of the account's open socket, newest first; ``None``."""
        open_ = [(g, a) for (acct, a), g in self.sockets.items() if acct == account]
        return max(open_) if open_ else None

    def inbound(self, account: str) -> bool:
        """An inbound message arrived on the account's open socket: report the activity.

        ``False`` (nothing reported) when the account has no open socket.
        """
        socket = self.current_socket(account)
        if socket is None:
            return False
        generation, attempt = socket
        self.feed(
            Activity(
                account=account, generation=generation, attempt=attempt, kind=ActivityKind.INBOUND
            )
        )
        return True

    def shutdown(self, reason: str = "shutdown") -> None:
        """End every open reply (once) and stop every controller: the engine's ``Shutdown``."""
        if not self.engine.shut_down:
            self.feed(Shutdown(reason=reason))

    def _carry_out(self, effect: Effect, now: int) -> None:
        if isinstance(effect, Log):
            self._record(
                TimelineEntry(
                    now,
                    effect.level,
                    effect.code,
                    effect.message,
                    effect.account,
                    effect.generation,
                    dict(effect.fields),
                )
            )
        elif isinstance(effect, StartTimer):
            self._start_timer(effect.timer, effect.deadline_ms)
        elif isinstance(effect, CancelTimer):
            self._cancel_timer(effect.timer)
        elif isinstance(effect, OpenSocket):
            self.last_attempt[(effect.account, effect.generation)] = effect.attempt
            self._boot(effect.account, effect.generation, effect.attempt)
        elif isinstance(effect, CloseSocket):
            self._close(effect.account, effect.generation, effect.attempt, effect.status)
        elif isinstance(effect, Transmit):
            self.transmissions.append(effect)
            key = (effect.account, effect.attempt, effect.message_id)
            self._flight.setdefault(key, deque()).append(effect.reply_id)
            self._record(
                TimelineEntry(
                    now,
                    "info",
                    "transmit",
                    f"transmit {effect.reply_id} (message id {effect.message_id}, "
                    f"transmission {effect.transmission})",
                    effect.account,
                    effect.generation,
                )
            )
            self._transmit(effect)
        elif isinstance(effect, ReplyDelivered):
            self._ended(
                ReplyOutcome(
                    effect.reply_id,
                    "delivered",
                    f"acknowledged via {effect.via} generation {effect.generation}",
                    now,
                    effect.generation,
                    effect.via,
                )
            )
        elif isinstance(effect, ReplyFailed):
            self._ended(ReplyOutcome(effect.reply_id, effect.outcome, effect.reason, now))
        elif isinstance(effect, Registered):
            self.current[effect.account] = effect.generation
        elif isinstance(effect, Unregistered):
            if self.current.get(effect.account) == effect.generation:
                del self.current[effect.account]
        elif isinstance(effect, Rejected):
            self.rejections.append(effect)
            self._record(TimelineEntry(now, "error", effect.code, effect.message))

    def _ended(self, outcome: ReplyOutcome) -> None:
        self.outcomes[outcome.reply_id] = outcome
        self._record(
            TimelineEntry(
                outcome.at_ms,
                "info" if outcome.outcome == "delivered" else "warning",
                f"reply_{outcome.outcome}",
                f"reply {outcome.reply_id} {outcome.outcome}: {outcome.reason}",
                generation=outcome.generation,
            )
        )

    def add_auth_dir(self, account: str, source: str | os.PathLike[str] | AuthDir) -> None:
        """Name ``account``'s Baileys auth dir (a path, read at its first boot, or one read)."""
        self._auth_dirs[account] = source

    def _read_auth_dir(self, account: str) -> None:
        """At the account's first boot: its named auth dir's pairs join ``auth_dir``."""
        source = self._auth_dirs.pop(account, None)
        if source is None:
            return
        try:
            auth = source if isinstance(source, AuthDir) else read_auth_dir(source)
        except AuthDirError as exc:  # the controller connects without it: identity fails closed
            self._record(TimelineEntry(self.now_ms(), "error", "auth_dir", str(exc), account))
            return
        pairs = list(auth.mapping.pairs)
        me = auth.resolved_identity
        if me.pn is not None and me.lid is not None:
            pairs.insert(0, (me.pn.user, me.lid.user))
        held = self.auth_dir.setdefault(account, [])
        known = {_users(p) for p in held}
        held += [p for p in pairs if _users(p) not in known]

    def _booted(self, account: str, generation: int, attempt: int) -> None:
        """The controller finished booting: feed the auth dir's pairs not fed yet, then connect."""
        self._read_auth_dir(account)
        for pair in self.auth_dir.get(account, ()):
            key = _users(pair)
            if key in self._fed:
                continue
            self._fed.add(key)
            pn, lid = pair
            self.note(
                f"auth dir: lid-mapping {key[0]} <-> {key[1]}",
                account=account,
                generation=generation,
            )
            self.feed(MappingLearned(pn=pn, lid=lid))
        self._open(account, generation, attempt)

    # ------------------------------------------------------------ channel facts

    def on_open(
        self,
        account: str,
        generation: int,
        attempt: int,
        pn: str | None,
        lid: str | None,
        e164: str | None,
    ) -> None:
        self.sockets[(account, attempt)] = generation
        self.opened_as[(account, attempt)] = (pn, lid, e164)
        self.feed(
            SocketOpened(
                account=account, generation=generation, attempt=attempt, pn=pn, lid=lid, e164=e164
            )
        )

    def on_close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        self.sockets.pop((account, attempt), None)
        self.feed(
            SocketClosed(account=account, generation=generation, attempt=attempt, status=status)
        )

    def on_activity(self, account: str, generation: int, attempt: int) -> None:
        """A transport frame arrived on the socket (a keepalive answer, a receipt, ...)."""
        self.feed(Activity(account=account, generation=generation, attempt=attempt))

    def on_ack(self, account: str, generation: int, attempt: int, message_id: str) -> None:
        reply_id = self._take(account, attempt, message_id)
        if reply_id is None:
            self.note(f"ack of unknown message {message_id} ignored", account=account)
            return
        self.feed(TransmitAcked(reply_id=reply_id, generation=generation, attempt=attempt))

    def on_send_failed(
        self,
        account: str,
        generation: int,
        attempt: int,
        message_id: str,
        io_started: bool,
        error: str,
    ) -> None:
        reply_id = self._take(account, attempt, message_id)
        if reply_id is None:
            self.note(f"failure of unknown message {message_id} ignored", account=account)
            return
        self.feed(
            TransmitFailed(
                reply_id=reply_id,
                generation=generation,
                attempt=attempt,
                io_started=io_started,
                error=error,
            )
        )

    def _take(self, account: str, attempt: int, message_id: str) -> str | None:
        key = (account, attempt, message_id)
        waiting = self._flight.get(key)
        if not waiting:
            return None
        reply_id = waiting.popleft()
        if not waiting:
            del self._flight[key]
        return reply_id
