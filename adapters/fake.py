"""The deterministic runtime: a virtual clock, a timer scheduler and an in-memory channel.

Nothing here decides anything. :class:`FakeGateway` runs the shared effect
dispatcher (:class:`~heirline.adapters.gateway.GatewayBase`) on virtual time
against a :class:`FakeChannel`, an in-memory stand-in for the reference channel
server with the same control API (``add_account``, ``close_account``,
``relink``; :class:`~heirline.adapters.script.ChannelControl`) and the same
deduplicating :class:`~heirline.adapters.ledger.Ledger`.

Scenarios are written once as generators (:data:`~heirline.adapters.script.Script`)
that yield ``At`` / ``Until`` and run unchanged on either runtime. The names
that moved out of this module (``GatewayBase``, ``TimelineEntry``,
``ReplyOutcome``, ``At``, ``Until``, ``Script``, ``ScriptTimeout``,
``ChannelControl``) are still importable from here.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random as _random
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol, runtime_checkable

from heirline.adapters.authdir import AuthDir
from heirline.adapters.gateway import GatewayBase, ReplyOutcome, TimelineEntry
from heirline.adapters.ledger import Identity, Ledger
from heirline.adapters.script import (
    STATUS_LOGGED_OUT,
    At,
    ChannelControl,
    Script,
    ScriptTimeout,
    Until,
)
from heirline.core.effects import Transmit
from heirline.core.engine import EngineConfig
from heirline.core.events import TimerFired
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

#: Baileys ``connectionClosed``: what a send on a closed socket fails with.
STATUS_CONNECTION_CLOSED = Status.CONNECTION_CLOSED
#: How often (virtual ms) a live fake socket shows a transport frame (Baileys' keepalive is 30 s).
DEFAULT_KEEPALIVE_MS = 30_000


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
        auth_dirs: Mapping[str, str | os.PathLike[str] | AuthDir] | None = None,
        boot_ms: int = 0,
        connect_ms: int = 5,
        ack_ms: int = 5,
        keepalive_ms: int | None = DEFAULT_KEEPALIVE_MS,
        start_ms: int = 0,
    ) -> None:
        if random is None:
            random = _random.Random(seed).random
        super().__init__(
            config,
            random=random,
            mapping=mapping,
            auth_dir=auth_dir,
            auth_dirs=auth_dirs,
            boot_ms=boot_ms,
        )
        if connect_ms < 0 or ack_ms < 0:
            raise ValueError("latencies must be >= 0")
        if keepalive_ms is not None and keepalive_ms < 1:
            raise ValueError(f"keepalive_ms must be >= 1 or None, got {keepalive_ms}")
        self.clock = VirtualClock(start_ms)
        self.scheduler = Scheduler(self.clock)
        self.channel = channel if channel is not None else FakeChannel()
        self.channel.attach(self)
        self.connect_ms = connect_ms
        #: ``connect_ms`` of one generation, ``(account, generation) -> ms``.
        self.connect_ms_of: dict[tuple[str, int], int] = {}
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
            self.now_ms() + self.boot_delay(account, generation),
            partial(self._booted, account, generation, attempt),
            key=("boot", account, attempt),
        )

    def _open(self, account: str, generation: int, attempt: int) -> None:
        self.scheduler.call_at(
            self.now_ms() + self.connect_ms_of.get((account, generation), self.connect_ms),
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
