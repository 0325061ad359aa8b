"""The loopback reference channel server and the TCP ChannelTransport, over real sockets.

Every test runs its own event loop through ``asyncio.run`` with an overall
timeout, and every await that could hang is bounded by ``asyncio.wait_for``.
The harness checks that no task outlives the server and the transport.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from heirline.adapters.channel import (
    ChannelServer,
    ChaosAction,
    ChaosConfig,
    ChaosDecider,
    Identity,
    Ledger,
    SendChaos,
)
from heirline.adapters.transport import (
    DEFAULT_KEEPALIVE_S,
    ChannelTransport,
    Transport,
    TransportCallbacks,
)
from heirline.core.engine import EngineConfig
from heirline.core.lifecycle import LifecycleConfig

PN = "15550001@s.whatsapp.net"
LID = "111111@lid"
E164 = "+15550001"
OTHER = ("15559999@s.whatsapp.net", "999999@lid", "+15559999")
WAIT = 5.0

Body = Callable[[ChannelServer, ChannelTransport, "Recorder"], Awaitable[None]]


class Recorder:
    """TransportCallbacks that keep every call and let a test wait for one."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def _add(self, call: tuple[Any, ...]) -> None:
        self.calls.append(call)
        self._changed.set()

    def on_open(
        self,
        account: str,
        generation: int,
        attempt: int,
        pn: str | None,
        lid: str | None,
        e164: str | None,
    ) -> None:
        self._add(("open", account, generation, attempt, pn, lid, e164))

    def on_close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        self._add(("close", account, generation, attempt, status))

    def on_activity(self, account: str, generation: int, attempt: int) -> None:
        self._add(("activity", account, generation, attempt))

    def on_ack(self, account: str, generation: int, attempt: int, message_id: str) -> None:
        self._add(("ack", account, generation, attempt, message_id))

    def on_send_failed(
        self,
        account: str,
        generation: int,
        attempt: int,
        message_id: str,
        io_started: bool,
        error: str,
    ) -> None:
        self._add(("failed", account, generation, attempt, message_id, io_started, error))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == kind]

    async def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async def _until() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_until(), timeout)


def run(body: Body, keepalive_s: float | None = None, **server_options: Any) -> None:
    """Run ``body`` against a fresh server (account ``a`` registered) and transport.

    The transport pings only when ``keepalive_s`` is given, so that most tests see
    exactly the frames they provoke.
    """

    async def main() -> None:
        before = asyncio.all_tasks()
        async with ChannelServer(**server_options) as server:
            server.add_account("a", PN, LID, E164)
            recorder = Recorder()
            transport = ChannelTransport(server.port, recorder, keepalive_s=keepalive_s)
            async with transport:
                await body(server, transport, recorder)
            assert transport.sockets == ()
        assert asyncio.all_tasks() == before, "a task outlived the server or the transport"

    asyncio.run(asyncio.wait_for(main(), 30))


async def opened(
    transport: ChannelTransport, rec: Recorder, account: str, generation: int, attempt: int
) -> None:
    """Open socket ``(account, attempt)`` of ``generation`` and wait until it is logged in."""
    await transport.open(account, generation, attempt)
    await rec.wait(lambda: any(c[1:4] == (account, generation, attempt) for c in rec.of("open")))


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a server-side fact (bounded in count and time)."""
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


# --------------------------------------------------------------------------- login, send, ack


def test_the_transports_satisfy_their_protocols() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        assert isinstance(transport, Transport)
        assert isinstance(rec, TransportCallbacks)

    run(body)


def test_login_reports_the_account_identity() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        assert rec.of("open") == [("open", "a", 1, 1, PN, LID, E164)]
        assert transport.is_open("a", 1)
        assert transport.sockets == (("a", 1),)
        assert server.connection_count("a") == 1
        assert server.identity_of("a") == Identity(PN, LID, E164)

    run(body)


def test_send_is_acked_and_recorded_under_the_logged_in_identity() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "123@g.us", "text", "hello")
        await rec.wait(lambda: bool(rec.of("ack")))
        assert rec.of("ack") == [("ack", "a", 1, 1, "m1")]
        # the ack is a frame: it is reported as activity of that socket, before the ack
        assert rec.of("activity") == [("activity", "a", 1, 1)]
        assert rec.calls.index(("activity", "a", 1, 1)) < rec.calls.index(rec.of("ack")[0])
        identity = Identity(PN, LID, E164)
        assert server.ledger.received(identity) == ("m1",)
        assert server.ledger.received(E164) == ("m1",)
        assert server.ledger.received(OTHER[0]) == ()
        (entry,) = server.ledger.entries(LID)
        assert (entry.account, entry.chat, entry.kind, entry.payload) == (
            "a",
            "123@g.us",
            "text",
            "hello",
        )

    run(body)


def test_a_repeated_message_id_is_acked_twice_but_recorded_once() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await rec.wait(lambda: len(rec.of("ack")) == 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await rec.wait(lambda: len(rec.of("ack")) == 2)
        assert server.ledger.received(PN) == ("m1",)
        summary = server.ledger.summary()
        assert summary.total == 1
        assert summary.duplicates_suppressed == 1
        assert summary.identities[0].duplicates_suppressed == 1
        assert summary.cross_identity == ()

    run(body)


def test_ledger_reports_a_message_id_received_by_two_identities() -> None:
    ledger = Ledger()
    first, second = Identity(PN, LID, E164), Identity(*OTHER)
    assert ledger.record(first, "a", "m1", "c", "text", "")
    assert ledger.record(second, "a", "m1", "c", "text", "")
    assert not ledger.record(second, "a", "m1", "c", "text", "")
    assert ledger.summary().cross_identity == ("m1",)
    assert ledger.holders("m1") == (first, second)
    assert ledger.total == 2
    assert ledger.duplicates_suppressed == 1
    assert str(first) == f"{PN} / {LID} / {E164}"
    assert str(Identity()) == "(unauthenticated)"


# --------------------------------------------------------------------------- closes and relinks


def test_close_account_with_408_reaches_the_client_as_on_close_408() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        assert server.close_account("a", 408) == 1
        await rec.wait(lambda: bool(rec.of("close")))
        assert rec.of("close") == [("close", "a", 1, 1, 408)]
        assert rec.of("activity") == []  # the close frame is not a sign of life
        assert not transport.is_open("a", 1)
        assert server.connection_count() == 0

    run(body)


def test_relink_changes_the_identity_of_the_next_login_and_of_the_ledger() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "before")
        await rec.wait(lambda: bool(rec.of("ack")))
        assert server.relink("a", *OTHER) == 1
        await rec.wait(lambda: bool(rec.of("close")))
        assert rec.of("close") == [("close", "a", 1, 1, 401)]
        await opened(transport, rec, "a", 2, 2)
        assert rec.of("open")[-1] == ("open", "a", 2, 2, *OTHER)
        await transport.send("a", 2, 2, "m2", "c@g.us", "text", "after")
        await rec.wait(lambda: len(rec.of("ack")) == 2)
        assert server.ledger.received(Identity(*OTHER)) == ("m2",)
        assert server.ledger.received(Identity(PN, LID, E164)) == ("m1",)

    run(body)


def test_logout_refuses_the_next_login_with_401() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        assert server.logout("a") == 1
        await rec.wait(lambda: len(rec.of("close")) == 1)
        await transport.open("a", 1, 2)  # the same generation retries on a fresh socket
        await rec.wait(lambda: len(rec.of("close")) == 2)
        assert rec.of("close") == [("close", "a", 1, 1, 401), ("close", "a", 1, 2, 401)]
        assert len(rec.of("open")) == 1
        assert server.identity_of("a") is None
        server.add_account("a", PN, LID, E164)  # linked again
        await opened(transport, rec, "a", 2, 3)

    run(body)


def test_unknown_account_is_refused_with_401() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await transport.open("nobody", 1, 1)
        await rec.wait(lambda: bool(rec.of("close")))
        assert rec.of("close") == [("close", "nobody", 1, 1, 401)]
        with pytest.raises(KeyError, match="nobody"):
            server.close_account("nobody", 408)

    run(body)


def test_replace_on_login_closes_the_older_connection_with_440() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await opened(transport, rec, "a", 2, 2)
        await rec.wait(lambda: bool(rec.of("close")))
        assert rec.of("close") == [("close", "a", 1, 1, 440)]
        assert transport.is_open("a", 2)

    run(body, replace_on_login=True)


def test_client_close_reports_its_status_and_fails_pending_sends_as_started() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        server.set_ack_delay(10_000, "a")
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await until(lambda: server.ledger.received(PN) == ("m1",))
        closing = asyncio.create_task(transport.close("a", 1, 1, 499))
        await asyncio.sleep(0)  # close() has started: the socket is closing
        await transport.send("a", 1, 1, "m2", "c@g.us", "text", "x")
        await asyncio.wait_for(closing, WAIT)
        assert [f[1:6] for f in rec.of("failed")] == [
            ("a", 1, 1, "m2", False),
            ("a", 1, 1, "m1", True),
        ]
        assert "closing" in rec.of("failed")[0][6]
        assert rec.of("close") == [("close", "a", 1, 1, 499)]
        await transport.close("a", 1, 1, 499)  # closing twice is harmless
        assert len(rec.of("close")) == 1

    run(body)


# ---------------------------------------------------------------- sockets, pings, half-open


def test_sockets_are_keyed_by_account_and_attempt() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        server.add_account("b", *OTHER)
        await opened(transport, rec, "a", 1, 1)
        await opened(transport, rec, "a", 1, 2)  # the same generation, a second socket
        await opened(transport, rec, "b", 1, 1)  # the same attempt number, another account
        assert list(transport.sockets) == [("a", 1), ("a", 2), ("b", 1)]
        assert server.connection_count("a") == 2
        await transport.close("a", 1, 1, 428)
        assert rec.of("close") == [("close", "a", 1, 1, 428)]
        assert list(transport.sockets) == [("a", 2), ("b", 1)]
        assert (transport.is_open("a", 1), transport.is_open("a", 2)) == (False, True)
        await transport.send("a", 1, 2, "m1", "c@g.us", "text", "x")
        await transport.send("a", 1, 1, "m2", "c@g.us", "text", "x")  # the closed one
        await transport.send("b", 1, 1, "m3", "c@g.us", "text", "x")
        await rec.wait(lambda: len(rec.of("ack")) == 2)
        assert sorted(rec.of("ack")) == [("ack", "a", 1, 2, "m1"), ("ack", "b", 1, 1, "m3")]
        assert [f[1:6] for f in rec.of("failed")] == [("a", 1, 1, "m2", False)]
        assert server.ledger.received(PN) == ("m1",)
        assert server.ledger.received(OTHER[0]) == ("m3",)
        await until(lambda: server.connection_count("a") == 1)

    run(body)


def test_pings_are_answered_with_pongs_and_reported_as_activity() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await rec.wait(lambda: len(rec.of("activity")) >= 3)  # pings every 20 ms
        assert set(rec.of("activity")) == {("activity", "a", 1, 1)}
        assert rec.of("ack") == rec.of("failed") == rec.of("close") == []

    run(body, keepalive_s=0.02)

    async def quiet(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await asyncio.sleep(0.2)
        assert rec.of("activity") == []  # no keepalive, no traffic: no sign of life

    run(quiet)

    async def raw(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        reader, writer = await _raw(server.port)
        try:
            frame = await _exchange(reader, writer, b'{"t": "login", "account": "a"}\n')
            assert frame["t"] == "ready"
            for _ in range(3):
                assert await _exchange(reader, writer, b'{"t": "ping"}\n') == {"t": "pong"}
        finally:
            writer.close()

    run(raw)


def test_keepalive_interval_follows_the_watchdog_at_the_speed() -> None:
    fast = EngineConfig(lifecycle=LifecycleConfig(watchdog_ms=3_000))
    assert ChannelTransport.keepalive_for(fast, 20) == pytest.approx(0.05)
    assert ChannelTransport.keepalive_for(None, 1) == DEFAULT_KEEPALIVE_S  # 300 s / 3, capped
    off = EngineConfig(lifecycle=LifecycleConfig(watchdog_ms=None))
    assert ChannelTransport.keepalive_for(off, 1) == DEFAULT_KEEPALIVE_S
    for speed in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="speed"):
            ChannelTransport.keepalive_for(fast, speed)


def test_a_delayed_ack_holds_up_nothing_else_on_the_connection() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        server.set_ack_delay(10_000)
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await until(lambda: server.ledger.received(PN) == ("m1",))
        await rec.wait(lambda: len(rec.of("activity")) >= 3)  # pongs keep coming meanwhile
        await transport.send("a", 1, 1, "m2", "c@g.us", "text", "x")
        await until(lambda: server.ledger.received(PN) == ("m1", "m2"))  # read at once too
        assert rec.of("ack") == []
        await transport.close("a", 1, 1, 499)
        # the server sees the hang-up now, not when the 10 s ack delay is over
        await until(lambda: server.connection_count() == 0, timeout=2.0)
        assert [f[4] for f in rec.of("failed")] == ["m1", "m2"]

    run(body, keepalive_s=0.02)


def test_half_open_keeps_the_connection_but_nothing_comes_back() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await rec.wait(lambda: bool(rec.of("ack")) and len(rec.of("activity")) >= 3)
        assert server.half_open("a") == 1
        await asyncio.sleep(0.05)  # a pong already on its way may still land
        frames = len(rec.of("activity"))
        await transport.send("a", 1, 1, "m2", "c@g.us", "text", "x")
        await asyncio.sleep(0.3)  # 15 pings unanswered
        assert len(rec.of("activity")) == frames
        assert [c[4] for c in rec.of("ack")] == ["m1"]
        assert server.ledger.received(PN) == ("m1",)  # m2 never arrived
        assert rec.of("close") == []
        assert transport.is_open("a", 1)
        assert server.connection_count("a") == 1  # still connected, as far as TCP knows
        # a fresh socket of the account is served as usual
        await opened(transport, rec, "a", 1, 2)
        await transport.send("a", 1, 2, "m3", "c@g.us", "text", "x")
        await rec.wait(lambda: len(rec.of("ack")) == 2)
        # only the client can end the half-open socket (the engine's watchdog does, with 499)
        await transport.close("a", 1, 1, 499)
        assert rec.of("close") == [("close", "a", 1, 1, 499)]
        assert [f[1:6] for f in rec.of("failed")] == [("a", 1, 1, "m2", True)]
        await until(lambda: server.connection_count("a") == 1)
        assert server.ledger.received(PN) == ("m1", "m3")
        assert [r.kind for r in server.records if r.kind == "half_open"] == ["half_open"]
        with pytest.raises(KeyError, match="nobody"):
            server.half_open("nobody")

    run(body, keepalive_s=0.02)


# --------------------------------------------------------------------------- send failures


def test_send_on_a_closed_socket_fails_before_io() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await transport.send("a", 7, 7, "m0", "c@g.us", "text", "never opened")
        await opened(transport, rec, "a", 1, 1)
        server.close_account("a", 428)
        await rec.wait(lambda: bool(rec.of("close")))
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "too late")
        failed = rec.of("failed")
        assert [f[1:6] for f in failed] == [("a", 7, 7, "m0", False), ("a", 1, 1, "m1", False)]
        assert "428" in failed[1][6]
        assert server.ledger.total == 0

    run(body)


def test_a_drop_between_write_and_ack_fails_the_send_as_started() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        server.set_ack_delay(10_000)
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await until(lambda: server.ledger.received(PN) == ("m1",))
        assert server.drop_account("a") == 1
        await rec.wait(lambda: bool(rec.of("close")))
        assert [f[1:6] for f in rec.of("failed")] == [("a", 1, 1, "m1", True)]
        assert rec.of("close") == [("close", "a", 1, 1, None)]
        assert rec.of("ack") == []
        # The close is reported before the sends it failed, so a consumer re-routing
        # them already knows this socket is gone.
        kinds = [call[0] for call in rec.calls]
        assert kinds.index("close") < kinds.index("failed")

    run(body)


def test_a_send_the_server_refuses_fails_as_started() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        server.add_account("anon")  # no identity: an unauthenticated socket
        await opened(transport, rec, "anon", 1, 1)
        assert rec.of("open") == [("open", "anon", 1, 1, None, None, None)]
        await transport.send("anon", 1, 1, "m1", "c@g.us", "text", "x")
        await rec.wait(lambda: bool(rec.of("failed")))
        (failed,) = rec.of("failed")
        assert failed[1:6] == ("anon", 1, 1, "m1", True)
        assert "not authenticated" in failed[6]
        assert server.ledger.total == 0

    run(body)


def test_a_raising_callback_does_not_kill_the_socket() -> None:
    class Grumpy(Recorder):
        def on_ack(self, account: str, generation: int, attempt: int, message_id: str) -> None:
            super().on_ack(account, generation, attempt, message_id)
            raise RuntimeError("callback bug")

    async def main() -> None:
        async with ChannelServer() as server:
            server.add_account("a", PN, LID, E164)
            rec = Grumpy()
            async with ChannelTransport(server.port, rec) as transport:
                await opened(transport, rec, "a", 1, 1)
                await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
                await transport.send("a", 1, 1, "m2", "c@g.us", "text", "x")
                await rec.wait(lambda: len(rec.of("ack")) == 2)
                assert transport.is_open("a", 1)

    asyncio.run(asyncio.wait_for(main(), 30))


# --------------------------------------------------------------------------- transport edges


def test_transport_rejects_misuse() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        with pytest.raises(ValueError, match="already open"):
            await transport.open("a", 2, 1)  # the attempt names the socket, not the generation
        await transport.aclose()
        assert rec.of("close") == [("close", "a", 1, 1, None)]
        with pytest.raises(RuntimeError, match="closed"):
            await transport.open("a", 1, 2)

    run(body)
    with pytest.raises(ValueError, match="port"):
        ChannelTransport(0, Recorder())
    with pytest.raises(ValueError, match="keepalive_s"):
        ChannelTransport(1234, Recorder(), keepalive_s=0)


def test_connection_refused_reports_on_close_without_status() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]

    async def main() -> None:
        rec = Recorder()
        async with ChannelTransport(free_port, rec) as transport:
            await transport.open("a", 1, 1)
            await rec.wait(lambda: bool(rec.of("close")))
        assert rec.of("close") == [("close", "a", 1, 1, None)]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_silent_server_times_the_login_out_with_408() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.read(), WAIT)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        rec = Recorder()
        async with ChannelTransport(port, rec, login_timeout=0.1) as transport:
            await transport.open("a", 1, 1)
            await rec.wait(lambda: bool(rec.of("close")))
        assert rec.of("close") == [("close", "a", 1, 1, 408)]
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)

    asyncio.run(asyncio.wait_for(main(), 30))


async def _scripted(first: bytes, then: list[bytes], max_line_bytes: int = 1024) -> Recorder:
    """A hand-written server: answers the login with ``first``; after two sends, ``then`` + EOF."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.readline(), WAIT)
        writer.write(first)
        if then:
            for _ in range(2):  # the client's two sends
                await asyncio.wait_for(reader.readline(), WAIT)
        for line in then:
            writer.write(line)
        await asyncio.wait_for(writer.drain(), WAIT)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rec = Recorder()
    transport = ChannelTransport(port, rec, max_line_bytes=max_line_bytes, keepalive_s=None)
    await transport.open("a", 1, 1)
    await rec.wait(lambda: bool(rec.of("open") or rec.of("close")))
    if rec.of("open"):
        await transport.send("a", 1, 1, "m1", "c", "text", "x")
        await transport.send("a", 1, 1, "m1", "c", "text", "x")  # the same id, twice in flight
    await rec.wait(lambda: bool(rec.of("close")))
    await transport.aclose()
    server.close()
    await asyncio.wait_for(server.wait_closed(), WAIT)
    return rec


def test_the_client_survives_a_misbehaving_server() -> None:
    ready = b'{"t": "ready", "pn": 5, "lid": null, "e164": "+1"}\n'
    junk = [
        b"not json\n",
        b"[1]\n",
        b'{"t": "weird"}\n',
        b'{"t": "ack", "id": "never-sent"}\n',
        b'{"t": "error", "message": "general trouble"}\n',
        b'{"t": "closed", "status": "bad"}\n',
    ]

    async def main() -> None:
        rec = await _scripted(ready, junk)
        assert rec.of("open") == [("open", "a", 1, 1, None, None, "+1")]
        assert rec.of("close") == [("close", "a", 1, 1, None)]
        assert [f[1:6] for f in rec.of("failed")] == [("a", 1, 1, "m1", True)] * 2
        # every JSON object frame but the close is a sign of life (weird, bogus ack, error)
        assert len(rec.of("activity")) == 3
        rec = await _scripted(b'{"t": "closed", "status": 403}\n', [])
        assert rec.of("close") == [("close", "a", 1, 1, 403)]
        rec = await _scripted(b"", [])
        assert rec.of("close") == [("close", "a", 1, 1, None)]
        rec = await _scripted(ready, [b"y" * 300 + b"\n"], max_line_bytes=128)
        assert rec.of("close") == [("close", "a", 1, 1, None)]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_closing_while_connecting_reports_the_requested_status() -> None:
    async def main() -> None:
        rec = Recorder()
        # the connect task has not run yet when close() arrives
        async with ChannelTransport(9, rec) as transport:
            await transport.open("a", 1, 1)
            await transport.close("a", 1, 1, 499)
        assert rec.of("close") == [("close", "a", 1, 1, 499)]

    asyncio.run(asyncio.wait_for(main(), 30))


# --------------------------------------------------------------------------- bad input


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
) -> dict[str, Any]:
    writer.write(line)
    reply = await asyncio.wait_for(reader.readline(), WAIT)
    frame: dict[str, Any] = json.loads(reply)
    return frame


def test_bad_frames_get_errors_and_the_server_keeps_serving() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        reader, writer = await _raw(server.port)
        try:
            bad_lines = [
                b"not json\n",
                b"[1, 2]\n",
                b'{"t": "nope"}\n',
                b'{"t": "login", "account": 5}\n',
                b'{"t": "send", "id": "", "chat": "c"}\n',
            ]
            for line in bad_lines:
                frame = await _exchange(reader, writer, b"\n" + line)
                assert frame["t"] == "error", line
            frame = await _exchange(reader, writer, b'{"t": "send", "id": "m9", "chat": "c"}\n')
            assert frame == {"t": "error", "message": "send before login", "id": "m9"}
            assert (await _exchange(reader, writer, b'{"t": "ping"}\n')) == {"t": "pong"}
            frame = await _exchange(reader, writer, b'{"t": "login", "account": "a"}\n')
            assert frame == {"t": "ready", "pn": PN, "lid": LID, "e164": E164}
            frame = await _exchange(reader, writer, b'{"t": "login", "account": "a"}\n')
            assert frame == {"t": "error", "message": "already logged in"}
            frame = await _exchange(reader, writer, b'{"t": "send", "id": "m9", "chat": 3}\n')
            assert frame["t"] == "error"
            assert frame["id"] == "m9"
        finally:
            writer.close()
        # the transport's connection is unaffected
        await transport.send("a", 1, 1, "ok", "c@g.us", "text", "x")
        await rec.wait(lambda: bool(rec.of("ack")))
        assert server.ledger.received(PN) == ("ok",)

    run(body)


def test_an_oversized_line_gets_an_error_and_a_close() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        reader, writer = await _raw(server.port)
        try:
            writer.write(b"x" * 2048 + b"\n")
            frame = json.loads(await asyncio.wait_for(reader.readline(), WAIT))
            assert frame["t"] == "error"
            assert "longer than" in frame["message"]
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        finally:
            writer.close()
        await opened(transport, rec, "a", 1, 1)

    run(body, max_line_bytes=1024)


def test_connections_beyond_the_limit_are_turned_away() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        reader, writer = await _raw(server.port)
        try:
            frame = json.loads(await asyncio.wait_for(reader.readline(), WAIT))
            assert frame == {"t": "error", "message": "server busy"}
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        finally:
            writer.close()
        assert transport.is_open("a", 1)

    run(body, max_connections=1)


def test_server_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ChannelServer(host="10.0.0.1")
    server = ChannelServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    with pytest.raises(ValueError, match="delay"):
        server.set_ack_delay(-1)

    async def twice() -> None:
        async with ChannelServer() as started:
            with pytest.raises(RuntimeError, match="already started"):
                await started.start()

    asyncio.run(asyncio.wait_for(twice(), 30))


# --------------------------------------------------------------------------- chaos


def _decisions(seed: int, accounts: tuple[str, ...] = ("a", "b", "c")) -> list[object]:
    config = ChaosConfig(
        seed=seed,
        close_probability=0.3,
        drop_probability=0.2,
        relink_probability=0.2,
        send_drop_probability=0.1,
        ack_delay_ms=(0, 50),
        max_events=1000,
    )
    decider = ChaosDecider(config)
    out: list[object] = [decider.tick(accounts) for _ in range(200)]
    out += [decider.on_send() for _ in range(200)]
    return out


def test_chaos_decisions_are_a_function_of_the_seed() -> None:
    first = _decisions(7)
    assert first == _decisions(7)
    assert first != _decisions(8)
    kinds = {d.kind for d in first if isinstance(d, ChaosAction)}
    assert kinds == {"close", "drop", "relink"}
    statuses = {d.status for d in first if isinstance(d, ChaosAction) and d.kind == "close"}
    assert statuses <= set(ChaosConfig().statuses)
    assert len(statuses) > 3
    relinks = [d for d in first if isinstance(d, ChaosAction) and d.kind == "relink"]
    assert all(r.identity is not None and r.identity.authenticated for r in relinks)
    sends = [d for d in first if isinstance(d, SendChaos)]
    assert {s.drop for s in sends} == {True, False}
    assert all(0 <= s.ack_delay_ms <= 50 for s in sends)


def test_chaos_decider_respects_its_event_budget() -> None:
    decider = ChaosDecider(ChaosConfig(close_probability=1.0, max_events=2))
    assert decider.tick(()) is None
    assert decider.tick(("a",)) is not None
    assert decider.tick(("a",)) is not None
    assert decider.exhausted
    assert decider.tick(("a",)) is None
    assert decider.on_send() == SendChaos(0, False)


@pytest.mark.parametrize(
    "options",
    [
        {"close_probability": 1.5},
        {"close_probability": 0.6, "drop_probability": 0.6},
        {"statuses": ()},
        {"ack_delay_ms": (5, 1)},
        {"tick_ms": 0},
        {"max_events": -1},
        {"max_seconds": 0},
    ],
)
def test_chaos_config_rejects_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"chaos|must|required"):
        ChaosConfig(**options)


def test_chaos_closes_with_real_statuses_and_stops_at_its_event_budget() -> None:
    accounts = ("a", "b", "c")

    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        for account in accounts:
            server.add_account(account, f"{account}1@s.whatsapp.net")
            await opened(transport, rec, account, 1, 1)
        server.start_chaos(ChaosConfig(seed=3, close_probability=1.0, tick_ms=5, max_events=3))
        running = [server.chaos_running]
        with pytest.raises(RuntimeError, match="already running"):
            server.start_chaos(ChaosConfig())
        events = await server.wait_chaos(WAIT)
        running.append(server.chaos_running)
        assert running == [True, False]
        assert len(events) == 3
        assert sorted(e.action.account for e in events) == list(accounts)
        await rec.wait(lambda: len(rec.of("close")) == 3)
        closed = {c[1]: c[4] for c in rec.of("close")}
        assert closed == {e.action.account: e.action.status for e in events}
        assert set(closed.values()) <= set(ChaosConfig().statuses)

    run(body)


def test_chaos_stops_by_itself_at_its_time_limit() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        started = time.monotonic()
        config = ChaosConfig(close_probability=0.0, tick_ms=10, max_seconds=0.2)
        server.start_chaos(config)
        assert await server.wait_chaos(WAIT) == ()
        assert 0.15 <= time.monotonic() - started < 2.0
        assert transport.is_open("a", 1)

    run(body)


def test_chaos_relinks_drops_and_delays_acks() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await rec.wait(lambda: bool(rec.of("failed")))
        assert [f[1:6] for f in rec.of("failed")] == [("a", 1, 1, "m1", True)]
        assert server.ledger.received(PN) == ("m1",)  # it arrived; the sender cannot know
        await rec.wait(lambda: bool(rec.of("close")))
        await opened(transport, rec, "a", 1, 2)
        events = await server.wait_chaos(WAIT)
        assert [e.action.kind for e in events] == ["drop", "relink"]
        assert server.identity_of("a") == events[1].action.identity
        await rec.wait(lambda: len(rec.of("close")) == 2)
        assert rec.of("close")[1] == ("close", "a", 1, 2, 401)

    config = ChaosConfig(
        seed=1,
        close_probability=0.0,
        relink_probability=1.0,
        send_drop_probability=1.0,
        ack_delay_ms=(1, 5),
        tick_ms=20,
        max_events=2,
    )
    run(body, chaos=config)


def test_chaos_delays_acks_within_its_range() -> None:
    async def body(server: ChannelServer, transport: ChannelTransport, rec: Recorder) -> None:
        await opened(transport, rec, "a", 1, 1)
        server.start_chaos(ChaosConfig(close_probability=0.0, ack_delay_ms=(100, 100)))
        started = time.monotonic()
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")
        await rec.wait(lambda: bool(rec.of("ack")))
        assert time.monotonic() - started >= 0.09
        await server.stop_chaos()
        assert not server.chaos_running

    run(body)


# --------------------------------------------------------------------------- shutdown


def test_stop_closes_everything_and_leaks_no_task() -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        server = ChannelServer()
        await server.start()
        server.add_account("a", PN, LID, E164)
        server.set_ack_delay(10_000)
        rec = Recorder()
        transport = ChannelTransport(server.port, rec)
        await opened(transport, rec, "a", 1, 1)
        await transport.send("a", 1, 1, "m1", "c@g.us", "text", "x")  # ack pending on the server
        reader, writer = await _raw(server.port)  # an idle raw connection too
        server.start_chaos(ChaosConfig(close_probability=0.0, max_seconds=60))
        await until(lambda: server.connection_count() == 2 and server.ledger.total == 1)
        await asyncio.wait_for(server.stop(), WAIT)
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
        await rec.wait(lambda: bool(rec.of("close")))
        assert [f[5] for f in rec.of("failed")] == [True]
        await transport.aclose()
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == before
        assert server.records[-1].kind == "stop"

    asyncio.run(asyncio.wait_for(main(), 30))
