"""The asyncio runtime: the engine on a real event loop, over a :class:`Transport`.

:class:`AsyncGateway` carries out the engine's effects exactly as the fake
runtime does (it shares :class:`~heirline.adapters.fake.GatewayBase`) but with
real time and real sockets:

* engine time is milliseconds since :meth:`AsyncGateway.start`, multiplied by
  ``speed`` (1 = real time; 20 = the compressed demo; at most :data:`MAX_SPEED`),
  so ``StartTimer`` deadlines become ``loop.call_at`` handles;
* ``OpenSocket`` / ``CloseSocket`` / ``Transmit`` become transport calls, run
  as tracked tasks; the transport's callbacks are fed back as events;
* every ``handle()`` runs on the loop thread, one at a time (the shared queue);
* the transport reports every frame it receives as activity, and carries out
  the close the engine's watchdog decides (status 499);
* :meth:`AsyncGateway.aclose` shuts the engine down (every open reply ends
  exactly once: failed before I/O, unknown after), closes every socket,
  cancels every timer and awaits every task, so nothing leaks.

With ``journal=FILE`` (``docs/durability.md``) the gateway is durable: ``start``
restores the journal (engine time resumes at the journal's clock), every step is
written before its effects are carried out, and ``aclose(end_replies=False)``
stops without ending anything, leaving the open replies to the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Self

from heirline.adapters.authdir import AuthDir
from heirline.adapters.durable import Durable, Restored, journaled
from heirline.adapters.gateway import GatewayBase
from heirline.adapters.script import At, ScriptTimeout, Until
from heirline.adapters.transport import ChannelTransport, Transport, TransportCallbacks
from heirline.core.effects import Effect, Transmit
from heirline.core.engine import EngineConfig
from heirline.core.events import Event, TimerFired
from heirline.core.identity import LidMapping
from heirline.core.journal import JournalError
from heirline.core.timers import Timer

__all__ = ["LOOP_RESOLUTION_MS", "MAX_SPEED", "MIN_SPEED", "AsyncGateway", "speed_problem"]

_log = logging.getLogger(__name__)

TransportFactory = Callable[[TransportCallbacks], Transport]

#: The event loop's timer resolution in real ms: epoll and kqueue wait in whole milliseconds,
#: so a timer can fire up to this late, and ``speed`` times as late in engine time.
LOOP_RESOLUTION_MS: Final = 1
#: The slowest speed: real time. Slower only stretches a run, and without a floor a tiny
#: speed makes every wait (timeout_ms / speed) practically endless.
MIN_SPEED: Final = 1.0
#: The fastest speed: one loop tick is then a second of engine time. Faster, the loop cannot
#: honour the engine's own second-scale timings (a retry after 2 s, jittered in ms).
MAX_SPEED: Final = 1000.0


def speed_problem(speed: float | int, maximum: float = MAX_SPEED) -> str | None:
    """What is wrong with ``speed`` (engine ms per real ms) for this runtime; None if nothing.

    ``maximum`` lets a caller whose script needs finer timing lower the ceiling.
    """
    if not math.isfinite(speed):
        return f"must be a finite number, got {speed}"
    if not MIN_SPEED <= speed <= maximum:
        return f"must be between {MIN_SPEED:g} (real time) and {maximum:g}, got {speed:g}"
    return None


class AsyncGateway(GatewayBase):
    """The engine driven on the running asyncio loop. Use ``async with``.

    ``transport_factory`` receives the gateway (its callbacks) and returns the
    :class:`Transport`; :meth:`over_channel` builds one for the loopback server.

    ``journal`` (a file path) makes it durable: the engine records its changes
    (``EngineConfig.journal`` is forced on), :meth:`start` restores what the file
    holds, and each step is written (``durability``: ``"process"`` or ``"power"``)
    before its effects are carried out. A write that fails stops the gateway
    taking events (:attr:`journal_failure`): its engine is ahead of its journal.
    """

    def __init__(
        self,
        transport_factory: TransportFactory,
        config: EngineConfig | None = None,
        *,
        random: Callable[[], float],
        mapping: LidMapping | None = None,
        auth_dir: dict[str, list[tuple[str, str]]] | None = None,
        auth_dirs: Mapping[str, str | os.PathLike[str] | AuthDir] | None = None,
        boot_ms: int = 0,
        speed: float | int = 1.0,
        shutdown_timeout: float = 5.0,
        journal: str | Path | None = None,
        durability: str = "process",
    ) -> None:
        problem = speed_problem(speed)
        if problem is not None:
            raise ValueError(f"speed {problem}")
        if journal is not None:
            config = journaled(config)
        super().__init__(
            config,
            random=random,
            mapping=mapping,
            auth_dir=auth_dir,
            auth_dirs=auth_dirs,
            boot_ms=boot_ms,
        )
        self._factory = transport_factory
        self.speed = speed
        self._shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._last_ms = 0
        self._transport: Transport | None = None
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._boots: dict[tuple[str, int], asyncio.TimerHandle] = {}  # (account, attempt)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: dict[tuple[str, int], int] = {}  # (account, attempt) -> generation
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._closing = False
        self.closed = False
        self._journal_path = journal
        self._durability = durability
        #: What :meth:`start` brought back from the journal (None without one).
        self.restored: Restored | None = None
        #: Why the journal could not be written (the gateway then takes no more events).
        self.journal_failure: JournalError | None = None
        self._detached = False

    @classmethod
    def over_channel(cls, port: int, config: EngineConfig | None = None, **kwargs: Any) -> Self:
        """A gateway over :class:`ChannelTransport` to the reference server on ``port``.

        The transport pings often enough to keep the engine's watchdog fed at
        ``speed`` (:meth:`ChannelTransport.keepalive_for`).
        """
        speed = float(kwargs.get("speed", 1.0))

        def transport(callbacks: TransportCallbacks) -> Transport:
            # Built when the gateway starts, after its constructor checked ``speed``.
            keepalive = ChannelTransport.keepalive_for(config, speed)
            return ChannelTransport(port, callbacks, keepalive_s=keepalive)

        return cls(transport, config, **kwargs)

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AsyncGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bind to the running loop; engine time 0 is now (with a journal: the journal's time).

        With a journal, the file is opened and restored first (a
        :class:`~heirline.core.journal.JournalError` if it cannot be used); the
        restore's effects (deadline timers, outcomes of replies that end now) are
        carried out. Time the process was down does not count: engine time goes on
        from the journal's clock (``docs/durability.md``).
        """
        if self._loop is not None:
            raise RuntimeError("gateway already started")
        restored: Restored | None = None
        effects: list[Effect] = []
        if self._journal_path is not None:
            durable = Durable.open(self._journal_path, self.engine.config, self._durability)
            try:
                restored, effects = durable.restore(self.engine)
            except JournalError:
                durable.close()
                raise
            self.durable = durable
            self.restored = restored
        self._loop = asyncio.get_running_loop()
        resumed = restored.now or 0 if restored is not None else 0
        self._t0 = self._loop.time() - resumed / 1000 / self.speed
        self._last_ms = resumed
        self._transport = self._factory(self)
        for effect in effects:
            self._carry_out(effect, resumed)
        self._changed()

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("gateway not started")
        return self._transport

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """Transport calls still running."""
        return frozenset(self._tasks)

    @property
    def pending_timers(self) -> frozenset[Timer]:
        """The engine timers armed on the loop and not fired or cancelled yet."""
        return frozenset(self._timers)

    @property
    def booting(self) -> frozenset[tuple[str, int]]:
        """Sockets ``(account, attempt)`` whose controller is still booting (not opened yet)."""
        return frozenset(self._boots)

    async def aclose(self, reason: str = "gateway shutdown", *, end_replies: bool = True) -> None:
        """Shut the engine down, close every socket, cancel timers, await every task.

        The engine's ``Shutdown`` ends every open reply exactly once (failed if
        no I/O started, unknown if it may have) and stops every controller.
        With a journal and ``end_replies=False`` nothing ends: the engine takes no
        more events (the sockets' closes are not reported to it), so the journal
        keeps every open reply as it was, for the next start -- as after a crash.
        """
        if self.closed or self._loop is None:
            self.closed = True
            self._close_journal()
            return
        if end_replies or self.durable is None:
            self.shutdown(reason)
        else:
            self._detached = True
        self._closing = True
        for handle in [*self._timers.values(), *self._boots.values()]:
            handle.cancel()
        self._timers.clear()
        self._boots.clear()
        transport = self.transport
        for (account, attempt), generation in sorted(self._sockets.items()):
            self._spawn(transport.close(account, generation, attempt, None))
        await self._drain_tasks()
        closer = getattr(transport, "aclose", None)
        if closer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closer(), self._shutdown_timeout)
        await self._drain_tasks()
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        self._waiters.clear()
        self.closed = True
        self._close_journal()

    def _close_journal(self) -> None:
        if self.durable is not None:
            self.durable.close()

    # ------------------------------------------------------------ the journal

    def feed(self, event: Event) -> None:
        """Report one fact (see :meth:`GatewayBase.feed`); a journal write failure stops it."""
        try:
            super().feed(event)
        except JournalError as err:
            self.journal_failure = err
            _log.error("journal write failed; the gateway takes no more events: %s", err)
            self.note(f"journal write failed: {err}")
            self._queue.clear()

    def _accepting(self) -> bool:
        return super()._accepting() and self.journal_failure is None and not self._detached

    async def _drain_tasks(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self._shutdown_timeout)
        for task in pending:  # pragma: no cover - a transport call ignored its close
            task.cancel()
        if pending:  # pragma: no cover
            await asyncio.wait(pending)

    # ------------------------------------------------------------ time

    def _engine_ms(self) -> int:
        assert self._loop is not None
        return int((self._loop.time() - self._t0) * 1000 * self.speed)

    def now_ms(self) -> int:
        """Engine time: ms since start x speed, never going backwards."""
        if self._loop is None:
            return self._last_ms
        self._last_ms = max(self._last_ms, self._engine_ms())
        return self._last_ms

    def loop_time(self, engine_ms: int) -> float:
        """The loop time at which engine time reaches ``engine_ms``."""
        return self._t0 + engine_ms / 1000 / self.speed

    async def run_until(self, ms: int) -> None:
        """Sleep until engine time ``ms``."""
        assert self._loop is not None
        delay = self.loop_time(ms) - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._last_ms = max(self._last_ms, ms)

    async def wait_until(self, predicate: Callable[[], bool], timeout_ms: int) -> bool:
        """Wait (at most ``timeout_ms`` engine ms) until ``predicate()`` holds after an event."""
        if predicate():
            return True
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            # asyncio.timeout, not wait_for: on 3.11, wait_for swallows a cancellation
            # (Ctrl-C) that lands as the future completes, and the run would carry on.
            async with asyncio.timeout(timeout_ms / 1000 / self.speed):
                await future
        except TimeoutError:
            return predicate()
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
        return True

    async def run(self, script: Iterable[At | Until]) -> None:
        """Run a scenario script (the same one :meth:`FakeGateway.run` takes)."""
        for step in script:
            if isinstance(step, At):
                await self.run_until(step.ms)
            elif not await self.wait_until(step.predicate, step.timeout_ms):
                raise ScriptTimeout(f"not reached within {step.timeout_ms} ms: {step.what}")

    def _changed(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate():
                future.set_result(None)

    # ------------------------------------------------------------ effects

    def _start_timer(self, timer: Timer, deadline_ms: int) -> None:
        if self._closing:
            return
        assert self._loop is not None
        old = self._timers.pop(timer, None)
        if old is not None:
            old.cancel()
        self._timers[timer] = self._loop.call_at(
            self.loop_time(deadline_ms), self._fire, timer, deadline_ms
        )

    def _fire(self, timer: Timer, deadline_ms: int) -> None:
        self._timers.pop(timer, None)
        self._last_ms = max(self._last_ms, deadline_ms)  # never report a timer early
        self.feed(TimerFired(timer=timer))

    def _cancel_timer(self, timer: Timer) -> None:
        handle = self._timers.pop(timer, None)
        if handle is not None:
            handle.cancel()

    def _boot(self, account: str, generation: int, attempt: int) -> None:
        if self._closing:
            return
        delay = self.boot_delay(account, generation)
        if delay == 0:
            self._booted(account, generation, attempt)
            return
        assert self._loop is not None
        self._boots[(account, attempt)] = self._loop.call_at(
            self.loop_time(self.now_ms() + delay),
            self._boot_due,
            account,
            generation,
            attempt,
        )

    def _boot_due(self, account: str, generation: int, attempt: int) -> None:
        del self._boots[(account, attempt)]
        self._booted(account, generation, attempt)

    def _open(self, account: str, generation: int, attempt: int) -> None:
        if self._closing:
            return
        self._sockets[(account, attempt)] = generation
        self._spawn(self.transport.open(account, generation, attempt))

    def _close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        boot = self._boots.pop((account, attempt), None)
        if boot is not None:  # closed before it ever reached the transport
            boot.cancel()
            self.on_close(account, generation, attempt, status)
            return
        self._spawn(self.transport.close(account, generation, attempt, status))

    def _transmit(self, effect: Transmit) -> None:
        if self._closing:
            self.on_send_failed(
                effect.account,
                effect.generation,
                effect.attempt,
                effect.message_id,
                False,
                "gateway closing",
            )
            return
        self._spawn(
            self.transport.send(
                effect.account,
                effect.generation,
                effect.attempt,
                effect.message_id,
                effect.chat,
                effect.kind,
                effect.payload,
            )
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        if self.closed:
            coro.close()
            return
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("transport call failed", exc_info=task.exception())
            self.note(f"transport call failed: {task.exception()!r}")

    # ------------------------------------------------------------ transport facts

    def on_close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        self._sockets.pop((account, attempt), None)
        super().on_close(account, generation, attempt, status)
