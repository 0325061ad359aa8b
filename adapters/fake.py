"""The deterministic runtime: a virtual clock, a timer scheduler and an in-memory channel.

Nothing here decides anything. :class:`GatewayBase` is the effect-dispatch both
runtimes share (this one and :mod:`heirline.adapters.aio`): it feeds events to
the engine one at a time, carries out the effects in order, and turns channel
facts (the :class:`~heirline.adapters.transport.TransportCallbacks`) back into
events. :class:`FakeGateway` runs it on virtual time against a
:class:`FakeChannel`, an in-memory stand-in for the reference channel server
with the same control API (``add_account``, ``close_account``, ``relink``) and
the same deduplicating :class:`~heirline.adapters.channel.Ledger`.

Scenarios are written once as generators (:data:`Script`) that yield
:class:`At` / :class:`Until` and run unchanged on either runtime.
"""

from __future__ import annotations

import heapq
import itertools
import random as _random
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, runtime_checkable

from heirline.adapters.channel import Identity, Ledger
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
    TimerFired,
    TransmitAcked,
    TransmitFailed,
)
from heirline.core.identity import LidMapping
from heirline.core.policy import Status
from heirline.core.timers import Timer

__all__ = [
    "At",
    "ChannelControl",
    "FakeChannel",
    "FakeGateway",
    "GatewayBase",
    "ReplyOutcome",
    "Scheduler",
    "Script",
    "ScriptTimeout",
    "TimelineEntry",
    "Until",
    "VirtualClock",
]

#: Close status the fake reports for a login refused (unknown or logged-out account).
STATUS_LOGGED_OUT = Status.LOGGED_OUT
#: Baileys ``connectionClosed``: what a send on a closed socket fails with.
STATUS_CONNECTION_CLOSED = Status.CONNECTION_CLOSED
#: How often (virtual ms) a live fake socket shows a transport frame (Baileys' keepalive is 30 s).
DEFAULT_KEEPALIVE_MS = 30_000


# --------------------------------------------------------------------------- shared records


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


@dataclass(frozen=True, slots=True)
class At:
    """Script step: continue at engine time ``ms`` (no-op if already past)."""

    ms: int


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


# --------------------------------------------------------------------------- the shared gateway


class GatewayBase:
    """Feeds events to one :class:`Engine` and carries out its effects (no decisions here).

    Engine access is serialized: :meth:`feed` queues the event, and only the
    outermost call drains the queue, one ``handle()`` at a time, so facts that
    arise while effects are being carried out are handled after them, in order.

    ``auth_dir`` maps an account to the PN<->LID pairs its auth dir holds; a
    controller reads it when it boots (on ``OpenSocket``, after ``boot_ms``),
    which the gateway reports as :class:`MappingLearned` events. Scenarios may
    change it between boots (Baileys writes mapping files as it learns them).

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
        boot_ms: int = 0,
    ) -> None:
        if boot_ms < 0:
            raise ValueError(f"boot_ms must be >= 0, got {boot_ms}")
        self.engine = Engine(config, random=random, mapping=mapping)
        self.auth_dir: dict[str, list[tuple[str, str]]] = dict(auth_dir or {})
        self.boot_ms = boot_ms
        self.timeline: list[TimelineEntry] = []
        self.outcomes: dict[str, ReplyOutcome] = {}
        self.transmissions: list[Transmit] = []
        self.rejections: list[Rejected] = []
        self.current: dict[str, int] = {}
        #: Open sockets: (account, attempt) -> generation.
        self.sockets: dict[tuple[str, int], int] = {}
        self._queue: deque[Event] = deque()
        self._draining = False
        #: The journal every step is written to before its effects are carried out (None: none).
        self.durable: Durable | None = None
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
        self.timeline.append(
            TimelineEntry(self.now_ms(), "note", "note", message, account, generation)
        )

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
            self.timeline.append(
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
            self._boot(effect.account, effect.generation, effect.attempt)
        elif isinstance(effect, CloseSocket):
            self._close(effect.account, effect.generation, effect.attempt, effect.status)
        elif isinstance(effect, Transmit):
            self.transmissions.append(effect)
            key = (effect.account, effect.attempt, effect.message_id)
            self._flight.setdefault(key, deque()).append(effect.reply_id)
            self.timeline.append(
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
            self.timeline.append(TimelineEntry(now, "error", effect.code, effect.message))

    def _ended(self, outcome: ReplyOutcome) -> None:
        self.outcomes[outcome.reply_id] = outcome
        self.timeline.append(
            TimelineEntry(
                outcome.at_ms,
                "info" if outcome.outcome == "delivered" else "warning",
                f"reply_{outcome.outcome}",
                f"reply {outcome.reply_id} {outcome.outcome}: {outcome.reason}",
                generation=outcome.generation,
            )
        )

    def _booted(self, account: str, generation: int, attempt: int) -> None:
        """The controller finished booting: report its auth dir's mapping, then connect."""
        for pn, lid in self.auth_dir.get(account, ()):
            self.note(
                f"auth dir: lid-mapping {pn.split('@')[0]} <-> {lid.split('@')[0]}",
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


# --------------------------------------------------------------------------- virtual time


class VirtualClock:
    """Integer milliseconds that only move forward, when told to."""

    __slots__ = ("_now",)

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    @property
    def now_ms(self) -> int:
        return self._now

    def advance_to(self, ms: int) -> None:
        if ms < self._now:
            raise ValueError(f"time cannot go back from {self._now} to {ms}")
        self._now = ms


class Scheduler:
    """Keyed callbacks on a :class:`VirtualClock`, run in (deadline, insertion) order.

    Scheduling a key that is pending replaces it (the replacement counts as a
    new insertion); :meth:`cancel` removes it. Callbacks may schedule more.
    Keys are any hashable value (the gateway uses the engine's timer identities).
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._heap: list[tuple[int, int, Hashable]] = []
        self._live: dict[Hashable, tuple[int, int, Callable[[], None]]] = {}
        self._seq = itertools.count()

    def call_at(
        self, deadline_ms: int, callback: Callable[[], None], key: Hashable | None = None
    ) -> Hashable:
        """Run ``callback`` at ``deadline_ms`` (now, if that is past); returns the key."""
        seq = next(self._seq)
        if key is None:
            key = f"#{seq}"
        self._live[key] = (deadline_ms, seq, callback)
        heapq.heappush(self._heap, (deadline_ms, seq, key))
        return key

    def cancel(self, key: Hashable) -> bool:
        """Forget ``key``; ``True`` if it was pending."""
        return self._live.pop(key, None) is not None

    def pending(self) -> list[tuple[int, Hashable]]:
        """(deadline, key) of every pending callback, in the order they will run."""
        live = sorted((d, s) for d, s, _ in self._live.values())
        keys = {s: k for k, (_, s, _) in self._live.items()}
        return [(d, keys[s]) for d, s in live]

    def _prune(self) -> None:
        while self._heap:
            _, seq, key = self._heap[0]
            entry = self._live.get(key)
            if entry is not None and entry[1] == seq:
                return
            heapq.heappop(self._heap)

    def next_deadline(self) -> int | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def step(self, limit_ms: int) -> bool:
        """Run the next callback due at or before ``limit_ms``; ``False`` if there is none."""
        self._prune()
        if not self._heap or self._heap[0][0] > limit_ms:
            return False
        deadline, _, key = heapq.heappop(self._heap)
        _, _, callback = self._live.pop(key)
        self.clock.advance_to(max(deadline, self.clock.now_ms))
        callback()
        return True

    def run_until(self, ms: int) -> int:
        """Run everything due up to ``ms``, then set the clock to ``ms``; returns how many ran."""
        ran = 0
        while self.step(ms):
            ran += 1
        if ms > self.clock.now_ms:
            self.clock.advance_to(ms)
        return ran


# --------------------------------------------------------------------------- the fake channel


@runtime_checkable
class _Listener(Protocol):
    def channel_closed(
        self, account: str, generation: int, attempt: int, status: int | None
    ) -> None: ...


@dataclass(slots=True)
class _FakeSocket:
    generation: int
    identity: Identity
    silent: bool = False  # half-open: nothing comes back any more


class FakeChannel:
    """In-memory stand-in for :class:`~heirline.adapters.channel.ChannelServer`.

    Accounts have an identity; a socket ``(account, attempt)`` that connects is
    bound to the identity the account had then. Messages are recorded in a
    :class:`Ledger` per identity (repeated ids deduplicated). A half-open
    socket stays "connected" but nothing comes back through it: no frames, no
    acks -- only the engine's watchdog can tell.
    """

    def __init__(self) -> None:
        self.ledger = Ledger()
        self._accounts: dict[str, Identity] = {}
        self._logged_out: set[str] = set()
        self._live: dict[tuple[str, int], _FakeSocket] = {}
        self._listener: _Listener | None = None

    def attach(self, listener: _Listener) -> None:
        self._listener = listener

    def add_account(
        self, account: str, pn: str | None = None, lid: str | None = None, e164: str | None = None
    ) -> Identity:
        identity = Identity(pn, lid, e164)
        self._accounts[account] = identity
        self._logged_out.discard(account)
        return identity

    def identity_of(self, account: str) -> Identity | None:
        if account in self._logged_out:
            return None
        return self._accounts.get(account)

    def connection_count(self, account: str | None = None) -> int:
        return sum(1 for a, _ in self._live if account is None or a == account)

    def close_account(self, account: str, status: int | None) -> int:
        if account not in self._accounts:
            raise KeyError(f"unknown account {account!r}")
        keys = sorted(k for k in self._live if k[0] == account)
        for key in keys:
            sock = self._live.pop(key)
            if self._listener is not None:
                self._listener.channel_closed(key[0], sock.generation, key[1], status)
        return len(keys)

    def half_open(self, account: str) -> int:
        """The account's live sockets go silent (half-open); returns how many."""
        if account not in self._accounts:
            raise KeyError(f"unknown account {account!r}")
        socks = [sock for (a, _), sock in self._live.items() if a == account]
        for sock in socks:
            sock.silent = True
        return len(socks)

    def logout(self, account: str, status: int | None = STATUS_LOGGED_OUT) -> int:
        self._logged_out.add(account)
        return self.close_account(account, status)

    def relink(
        self,
        account: str,
        pn: str | None,
        lid: str | None,
        e164: str | None,
        status: int | None = STATUS_LOGGED_OUT,
    ) -> int:
        if account not in self._accounts:
            raise KeyError(f"unknown account {account!r}")
        self.add_account(account, pn, lid, e164)
        return self.close_account(account, status)

    # ---------------------------------------------------------- socket side

    def connect(self, account: str, generation: int, attempt: int) -> Identity | None:
        """Log a socket in; ``None`` if the account is unknown or logged out (refused)."""
        identity = self.identity_of(account)
        if identity is None:
            return None
        self._live[(account, attempt)] = _FakeSocket(generation, identity)
        return identity

    def disconnect(self, account: str, attempt: int) -> bool:
        return self._live.pop((account, attempt), None) is not None

    def is_live(self, account: str, attempt: int) -> bool:
        return (account, attempt) in self._live

    def is_silent(self, account: str, attempt: int) -> bool:
        """Whether the socket is half-open (nothing comes back)."""
        sock = self._live.get((account, attempt))
        return sock is not None and sock.silent

    def deliver(
        self, account: str, attempt: int, message_id: str, chat: str, kind: str, payload: str
    ) -> bool:
        """Record a message sent through a live socket; ``False`` if the socket is not live.

        A half-open socket swallows it: nothing reaches the receiver.
        """
        sock = self._live.get((account, attempt))
        if sock is None:
            return False
        if not sock.silent:
            self.ledger.record(sock.identity, account, message_id, chat, kind, payload)
        return True


# --------------------------------------------------------------------------- the fake gateway


class FakeGateway(GatewayBase):
    """The engine on virtual time over a :class:`FakeChannel`.

    Latencies (virtual ms): ``boot_ms`` from ``OpenSocket`` to connecting,
    ``connect_ms`` from connecting to open, ``ack_ms`` from a transmission to
    its ack. A live socket shows a transport frame every ``keepalive_ms``
    (``None``: never), reported as ``Activity``. Nothing happens until
    :meth:`run_until` (or :meth:`run`) moves time.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        random: Callable[[], float] | None = None,
        seed: int = 0,
        channel: FakeChannel | None = None,
        mapping: LidMapping | None = None,
        auth_dir: dict[str, list[tuple[str, str]]] | None = None,
        boot_ms: int = 0,
        connect_ms: int = 5,
        ack_ms: int = 5,
        keepalive_ms: int | None = DEFAULT_KEEPALIVE_MS,
        start_ms: int = 0,
    ) -> None:
        if random is None:
            random = _random.Random(seed).random
        super().__init__(config, random=random, mapping=mapping, auth_dir=auth_dir, boot_ms=boot_ms)
        if connect_ms < 0 or ack_ms < 0:
            raise ValueError("latencies must be >= 0")
        if keepalive_ms is not None and keepalive_ms < 1:
            raise ValueError(f"keepalive_ms must be >= 1 or None, got {keepalive_ms}")
        self.clock = VirtualClock(start_ms)
        self.scheduler = Scheduler(self.clock)
        self.channel = channel if channel is not None else FakeChannel()
        self.channel.attach(self)
        self.connect_ms = connect_ms
        self.ack_ms = ack_ms
        self.keepalive_ms = keepalive_ms
        self._acks: dict[tuple[str, int], list[tuple[str, Hashable]]] = {}
        self._ack_ids = itertools.count()

    def now_ms(self) -> int:
        return self.clock.now_ms

    def run_until(self, ms: int) -> int:
        """Advance virtual time to ``ms``, delivering due timers and latencies in order."""
        return self.scheduler.run_until(ms)

    def run(self, script: Iterable[At | Until]) -> None:
        """Run a scenario script to its end on virtual time."""
        for step in script:
            if isinstance(step, At):
                self.run_until(max(step.ms, self.now_ms()))
                continue
            limit = self.now_ms() + step.timeout_ms
            while not step.predicate():
                if not self.scheduler.step(limit):
                    self.run_until(limit)
                    raise ScriptTimeout(f"not reached within {step.timeout_ms} ms: {step.what}")

    # ---------------------------------------------------------- effects

    def _start_timer(self, timer: Timer, deadline_ms: int) -> None:
        self.scheduler.call_at(
            deadline_ms, lambda: self.feed(TimerFired(timer=timer)), key=("timer", timer)
        )

    def _cancel_timer(self, timer: Timer) -> None:
        self.scheduler.cancel(("timer", timer))

    # The scheduled callbacks are bound methods, not closures: beartype's import hook
    # (armed in the tests) decorates a nested function anew each time it is defined.

    def _boot(self, account: str, generation: int, attempt: int) -> None:
        self.scheduler.call_at(
            self.now_ms() + self.boot_ms,
            partial(self._booted, account, generation, attempt),
            key=("boot", account, attempt),
        )

    def _open(self, account: str, generation: int, attempt: int) -> None:
        self.scheduler.call_at(
            self.now_ms() + self.connect_ms,
            partial(self._connect, account, generation, attempt),
            key=("connect", account, attempt),
        )

    def _connect(self, account: str, generation: int, attempt: int) -> None:
        identity = self.channel.connect(account, generation, attempt)
        if identity is None:
            self.on_close(account, generation, attempt, STATUS_LOGGED_OUT)
            return
        self.on_open(account, generation, attempt, identity.pn, identity.lid, identity.e164)
        if self.channel.is_live(account, attempt):  # the engine may have closed it at once
            self._keepalive(account, generation, attempt)

    def _keepalive(self, account: str, generation: int, attempt: int) -> None:
        """Schedule the socket's next transport frame, while it lives and is not half-open."""
        interval = self.keepalive_ms
        if interval is None:
            return
        self.scheduler.call_at(
            self.now_ms() + interval,
            partial(self._frame, account, generation, attempt),
            key=("keepalive", account, attempt),
        )

    def _frame(self, account: str, generation: int, attempt: int) -> None:
        if not self.channel.is_live(account, attempt):
            return
        if not self.channel.is_silent(account, attempt):
            self.on_activity(account, generation, attempt)
        self._keepalive(account, generation, attempt)

    def _close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        booting = self.scheduler.cancel(("boot", account, attempt))
        if booting or self.scheduler.cancel(("connect", account, attempt)):
            self.on_close(account, generation, attempt, status)  # closed before it opened
        elif self.channel.disconnect(account, attempt):
            self.channel_closed(account, generation, attempt, status)

    def channel_closed(
        self, account: str, generation: int, attempt: int, status: int | None
    ) -> None:
        """The channel closed this socket: report the close, then the sends awaiting an ack.

        The close comes first so the engine knows the socket is gone before it
        hears of the lost sends (it already treats them as lost on the close).
        """
        self.scheduler.cancel(("keepalive", account, attempt))
        self.on_close(account, generation, attempt, status)
        for message_id, key in self._acks.pop((account, attempt), []):
            self.scheduler.cancel(key)
            self.on_send_failed(
                account,
                generation,
                attempt,
                message_id,
                True,
                f"connection closed (status {status})",
            )

    def _transmit(self, effect: Transmit) -> None:
        account, generation, attempt = effect.account, effect.generation, effect.attempt
        message_id = effect.message_id
        if not self.channel.deliver(
            account, attempt, message_id, effect.chat, effect.kind, effect.payload
        ):
            self.on_send_failed(
                account,
                generation,
                attempt,
                message_id,
                False,
                f"connection closed ({STATUS_CONNECTION_CLOSED}): no open socket",
            )
            return
        pending = self._acks.setdefault((account, attempt), [])
        key = ("ack", account, attempt, next(self._ack_ids))
        pending.append((message_id, key))
        if self.channel.is_silent(account, attempt):
            return  # half-open: the frame left, no ack will ever come
        self.scheduler.call_at(
            self.now_ms() + self.ack_ms,
            partial(self._ack, account, generation, attempt, message_id, key),
            key=key,
        )

    def _ack(
        self, account: str, generation: int, attempt: int, message_id: str, key: Hashable
    ) -> None:
        pending = self._acks[(account, attempt)]  # a close cancels the acks it fails
        pending[:] = [p for p in pending if p[1] != key]
        if not pending:
            del self._acks[(account, attempt)]
        self.on_ack(account, generation, attempt, message_id)
