"""The lean runtime: the fake gateway's semantics at a million accounts.

:class:`LeanRuntime` carries the engine's effects out exactly as
:class:`~heirline.adapters.fake.FakeGateway` over a
:class:`~heirline.adapters.fake.FakeChannel` does -- the same event queue (a
fact that arises while effects are carried out is handled after them), the
same latencies (``boot_ms``, ``connect_ms``, ``ack_ms``), the same order of
a close and the sends it fails, the same refusal of a logged-out login (401),
the same half-open sockets that swallow sends and never ack -- with the
receiver's deduplicating :class:`~heirline.adapters.channel.Ledger`. It differs
in cost, not in outcome:

* a calendar queue of ``(time, seq, callback, args)`` and per-account records,
  instead of keyed callbacks, ``partial`` objects and channel scans over every
  socket;
* no per-socket keepalive frames. A healthy socket's frames (one every
  ``keepalive_ms``) and the engine's watchdog timer re-arming on them change
  nothing but the watchdog's next deadline, so while a socket is healthy its
  watchdog timer is *held* (kept, not scheduled). When the socket goes
  half-open -- right after one of its frames, on the same ``keepalive_ms``
  grid the fake gateway uses -- that last frame is reported and the held
  timer is released (due at once if its deadline passed): the engine then
  closes the socket ``watchdog_ms`` after that frame, as it does under the
  fake gateway. ``docs/simulate.md`` has the argument and its limits, and
  ``tests/test_simulate.py`` runs both runtimes on the same fleet and compares.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from heirline.adapters.channel import Identity, Ledger
from heirline.adapters.simulate.identities import auth_pair, shown_identity
from heirline.adapters.simulate.profile import Fleet
from heirline.adapters.simulate.recorder import MeasuredEngine, Recorder
from heirline.core.config import EngineConfig
from heirline.core.effects import CancelTimer, CloseSocket, Effect, OpenSocket, StartTimer, Transmit
from heirline.core.events import (
    Activity,
    ActivityKind,
    Event,
    MappingLearned,
    SocketClosed,
    SocketOpened,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
)
from heirline.core.policy import Status
from heirline.core.timers import Timer, WatchdogTimer

__all__ = ["LeanRuntime"]

_LOGGED_OUT: Final = int(Status.LOGGED_OUT)
_NO_SOCKET: Final = f"connection closed ({int(Status.CONNECTION_CLOSED)}): no open socket"
_FRAME: Final = ActivityKind.FRAME
#: The schedule's buckets are 2**10 = 1024 virtual ms wide.
_BUCKET_BITS: Final = 10

#: A scheduled callback: (time, seq, callback, args); seq orders callbacks due at the same ms.
_Entry = tuple[int, int, Callable[..., None], tuple[Any, ...]]


class _Socket:
    """A connected socket: who it is logged in as, when it opened, what awaits an ack."""

    __slots__ = ("account", "acks", "attempt", "generation", "identity", "opened_at", "silent")

    def __init__(
        self, account: str, generation: int, attempt: int, identity: Identity, opened_at: int
    ) -> None:
        self.account = account
        self.generation = generation
        self.attempt = attempt
        self.identity = identity
        self.opened_at = opened_at
        self.silent = False  # half-open: nothing comes back any more
        self.acks: dict[int, str] | None = None  # ack token -> reply id, in send order


class LeanRuntime:
    """The engine, a virtual clock and an in-process channel, for fleets of any size."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        random: Callable[[], float],
        recorder: Recorder,
        fleet: Fleet,
    ) -> None:
        self.engine = MeasuredEngine(config, random=random, recorder=recorder)
        self.ledger = Ledger()
        self._mode = fleet.identity
        self._auth_dir = fleet.auth_dir
        self._boot_ms = fleet.boot_ms
        self._connect_ms = fleet.connect_ms
        self._ack_ms = fleet.ack_ms
        self._keepalive_ms = fleet.keepalive_ms
        self._hold = config.lifecycle.watchdog_ms is not None
        # The schedule: (time, seq, callback, args), run in (time, seq) order. A calendar
        # queue: the entries of the current 1024 ms bucket in a small heap, later ones in a
        # list per bucket, and a heap of those buckets' numbers. One heap of every entry
        # costs a cache miss per level at a million accounts (its entries are scattered
        # through gigabytes); these stay small and hot.
        self._current: list[_Entry] = []
        self._current_bucket = -1
        self._buckets: dict[int, list[_Entry]] = {}
        self._bucket_heap: list[int] = []
        self._seq = 0
        self._now = 0
        self._timers: dict[Timer, int] = {}  # pending engine timers -> their entry's seq
        self._held: dict[Timer, int] = {}  # watchdog timers of healthy sockets -> deadline
        self._opening: dict[tuple[str, int], int] = {}  # (account, attempt) booting/connecting
        self._live: dict[str, _Socket] = {}  # account -> its connected socket (at most one)
        self._person: dict[str, int] = {}
        self._logged_out: set[str] = set()
        self._queue: deque[Event] = deque()
        self._draining = False
        self._carry: dict[type[Effect], Callable[[Any], None]] = {
            StartTimer: self._start_timer,
            CancelTimer: self._cancel_timer,
            OpenSocket: self._open_socket,
            CloseSocket: self._close_socket,
            Transmit: self._transmit,
        }

    # ------------------------------------------------------------------ time

    def now_ms(self) -> int:
        return self._now

    def _push(self, at: int, callback: Callable[..., None], args: tuple[Any, ...]) -> int:
        self._seq = seq = self._seq + 1
        self._enqueue((at, seq, callback, args))
        return seq

    def _enqueue(self, entry: _Entry) -> None:
        bucket = entry[0] >> _BUCKET_BITS
        if bucket <= self._current_bucket:
            heapq.heappush(self._current, entry)
            return
        later = self._buckets.get(bucket)
        if later is None:
            self._buckets[bucket] = [entry]
            heapq.heappush(self._bucket_heap, bucket)
        else:
            later.append(entry)

    def call_at(self, at_ms: int, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` at ``at_ms`` (now, if that is past), after what is due then."""
        self._push(at_ms, callback, args)

    def run_until(self, ms: int) -> None:
        """Run everything due up to ``ms`` in (time, insertion) order; then the clock is ``ms``."""
        pop = heapq.heappop
        while True:
            current = self._current
            if current:
                if current[0][0] > ms:
                    break
                at, _, callback, args = pop(current)
                if at > self._now:
                    self._now = at
                callback(*args)
                continue
            buckets = self._bucket_heap
            if not buckets or buckets[0] << _BUCKET_BITS > ms:
                break
            bucket = pop(buckets)
            entries = self._buckets.pop(bucket)
            heapq.heapify(entries)
            self._current = entries
            self._current_bucket = bucket
        if ms > self._now:
            self._now = ms

    # ------------------------------------------------------------------ feeding

    def feed(self, event: Event) -> None:
        """Report one fact; handled after any fact already being handled (GatewayBase.feed)."""
        if self.engine.shut_down:
            return  # facts trickling in after the shutdown are dropped
        if self._draining:
            self._queue.append(event)
            return
        self._draining = True
        engine = self.engine
        carry = self._carry
        queue = self._queue
        try:
            while True:
                for effect in engine.handle(event, self._now):
                    action = carry.get(type(effect))
                    if action is not None:
                        action(effect)
                if not queue:
                    break
                if engine.shut_down:
                    queue.clear()
                    break
                event = queue.popleft()
        finally:
            self._draining = False

    # ------------------------------------------------------------------ timers

    def _start_timer(self, effect: StartTimer) -> None:
        timer = effect.timer
        if self._hold and type(timer) is WatchdogTimer:
            sock = self._live.get(timer.account)
            if sock is not None and sock.attempt == timer.attempt and not sock.silent:
                self._held[timer] = effect.deadline_ms  # healthy: its frames keep it re-armed
                self._timers.pop(timer, None)
                return
        self._schedule(timer, effect.deadline_ms)

    def _schedule(self, timer: Timer, deadline_ms: int) -> None:
        self._seq = seq = self._seq + 1
        self._timers[timer] = seq
        self._enqueue((deadline_ms, seq, self._fire, (timer, seq)))

    def _fire(self, timer: Timer, seq: int) -> None:
        if self._timers.get(timer) != seq:
            return  # started again (another entry) or cancelled since
        del self._timers[timer]
        self.feed(TimerFired(timer=timer))

    def _cancel_timer(self, effect: CancelTimer) -> None:
        timer = effect.timer
        if self._timers.pop(timer, None) is None:
            self._held.pop(timer, None)

    # ------------------------------------------------------------------ sockets

    def _open_socket(self, effect: OpenSocket) -> None:
        account, generation, attempt = effect.account, effect.generation, effect.attempt
        key = (account, attempt)
        self._opening[key] = self._push(
            self._now + self._boot_ms, self._booted, (account, generation, attempt)
        )

    def _booted(self, account: str, generation: int, attempt: int) -> None:
        key = (account, attempt)
        if self._opening.pop(key, None) is None:
            return  # closed while booting
        if self._auth_dir:
            pn, lid = auth_pair(self._person[account])
            self.feed(MappingLearned(pn=pn, lid=lid))
        self._opening[key] = self._push(
            self._now + self._connect_ms, self._connect, (account, generation, attempt)
        )

    def _connect(self, account: str, generation: int, attempt: int) -> None:
        if self._opening.pop((account, attempt), None) is None:
            return  # closed while connecting
        if account in self._logged_out:
            self.feed(SocketClosed(account, generation, attempt, _LOGGED_OUT))
            return
        if account in self._live:
            raise RuntimeError(
                f"{account!r}: socket {attempt} connects while socket "
                f"{self._live[account].attempt} is still connected"
            )
        identity = shown_identity(self._person[account], self._mode, attempt)
        self._live[account] = _Socket(account, generation, attempt, identity, self._now)
        self.feed(SocketOpened(account, generation, attempt, identity.pn, identity.lid))

    def _close_socket(self, effect: CloseSocket) -> None:
        account, attempt = effect.account, effect.attempt
        if self._opening.pop((account, attempt), None) is not None:
            self.feed(SocketClosed(account, effect.generation, attempt, effect.status))
            return  # closed before it opened
        sock = self._live.get(account)
        if sock is not None and sock.attempt == attempt:
            del self._live[account]
            self._closed(sock, effect.status)

    def _closed(self, sock: _Socket, status: int | None) -> None:
        """The socket closed: report the close, then every send still awaiting its ack."""
        self.feed(SocketClosed(sock.account, sock.generation, sock.attempt, status))
        acks = sock.acks
        if acks:
            sock.acks = None
            error = f"connection closed (status {status})"
            for rid in acks.values():
                self.feed(TransmitFailed(rid, sock.generation, sock.attempt, True, error))

    def _transmit(self, effect: Transmit) -> None:
        sock = self._live.get(effect.account)
        if sock is None or sock.attempt != effect.attempt:
            self.feed(
                TransmitFailed(
                    effect.reply_id, effect.generation, effect.attempt, False, _NO_SOCKET
                )
            )
            return
        if sock.silent:  # half-open: the frame leaves, nothing arrives, no ack comes
            if sock.acks is None:
                sock.acks = {}
            self._seq += 1
            sock.acks[self._seq] = effect.reply_id
            return
        self.ledger.record(
            sock.identity,
            effect.account,
            effect.message_id,
            effect.chat,
            effect.kind,
            effect.payload,
        )
        self._seq = token = self._seq + 1
        if sock.acks is None:
            sock.acks = {}
        sock.acks[token] = effect.reply_id
        self._enqueue(
            (self._now + self._ack_ms, token, self._ack, (sock, effect.generation, token))
        )

    def _ack(self, sock: _Socket, generation: int, token: int) -> None:
        acks = sock.acks
        rid = None if acks is None else acks.pop(token, None)
        if rid is not None:  # else the socket closed first and failed it
            self.feed(TransmitAcked(rid, generation, sock.attempt))

    # ------------------------------------------------------------ the channel, as the world sees it

    def add_account(self, account: str, person: int) -> None:
        """``account`` exists and logs in as ``person``."""
        self._person[account] = person

    def listening(self, account: str) -> tuple[int, int] | None:
        """``(generation, attempt)`` of the account's connected socket if it is not half-open."""
        sock = self._live.get(account)
        if sock is None or sock.silent:
            return None
        return sock.generation, sock.attempt

    def close_account(self, account: str, status: int) -> int:
        """The channel closes the account's socket with ``status``; how many it closed."""
        sock = self._live.pop(account, None)
        if sock is None:
            return 0
        self._closed(sock, status)
        return 1

    def logout(self, account: str) -> int:
        """The account is logged out: its socket closes (401), logins are refused (401)."""
        self._logged_out.add(account)
        return self.close_account(account, _LOGGED_OUT)

    def repair(self, account: str) -> None:
        """The owner pairs the account again: logins are accepted."""
        self._logged_out.discard(account)

    def relink(self, account: str, person: int) -> int:
        """The account is linked to ``person`` now; its socket closes (401)."""
        self._person[account] = person
        self._logged_out.discard(account)
        return self.close_account(account, _LOGGED_OUT)

    def half_open(self, account: str) -> bool:
        """The account's socket goes silent right after its next transport frame."""
        sock = self._live.get(account)
        if sock is None or sock.silent:
            return False
        every = self._keepalive_ms
        ticks = max(1, -(-(self._now - sock.opened_at) // every))
        self._push(sock.opened_at + ticks * every, self._go_silent, (sock,))
        return True

    def _go_silent(self, sock: _Socket) -> None:
        if self._live.get(sock.account) is not sock or sock.silent:
            return  # closed (or silenced) before that frame
        self.feed(Activity(sock.account, sock.generation, sock.attempt, _FRAME))  # its last frame
        sock.silent = True
        timer = WatchdogTimer(sock.account, sock.attempt)
        deadline = self._held.pop(timer, None)
        if deadline is not None:
            self._schedule(timer, max(deadline, self._now))
