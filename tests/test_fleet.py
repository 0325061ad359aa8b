"""Fleet members on a real redis-server and the loopback channel server (fencing on).

Two members share one Redis; the owner of an account dies or stalls, the other
adopts the account's journal and delivers the orphaned reply only through a
same-identity successor. The receiver's ledger is the ground truth.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

from heirline.adapters import fleet_worker
from heirline.adapters.channel import ChannelServer
from heirline.adapters.fleet import FleetConfig, FleetMember
from heirline.adapters.fleet_store import FleetStore
from heirline.adapters.transport import ChannelTransport, Transport, TransportCallbacks
from heirline.core.config import EngineConfig
from heirline.core.effects import LogLevel

PN, LID, E164 = "15550001111@s.whatsapp.net", "111222333444555@lid", "+15550001111"
OTHER = ("15559998888@s.whatsapp.net", "999888777666555@lid", "+15559998888")
CONFIG = EngineConfig(journal=True, external_registry=True, log_level=LogLevel.INFO)
LEASE = FleetConfig(ttl_ms=600, renew_ms=150, scan_ms=40)


class Gated:
    """A :class:`ChannelTransport` whose opens and sends wait for a gate (a stalled process)."""

    def __init__(self, port: int, callbacks: TransportCallbacks) -> None:
        self.inner = ChannelTransport(port, callbacks, keepalive_s=1.0)
        self.opens = asyncio.Event()
        self.sends = asyncio.Event()
        self.opens.set()
        self.sends.set()
        self.forwarded: list[tuple[str, int]] = []  # (message id, generation) sent on

    async def open(self, account: str, generation: int, attempt: int) -> None:
        await self.opens.wait()
        await self.inner.open(account, generation, attempt)

    async def send(self, account: str, generation: int, attempt: int, mid: str, *a: str) -> None:
        await self.sends.wait()
        self.forwarded.append((mid, generation))
        await self.inner.send(account, generation, attempt, mid, *a)

    async def close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        await self.inner.close(account, generation, attempt, status)

    async def aclose(self) -> None:
        self.opens.set()
        self.sends.set()
        await self.inner.aclose()


class Fleet:
    """The members of one test, their events (loop time, member, kind, account, detail)."""

    def __init__(self, server: ChannelServer, client: aioredis.Redis) -> None:
        self.server, self.client = server, client
        self.events: list[tuple[float, str, str, str, str]] = []
        self.gated: dict[str, Gated] = {}

    def member(self, owner: str, gated: bool = False, **kwargs: Any) -> FleetMember:
        loop = asyncio.get_running_loop()

        def hear(kind: str, account: str, detail: str) -> None:
            self.events.append((loop.time(), owner, kind, account, detail))

        transport: Callable[[TransportCallbacks], Transport] | None = None
        if gated:

            def transport(callbacks: TransportCallbacks) -> Transport:
                self.gated[owner] = Gated(self.server.port, callbacks)
                return self.gated[owner]

        store = FleetStore(self.client, CONFIG)
        member = FleetMember(
            store, owner, ["a"], self.server.port, CONFIG, kwargs.pop("lease", LEASE),
            on_event=hear, transport=transport, **kwargs,
        )  # fmt: skip
        member.start()
        return member

    def first(self, owner: str, kind: str) -> tuple[float, str]:
        for at, who, what, _, detail in self.events:
            if who == owner and what == kind:
                return at, detail
        raise AssertionError(f"{owner} never reported {kind}: {self.events}")


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll (bounded) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def run(redis_server: RedisServer, body: Callable[[Fleet], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
        await client.flushall()
        try:
            async with ChannelServer(fencing=True) as server:
                server.add_account("a", PN, LID, E164)
                return await asyncio.wait_for(body(Fleet(server, client)), 30)
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_one_owner_at_a_time_and_a_stop_hands_the_account_over(
    redis_server: RedisServer,
) -> None:
    async def body(fleet: Fleet) -> None:
        a = fleet.member("A")
        await until(lambda: a.serving() == ("a",))
        b = fleet.member("B")
        await asyncio.sleep(LEASE.ttl_ms * 3 / 1000)  # A renews: B never gets it
        assert b.gateways == {}
        assert await a.store.owner("a") == "A"
        assert len(a.renewals) >= 5
        await a.stop()  # hands over at once: B need not wait for the TTL
        stopped = asyncio.get_running_loop().time()
        await until(lambda: b.serving() == ("a",))
        taken, _ = fleet.first("B", "acquired")
        assert taken - stopped < LEASE.ttl_ms / 1000
        generation = b.gateways["a"].current["a"]
        assert generation == 2  # above A's generation 1: the fleet-wide token
        assert await b.store.token("a") == 2
        await b.stop()

    run(redis_server, body)


def test_an_orphan_in_flight_goes_out_through_the_same_identity_successor(
    redis_server: RedisServer,
) -> None:
    async def body(fleet: Fleet) -> None:
        a = fleet.member("A")
        await until(lambda: a.serving() == ("a",))
        b = fleet.member("B")
        await until(lambda: fleet.server.connection_count("a") == 1)
        fleet.server.half_open("a")  # what A sends now never arrives, no ack comes back
        assert await a.capture("a", "r1", "c@s.whatsapp.net", "hello")
        await until(lambda: "r1" in a.gateways["a"].engine.in_flight())
        died = asyncio.get_running_loop().time()
        await a.crash()  # as SIGKILL: Redis is not told, the lease runs out
        await until(lambda: "r1" in b.outcomes)
        outcome = b.outcomes["r1"]
        assert (outcome.outcome, outcome.via, outcome.generation) == ("delivered", "successor", 2)
        taken, detail = fleet.first("B", "acquired")
        assert detail == "token 1, 1 open replies"
        # the lease was last renewed at most renew_ms before A died
        earliest = (LEASE.ttl_ms - LEASE.renew_ms) / 1000 - 0.02
        assert earliest < taken - died < LEASE.ttl_ms / 1000 + 0.5
        ledger = fleet.server.ledger
        assert ledger.received(PN) == ("r1",)  # once, through the successor
        assert fleet.server.sends_by_token == {("a", 2): 1}
        assert ledger.summary().cross_identity == ()
        await b.stop()

    run(redis_server, body)


def test_an_orphan_fails_closed_when_the_successor_is_another_identity(
    redis_server: RedisServer,
) -> None:
    async def body(fleet: Fleet) -> None:
        a = fleet.member("A", gated=True)
        await until(lambda: a.serving() == ("a",))
        await until(lambda: fleet.server.connection_count("a") == 1)
        fleet.gated["A"].opens.clear()  # A's reconnects hang from now on
        fleet.server.close_account("a", 408)
        await until(lambda: not a.gateways["a"].sockets)
        b = fleet.member("B")
        # captured with the identity A's socket showed; it waits for a socket
        assert await a.capture("a", "r1", "c@s.whatsapp.net", "hello")
        assert a.gateways["a"].engine.reply_state("r1") is not None
        await a.crash()
        fleet.server.relink("a", *OTHER)  # the account is now another WhatsApp identity
        await until(lambda: "r1" in b.outcomes)
        outcome = b.outcomes["r1"]
        assert outcome.outcome == "refused"
        assert outcome.reason.startswith("successor generation 2: ")
        assert "identity" in outcome.reason, outcome.reason
        assert fleet.server.ledger.total == 0  # neither identity received anything
        assert fleet.server.ledger.received(OTHER[0]) == ()
        await b.stop()

    run(redis_server, body)


def test_a_stalled_owner_that_wakes_after_losing_its_lease_delivers_nothing(
    redis_server: RedisServer,
) -> None:
    async def body(fleet: Fleet) -> None:
        a = fleet.member("A", gated=True)
        await until(lambda: a.serving() == ("a",))
        await until(lambda: fleet.server.connection_count("a") == 1)
        gate = fleet.gated["A"]
        gate.sends.clear()  # A stalls between the journal write and the socket write
        assert await a.capture("a", "r1", "c@s.whatsapp.net", "hello")
        # ...and everything else in it stalls too: no renewal, no timer (a frozen process)
        for task in a._loops:
            task.cancel()
        gw = a.gateways["a"]
        assert gw._expiry is not None
        gw._expiry.cancel()
        b = fleet.member("B")
        await until(lambda: "r1" in b.outcomes)
        assert b.outcomes["r1"].outcome == "delivered"
        assert b.outcomes["r1"].generation == 2
        # A wakes. Its own clock says the lease is gone: nothing new goes out...
        assert not await a.capture("a", "r2", "c@s.whatsapp.net", "late")
        # ...but the send it had started wins the race against its expiry timer: only the
        # channel can stop that one, and it does (the token is stale)
        gate.sends.set()
        await until(lambda: len(fleet.server.fenced) == 1)
        gw._expired()  # the timer's turn: A gives the account up
        assert gate.forwarded == [("r1", 1)]
        fenced = fleet.server.fenced[0]
        assert (fenced.account, fenced.token, fenced.newest, fenced.message_id) == (
            "a", 1, 2, "r1",
        )  # fmt: skip
        assert fleet.server.sends_by_token == {("a", 2): 1}  # 0 copies from A's generation
        assert fleet.server.ledger.received(PN) == ("r1",)
        await until(lambda: any(e[1:3] == ("A", "lost") for e in fleet.events))
        _, why = fleet.first("A", "lost")
        assert "lease" in why
        await a.stop()
        await b.stop()

    run(redis_server, body)


def test_renewal_and_takeover_latency(redis_server: RedisServer) -> None:
    """Measured, for docs/fleet.md: renewal round trips and takeover after an owner dies."""

    async def body(fleet: Fleet) -> tuple[float, float]:
        a = fleet.member("A")
        await until(lambda: a.serving() == ("a",))
        b = fleet.member("B")
        await asyncio.sleep(1.0)
        died = asyncio.get_running_loop().time()
        await a.crash()
        await until(lambda: b.serving() == ("a",))
        taken, _ = fleet.first("B", "acquired")
        renew = statistics.median(a.renewals)
        await b.stop()
        return renew, taken - died

    renew_ms, takeover = run(redis_server, body)
    print(f"renewal p50 {renew_ms:.2f} ms; takeover {takeover * 1000:.0f} ms (TTL 600 ms)")
    assert renew_ms < 50
    assert (LEASE.ttl_ms - LEASE.renew_ms) / 1000 - 0.02 < takeover < 1.2


def test_an_account_whose_journal_cannot_be_read_is_not_adopted(
    redis_server: RedisServer,
) -> None:
    async def body(fleet: Fleet) -> None:
        await fleet.client.hset("heirline:{a}:journal", mapping={"meta": '{"format": 99}'})
        a = fleet.member("A")
        await until(lambda: "a" in a.refused)
        assert "format" in a.refused["a"]
        _, why = fleet.first("A", "refused")
        assert why == a.refused["a"]
        assert await a.store.owner("a") is None  # the lease is given back at once
        await asyncio.sleep(LEASE.scan_ms * 3 / 1000)
        assert a.gateways == {}  # never tried again by this member
        assert await a.store.token("a") == 0
        assert fleet.server.connection_count("a") == 0
        await a.stop()

    run(redis_server, body)


def test_the_worker_refuses_bad_arguments_with_usage_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--redis-port", "1", "--channel-port", "2", "--name", "g", "--accounts", "a"]
    with pytest.raises(SystemExit) as exit_:
        fleet_worker.main([*args, "--ttl-ms", "2"])
    assert exit_.value.code == 2
    assert "--ttl-ms >= 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        fleet_worker.main(args[:4])
    assert exit_.value.code == 2
    assert "--accounts" in capsys.readouterr().err


def test_a_member_needs_a_journaled_engine_with_an_external_registry() -> None:
    with pytest.raises(ValueError, match="external_registry=True"):
        FleetMember(
            FleetStore(aioredis.Redis(), EngineConfig(journal=True)), "A", ["a"], 1,
            EngineConfig(journal=True),
        )  # fmt: skip
    with pytest.raises(ValueError, match="renew_ms"):
        FleetConfig(ttl_ms=100, renew_ms=100)


def test_an_owner_cut_off_from_redis_stops_when_its_lease_runs_out_by_its_clock(
    redis_server: RedisServer,
) -> None:
    async def body(fleet: Fleet) -> None:
        a = fleet.member("A")
        await until(lambda: a.serving() == ("a",))
        await until(lambda: fleet.server.connection_count("a") == 1)
        redis_server.stop()  # nobody can tell A it lost the lease: only its own clock can
        try:
            cut = asyncio.get_running_loop().time()
            await until(lambda: any(e[1:3] == ("A", "lost") for e in fleet.events), 5)
            at, why = fleet.first("A", "lost")
            assert "lease expired" in why
            # it gave up no later than its lease would have run out in Redis
            assert at - cut <= LEASE.ttl_ms / 1000
            await until(lambda: fleet.server.connection_count("a") == 0)
            assert not await a.capture("a", "r1", "c@s.whatsapp.net", "too late")
        finally:
            redis_server.start()
        assert fleet.server.ledger.total == 0
        await a.stop()

    run(redis_server, body)
