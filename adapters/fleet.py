"""A fleet member: accounts move between gateway processes through leases in Redis.

A :class:`FleetMember` (asyncio) serves accounts it holds a lease for
(:mod:`heirline.adapters.fleet_store`). It looks for free accounts, takes the
lease, reads the account's journal and restores it into an engine of its own
(one engine per account: :class:`AccountGateway`), and starts a successor
generation numbered above the fleet-wide token. The core then does what it
does after any restart: a reply the dead owner left behind goes out through
the successor only if the successor is logged in as the identity captured with
it, else it fails closed with a reason.

Every step of an account's engine is written to Redis (conditioned on the
lease and the token) *before* its effects are carried out; a registration
(``RegisterRequest``) becomes the token grant. The member renews its leases
while it is healthy. The moment a lease is gone -- a renewal or a write
refused, or the lease's TTL passed by the member's own monotonic clock -- the
account is released in the engine (sockets closed, replies left to the next
owner) and nothing more is transmitted for it. A transmission a paused process
had already started is refused by the channel, which fences on the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

from redis.exceptions import RedisError

from heirline.adapters.aio import AsyncGateway, TransportFactory
from heirline.adapters.fleet_store import Adopted, FleetStore, WriteRefused
from heirline.adapters.gateway import ReplyOutcome
from heirline.adapters.transport import ChannelTransport, Transport, TransportCallbacks
from heirline.core.config import EngineConfig
from heirline.core.effects import Effect, RegisterRequest, Rejected
from heirline.core.events import Event, RegistryAnswer, ReplyCaptured, ReplyReady, Start
from heirline.core.journal import AccountRecord, Changes, JournalError

__all__ = ["EPOCH_MS", "AccountGateway", "FleetConfig", "FleetMember"]

_log = logging.getLogger(__name__)

#: How many reply outcomes a member keeps for inspection (``on_event`` hears every one).
OUTCOMES_KEPT: Final = 10_000

#: Engine time in a fleet is wall-clock ms since this instant (2026-01-01T00:00:00Z), so
#: a reply's deadline means the same instant in every process that adopts it.
EPOCH_MS: Final = 1_767_225_600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """How a member holds leases. ``margin`` is the share of the TTL a member gives up
    against clock-rate drift: it treats a lease as gone at ``sent + ttl * (1 - margin)``."""

    ttl_ms: int = 3_000
    renew_ms: int = 1_000
    scan_ms: int = 250
    margin: float = 0.1
    max_accounts: int | None = None
    retry_ms: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.renew_ms < self.ttl_ms:
            raise ValueError(f"renew_ms must be in 1..ttl_ms-1, got {self.renew_ms}")
        if self.scan_ms < 1 or self.retry_ms < 1:
            raise ValueError("scan_ms and retry_ms must be >= 1")
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        if self.max_accounts is not None and self.max_accounts < 0:
            raise ValueError("max_accounts must be >= 0")


class AccountGateway(AsyncGateway):
    """The engine of one account a member holds; every step is journaled before its effects.

    ``feed`` only queues; a driver task handles the queue one event at a time:
    ``handle``, write the step's changes to Redis, check the lease, carry out
    the effects, then turn each ``RegisterRequest`` into a token grant.
    """

    def __init__(
        self,
        member: FleetMember,
        account: str,
        transport_factory: TransportFactory,
        config: EngineConfig,
        *,
        random: Callable[[], float],
    ) -> None:
        super().__init__(transport_factory, config, random=random)
        self.account = account
        self.fence = 0  # the token this owner was last granted (or found)
        self.valid_until = 0.0  # loop time at which the lease is gone by our own clock
        self._expiry: asyncio.TimerHandle | None = None
        self.lost: str | None = None
        self._member = member
        self._wake = asyncio.Event()
        self._grants: list[RegisterRequest] = []
        # What the driver handles next: batches of events, each with a future or None.
        self._batches: deque[tuple[tuple[Event, ...], asyncio.Future[bool] | None]] = deque()
        self._driver: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        # Engine time: wall-clock ms since EPOCH_MS, running on the loop's monotonic clock.
        self._t0 -= (time.time() * 1000 - EPOCH_MS) / 1000
        self._driver = asyncio.get_running_loop().create_task(
            self._drive(), name=f"heirline-fleet-{self.account}"
        )

    def holding(self) -> bool:
        """Whether the lease is still ours by this process's own monotonic clock."""
        return self.lost is None and asyncio.get_running_loop().time() < self.valid_until

    def extend(self, until: float) -> None:
        """The lease is ours until loop time ``until``; then, unless extended again, the
        account is given up -- by a timer, whatever Redis calls are hanging meanwhile."""
        if self.lost is not None or until <= self.valid_until:
            return
        self.valid_until = until
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_at(until, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if self.lost is None and not self.holding():
            self.lose("lease expired by this process's clock (no renewal in time)")

    async def adopt(self, adopted: Adopted) -> bool:
        """Restore the account's journal; the next generation is above the fleet token.

        What the restore itself changed (a reply of a kind never resent that was in
        flight ends now) is written before its outcome is reported. False: the
        account was lost meanwhile."""
        snap = adopted.snapshot
        attempt = max((a.attempt for a in snap.accounts), default=0)
        now = max(snap.now or 0, self.now_ms())
        self._last_ms = now  # engine time never goes back, even if the writer's clock ran ahead
        counters = (AccountRecord(self.account, adopted.floor, attempt),)
        snap = dataclasses.replace(snap, now=now, accounts=counters)
        self.fence = adopted.token
        effects = self.engine.restore(snap)
        changes = self.engine.take_changes()
        if not changes.empty and not await self._write(changes):
            return False
        for effect in effects:
            self._carry_out(effect, now)
        return True

    # ------------------------------------------------------------ feeding

    def _accepting(self) -> bool:
        return self.lost is None and not self.engine.shut_down

    def feed(self, event: Event) -> None:
        if self._accepting():
            self._batches.append(((event,), None))
            self._wake.set()

    def step(self, *events: Event) -> asyncio.Future[bool]:
        """Feed ``events`` as one step: handled one after the other, their changes
        written to Redis in one script, then their effects carried out. The future is
        True once that is done, False if the engine refused one of them or the
        account was lost first (then nothing of the step is in Redis)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if not self._accepting():
            future.set_result(False)
        else:
            self._batches.append((events, future))
            self._wake.set()
        return future

    async def _drive(self) -> None:
        while self._accepting():  # bounded by the account's tenure
            await self._wake.wait()
            self._wake.clear()
            while self._batches and self._accepting():
                await self._one(*self._batches.popleft())
            self._changed()
        for _, future in self._batches:
            if future is not None and not future.done():
                future.set_result(False)
        self._batches.clear()

    async def _one(self, events: tuple[Event, ...], future: asyncio.Future[bool] | None) -> None:
        now = self.now_ms()
        effects = [e for event in events for e in self.engine.handle(event, now)]
        changes = self.engine.take_changes()
        if not changes.empty and not await self._write(changes):
            if future is not None and not future.done():
                future.set_result(False)
            return
        if not self.holding():
            self.lose("lease expired by this process's clock")
            if future is not None and not future.done():
                future.set_result(False)
            return
        for effect in effects:
            self._carry_out(effect, now)
        if future is not None and not future.done():
            future.set_result(not any(isinstance(e, Rejected) for e in effects))
        grants, self._grants = self._grants, []
        for request in grants:
            await self._grant(request)

    async def _write(self, changes: Changes) -> bool:
        store, owner = self._member.store, self._member.owner
        for _ in range(10_000):  # bounded by the lease: it runs out long before
            if not self.holding():
                self.lose("lease expired while Redis could not be written")
                return False
            try:
                await store.write(self.account, owner, self.fence, changes)
                return True
            except WriteRefused as refused:
                self.lose(f"journal write refused: {refused}")
                return False
            except RedisError as err:
                _log.warning("journal write of %s failed, retrying: %r", self.account, err)
                await asyncio.sleep(self._member.config.retry_ms / 1000)
        self.lose("journal write kept failing")  # pragma: no cover
        return False

    async def _grant(self, request: RegisterRequest) -> None:
        if not self.holding():
            self.lose("lease expired before the grant")
            return
        try:
            await self._member.store.grant(self.account, self._member.owner, request.generation)
        except (WriteRefused, RedisError) as err:
            self.lose(f"token grant refused: {err}")
            return
        self.fence = request.generation
        self.feed(RegistryAnswer(account=self.account, generation=request.generation, granted=True))

    def _carry_out(self, effect: Effect, now: int) -> None:
        if isinstance(effect, RegisterRequest):
            self._grants.append(effect)
        else:
            super()._carry_out(effect, now)

    def _ended(self, outcome: ReplyOutcome) -> None:
        super()._ended(outcome)
        self._member.on_outcome(self.account, outcome)

    # ------------------------------------------------------------ giving up

    def lose(self, reason: str) -> None:
        """The lease is gone: stop at once, close the sockets, leave the replies to the next
        owner (they are in Redis as of the last write; nothing after it is written)."""
        if self.lost is not None:
            return
        self.lost = reason
        self._batches.clear()
        self._wake.set()
        if self._expiry is not None:
            self._expiry.cancel()
        now = self.now_ms()
        for effect in self.engine.release(self.account, reason):
            super()._carry_out(effect, now)
        self._member.on_lost(self.account, reason)

    def abandon(self, reason: str) -> None:
        """Stop without releasing anything, as a killed process would (for tests)."""
        self.lost = reason
        self._batches.clear()
        self._wake.set()
        if self._expiry is not None:
            self._expiry.cancel()

    async def aclose(self, reason: str = "gateway shutdown", *, end_replies: bool = True) -> None:
        """Give the account up (:meth:`lose`) and close: the engine ends no reply here,
        whatever ``end_replies`` says -- the replies belong to the next owner."""
        self.lose(reason)
        driver = self._driver
        if driver is not None and driver is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        await super().aclose(reason, end_replies=end_replies)


class FleetMember:
    """One gateway process of a fleet. ``async with FleetMember(...) as member:``.

    ``accounts`` are the accounts this member may serve (every member of a fleet
    usually gets the same list); it takes free ones up to ``max_accounts``.
    ``on_event`` hears ``(kind, account, detail)`` for acquired / lost /
    released / outcome, for logs and tests.
    """

    def __init__(
        self,
        store: FleetStore,
        owner: str,
        accounts: Iterable[str],
        channel_port: int,
        engine_config: EngineConfig,
        config: FleetConfig | None = None,
        *,
        seed: int = 0,
        on_event: Callable[[str, str, str], None] | None = None,
        transport: Callable[[TransportCallbacks], Transport] | None = None,
    ) -> None:
        if not (engine_config.journal and engine_config.external_registry):
            need = "EngineConfig(journal=True, external_registry=True)"
            raise ValueError(f"a fleet member needs {need}")
        self.store = store
        self.owner = owner
        self.accounts = tuple(accounts)
        self.config = config if config is not None else FleetConfig()
        self.engine_config = engine_config
        self.gateways: dict[str, AccountGateway] = {}
        #: The newest outcomes reported here (at most ``OUTCOMES_KEPT``), by reply id.
        self.outcomes: dict[str, ReplyOutcome] = {}
        self.refused: dict[str, str] = {}  # accounts whose journal this member cannot adopt
        self._port = channel_port
        self._transport = transport
        self._rng = random.Random(f"heirline-fleet:{owner}:{seed}")
        self._on_event = on_event
        #: Round trips (ms) of the lease renewals that succeeded, newest last (bounded).
        self.renewals: deque[float] = deque(maxlen=10_000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    async def __aenter__(self) -> FleetMember:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        """Start looking for accounts and renewing leases (two tasks: a slow adoption
        never holds a renewal up)."""
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._renewing(), name=f"heirline-fleet-renew-{self.owner}"),
            loop.create_task(self._scanning(), name=f"heirline-fleet-scan-{self.owner}"),
        ]

    def _emit(self, kind: str, account: str, detail: str = "") -> None:
        if self._on_event is not None:
            self._on_event(kind, account, detail)

    # ------------------------------------------------------------ the host's side

    async def capture(self, account: str, reply_id: str, chat: str, payload: str) -> bool:
        """Capture a reply on the account's current generation; True once it is journaled
        (then it survives this process), False if the account is not served here (yet)."""
        gw = self.gateways.get(account)
        generation = None if gw is None else gw.current.get(account)
        if gw is None or generation is None or not gw.holding():
            return False
        captured = ReplyCaptured(
            reply_id=reply_id, account=account, generation=generation, chat=chat,
            message_id=reply_id,
        )  # fmt: skip
        # one step: the reply is in Redis with its content, or not at all
        return await gw.step(captured, ReplyReady(reply_id=reply_id, payload=payload))

    def serving(self) -> tuple[str, ...]:
        """Accounts whose current generation is registered here and has an open socket (a
        reply answers a message that arrived on one), sorted."""
        return tuple(
            sorted(
                account
                for account, gw in self.gateways.items()
                if gw.current.get(account) is not None
                and (gw.current_socket(account) or (None,))[0] == gw.current[account]
            )
        )

    def on_outcome(self, account: str, outcome: ReplyOutcome) -> None:
        self.outcomes[outcome.reply_id] = outcome
        if len(self.outcomes) > OUTCOMES_KEPT:  # a member runs for months: keep it bounded
            del self.outcomes[next(iter(self.outcomes))]
        self._emit("outcome", account, f"{outcome.reply_id} {outcome.outcome}: {outcome.reason}")

    def on_lost(self, account: str, reason: str) -> None:
        gw = self.gateways.pop(account, None)
        self._emit("lost", account, reason)
        if gw is not None:
            self._spawn(gw.aclose(reason))

    # ------------------------------------------------------------ leases

    async def _renewing(self) -> None:
        while not self._stopping:  # bounded by the member's life
            await self._renew_all()
            await asyncio.sleep(self.config.renew_ms / 1000)

    async def _scanning(self) -> None:
        while not self._stopping:  # bounded by the member's life
            await self._scan()
            await asyncio.sleep(self.config.scan_ms / 1000)

    async def _renew_all(self) -> None:
        """Renew every lease held, in one round trip; lose those refused or run out."""
        loop = asyncio.get_running_loop()
        held = list(self.gateways.items())
        sent = loop.time()
        try:
            answers = await self.store.renew_many(
                [a for a, _ in held], self.owner, self.config.ttl_ms
            )
        except RedisError as err:
            for _, gw in held:
                if not gw.holding():
                    gw.lose(f"lease expired: Redis unreachable ({err!r})")
            return
        if held:
            self.renewals.append((loop.time() - sent) * 1000)
        for (_, gw), renewed in zip(held, answers, strict=True):
            if not renewed:
                gw.lose("lease renewal refused: another owner holds it, or it expired")
            elif gw.lost is None:
                gw.extend(sent + self._tenure())

    def _tenure(self) -> float:
        """Seconds a lease counts as ours after the command that set it was sent."""
        return self.config.ttl_ms * (1 - self.config.margin) / 1000

    async def _scan(self) -> None:
        """Take free accounts up to ``max_accounts``: one round trip finds the unleased ones,
        then each is taken (``SET NX``) and adopted, the adoptions side by side."""
        limit = self.config.max_accounts
        room = len(self.accounts) if limit is None else limit - len(self.gateways)
        mine = [a for a in self.accounts if a not in self.gateways and a not in self.refused]
        if room <= 0 or not mine:
            return
        loop = asyncio.get_running_loop()
        try:
            free = await self.store.unleased(mine)
        except RedisError as err:
            _log.warning("cannot reach Redis to look for accounts: %r", err)
            return
        self._rng.shuffle(free)
        adoptions = []
        for account in free[:room]:
            sent = loop.time()
            try:
                acquired = await self.store.acquire(account, self.owner, self.config.ttl_ms)
            except RedisError as err:
                _log.warning("cannot reach Redis to acquire %s: %r", account, err)
                break
            if acquired:
                adoptions.append(self._adopt(account, sent))
        await asyncio.gather(*adoptions)

    async def _adopt(self, account: str, sent: float) -> None:
        try:
            adopted = await self.store.load(account)
        except JournalError as err:  # fail closed: never guess at a journal
            self.refused[account] = str(err)
            self._emit("refused", account, str(err))
            with contextlib.suppress(RedisError):
                await self.store.release(account, self.owner)
            return
        except RedisError as err:
            _log.warning("cannot read the journal of %s: %r", account, err)
            return  # the lease runs out; someone (maybe us) tries again
        gw = AccountGateway(
            self, account, self._factory(), self.engine_config, random=self._rng.random
        )
        await gw.start()
        gw.extend(sent + self._tenure())
        self.gateways[account] = gw
        if not await gw.adopt(adopted):
            return  # lost while adopting: on_lost closed it
        open_ = len(adopted.snapshot.replies)
        self._emit("acquired", account, f"token {adopted.token}, {open_} open replies")
        gw.feed(Start(account=account))

    def _factory(self) -> TransportFactory:
        if self._transport is not None:
            return self._transport
        port = self._port
        keepalive = ChannelTransport.keepalive_for(self.engine_config, 1.0)
        return lambda callbacks: ChannelTransport(port, callbacks, keepalive_s=keepalive)

    # ------------------------------------------------------------ stopping

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Hand every account over: release it in its engine (its replies stay in Redis for
        the next owner), close its sockets, then give the lease up."""
        await self._stop_loops()
        for account, gw in list(self.gateways.items()):
            await gw.aclose("member stopping")
            with contextlib.suppress(RedisError):
                await self.store.release(account, self.owner)
            self._emit("released", account)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)

    async def crash(self) -> None:
        """Stop as a killed process would, for tests: sockets drop, Redis is not told."""
        await self._stop_loops()
        gateways = list(self.gateways.values())
        self.gateways.clear()
        for gw in gateways:
            gw.abandon("crashed")
        for gw in gateways:
            await gw.aclose("crashed")

    async def _stop_loops(self) -> None:
        self._stopping = True
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
