"""The Redis layout of a fleet, against a real redis-server: leases, tokens, journals."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

from heirline.adapters.fleet_store import FleetStore, WriteRefused, keys
from heirline.core.config import EngineConfig
from heirline.core.journal import AccountRecord, Changes, EndedRecord, JournalError, ReplyRecord

T = TypeVar("T")
CONFIG = EngineConfig(journal=True, external_registry=True, remember_ended=3)


def run(server: RedisServer, body: Any) -> Any:
    """Run ``body(store, client)`` on a fresh loop against an emptied server."""

    async def main() -> Any:
        client = aioredis.Redis(host="127.0.0.1", port=server.port)
        try:
            await client.flushall()
            return await asyncio.wait_for(body(FleetStore(client, CONFIG), client), 20)
        finally:
            await client.aclose()

    return asyncio.run(main())


def reply(rid: str, account: str = "a", transmissions: int = 0) -> ReplyRecord:
    return ReplyRecord(
        reply_id=rid, account=account, origin=1, chat="c@s.whatsapp.net", kind="text",
        message_id=rid, deadline_ms=1000, pn="1555@s.whatsapp.net", lid=None, e164=None,
        payload="hi", transmissions=transmissions, io_started=False, sent=(), in_flight=False,
    )  # fmt: skip


def ended(rid: str) -> EndedRecord:
    return EndedRecord(rid, "a", "delivered", rid, ((1, 1),), 1)


def changes(*records: object, now: int = 5) -> Changes:
    return Changes(
        now,
        tuple(r for r in records if isinstance(r, AccountRecord)),
        tuple(r for r in records if isinstance(r, ReplyRecord)),
        tuple(r for r in records if isinstance(r, EndedRecord)),
        (),
    )


def test_keys_of_an_account_share_one_hash_tag() -> None:
    ks = keys("acct:1")
    assert ks == (
        "heirline:{acct:1}:lease",
        "heirline:{acct:1}:token",
        "heirline:{acct:1}:journal",
        "heirline:{acct:1}:ended",
    )
    # Redis Cluster hashes only what is between the first "{" and the next "}".
    assert {k[k.index("{") + 1 : k.index("}")] for k in ks} == {"acct:1"}


def test_a_lease_is_taken_once_renewed_by_its_owner_only_and_expires(
    redis_server: RedisServer,
) -> None:
    async def body(store: FleetStore, client: aioredis.Redis) -> None:
        assert await store.acquire("a", "p1", 300)
        assert not await store.acquire("a", "p2", 300)  # held: no steal while it lives
        assert await store.owner("a") == "p1"
        assert not await store.renew("a", "p2", 300)  # a non-owner cannot extend it
        assert await store.renew("a", "p1", 300)
        ttl = await client.pttl(keys("a")[0])
        assert 200 < ttl <= 300
        assert not await store.release("a", "p2")  # nor delete it
        assert await store.owner("a") == "p1"
        await asyncio.sleep(0.45)  # p1 stops renewing: the TTL runs out
        assert await store.owner("a") is None
        assert not await store.renew("a", "p1", 300)  # too late to renew
        assert await store.acquire("a", "p2", 300)  # the next owner takes it
        assert not await store.release("a", "p1")
        assert await store.release("a", "p2")
        assert await store.owner("a") is None

    run(redis_server, body)


def test_the_token_only_grows_and_only_for_the_lease_holder(redis_server: RedisServer) -> None:
    async def body(store: FleetStore, client: aioredis.Redis) -> None:
        assert await store.token("a") == 0
        with pytest.raises(WriteRefused, match="lease lost"):
            await store.grant("a", "p1", 1)  # no lease, no token
        assert await store.acquire("a", "p1", 5000)
        await store.grant("a", "p1", 1)
        await store.grant("a", "p1", 4)
        for stale in (4, 3, 0):
            with pytest.raises(WriteRefused, match="not above token 4"):
                await store.grant("a", "p1", stale)
        with pytest.raises(WriteRefused, match="lease lost"):
            await store.grant("a", "p2", 9)
        assert await store.token("a") == 4

    run(redis_server, body)


def test_a_journal_write_needs_the_lease_and_the_token(redis_server: RedisServer) -> None:
    async def body(store: FleetStore, client: aioredis.Redis) -> None:
        step = changes(AccountRecord("a", 1, 1), reply("r1"))
        with pytest.raises(WriteRefused, match="lease lost"):
            await store.write("a", "p1", 0, step)
        assert await client.exists(keys("a")[2]) == 0  # nothing written
        assert await store.acquire("a", "p1", 5000)
        await store.write("a", "p1", 0, step)
        await store.grant("a", "p1", 1)
        with pytest.raises(WriteRefused, match="token is 1, not 0"):
            await store.write("a", "p1", 0, changes(reply("r2")))  # an older grant's writer
        await store.write("a", "p1", 1, changes(reply("r2"), now=9))
        loaded = await store.load("a")
        assert loaded.token == 1
        assert loaded.snapshot.now == 9
        assert loaded.snapshot.accounts == (AccountRecord("a", 1, 1),)
        assert sorted(r.reply_id for r in loaded.snapshot.replies) == ["r1", "r2"]

    run(redis_server, body)


def test_ended_replies_leave_the_open_set_and_are_bounded(redis_server: RedisServer) -> None:
    async def body(store: FleetStore, client: aioredis.Redis) -> None:
        assert await store.acquire("a", "p1", 5000)
        await store.write("a", "p1", 0, changes(*(reply(f"r{i}") for i in range(5))))
        for i in range(5):
            await store.write("a", "p1", 0, changes(ended(f"r{i}")))
        snap = (await store.load("a")).snapshot
        assert snap.replies == ()
        # remember_ended=3: the three newest, oldest first (the order the engine remembers)
        assert [e.reply_id for e in snap.ended] == ["r2", "r3", "r4"]
        assert await client.hlen(keys("a")[2]) == 2 + 3  # meta, now, three ended

    run(redis_server, body)


def test_a_foreign_or_corrupt_journal_is_refused_with_its_reason(
    redis_server: RedisServer,
) -> None:
    async def body(store: FleetStore, client: aioredis.Redis) -> None:
        assert (await store.load("a")).snapshot.replies == ()  # no journal: a new account
        assert await store.acquire("a", "p1", 5000)
        await store.write("a", "p1", 0, changes(reply("r1")))
        other = FleetStore(client, EngineConfig(journal=True, max_transmissions=2))
        with pytest.raises(JournalError, match="another configuration"):
            await other.load("a")
        await client.hset(keys("a")[2], "reply:r1", "{not json")
        with pytest.raises(JournalError, match="corrupt record"):
            await store.load("a")
        await client.hset(keys("a")[2], "reply:r1", '{"record": "reply"}')
        with pytest.raises(JournalError, match="missing fields"):
            await store.load("a")
        await client.hset(keys("a")[2], "meta", '{"format": 99}')
        with pytest.raises(JournalError, match="format"):
            await store.load("a")

    run(redis_server, body)
