"""heirline.adapters.neonize against neonize's own client, event classes and dispatch.

The clients are real ``NewAClient`` objects; only neonize's Go library is
replaced (``neonize_fake.FakeGo``), so events travel as they do in production:
serialized protobuf, a worker thread, neonize's ctypes callback and
``Event.execute``, then the adapter. No network.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import runpy
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip(
    "neonize", reason="the neonize extra is not installed: pip install 'heirline[neonize]'"
)

import neonize.aioze.events as neonize_events
from neonize.aioze.client import NewAClient
from neonize.aioze.events import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import (
    JID,
    ConnectFailureReason,
    MessageInfo,
    MessageSource,
    PairStatus,
    TemporaryBan,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
from neonize_fake import LID, PN, FakeGo, FakeRun

from heirline.adapters.aio import AsyncGateway
from heirline.adapters.neonize import (
    RESENDABLE_KINDS,
    InboundMessage,
    MessageHook,
    NeonizeTransport,
    PayloadError,
    ReplyRequest,
    Sender,
    chat_jid,
    check_config,
    format_jid,
    neonize_config,
    neonize_gateway,
    read_receipt,
    send_read_receipt,
    transport_factory,
)
from heirline.adapters.transport import Transport, TransportCallbacks
from heirline.core.delivery import KINDS
from heirline.core.engine import EngineConfig
from heirline.core.errors import JidError
from heirline.core.events import (
    Activity,
    ActivityKind,
    Event,
    ReplyCaptured,
    ReplyReady,
    SocketClosed,
    SocketOpened,
    Start,
    TransmitAcked,
    TransmitFailed,
    WatchdogSilence,
)
from heirline.core.lifecycle import State
from heirline.core.policy import Status

T = TypeVar("T")
E = TypeVar("E", bound=Event)
ACCOUNT = "acct"
CHAT = "15559990000@s.whatsapp.net"
TIMEOUT_S = 20.0
ME_PN = "15550001111:7@s.whatsapp.net"
ME_LID = "123456789012345:7@lid"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh loop, bounded in time (the wrapper task is ``test-main``)."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        task.set_name("test-main")
        return await asyncio.wait_for(coro, TIMEOUT_S)

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _one_loop_per_test() -> Any:
    """neonize binds its event dispatch to the first loop that connects; each test has its own."""
    neonize_events.event_global_loop = None
    yield
    neonize_events.event_global_loop = None


class Recording(AsyncGateway):
    """An AsyncGateway that keeps every fact it fed to the engine."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fed: list[Event] = []

    def feed(self, event: Event) -> None:
        self.fed.append(event)
        super().feed(event)


@dataclass
class Harness:
    go: FakeGo
    client: NewAClient
    gw: Recording

    @property
    def transport(self) -> NeonizeTransport:
        transport = self.gw.transport
        assert isinstance(transport, NeonizeTransport)
        return transport

    def facts(self, kind: type[E]) -> list[E]:
        return [e for e in self.gw.fed if isinstance(e, kind)]

    def state(self, generation: int = 1) -> State | None:
        return self.gw.engine.controller_state(ACCOUNT, generation)

    def notes(self) -> list[str]:
        return [e.message for e in self.gw.timeline if e.code == "note"]

    async def until(self, predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
        for _ in range(int(seconds / 0.005)):
            if predicate():
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"not within {seconds} s: {what}")

    async def emit(self, message: object, fake_run: FakeRun | None = None) -> None:
        """Emit one event on a run (default: the newest) and wait until the adapter handled it."""
        target = fake_run if fake_run is not None else self.go.run()
        before = self.transport.handled
        assert await target.emit(message), f"the run did not subscribe to {type(message).__name__}"
        await self.until(
            lambda: self.transport.handled > before, f"{type(message).__name__} handled"
        )

    async def start(self, account: str = ACCOUNT) -> FakeRun:
        """Start the account and wait for its run (not yet connected)."""
        runs = len(self.go.runs)
        self.gw.feed(Start(account=account))
        await self.until(lambda: len(self.go.runs) > runs, "a neonize run")
        return self.go.run()

    async def connect(self) -> FakeRun:
        """Start the account, and let whatsmeow log it in."""
        fake_run = await self.start()
        await self.emit(ConnectedEv(status=True))
        assert self.facts(SocketOpened), "the Connected event opened no socket"
        return fake_run


@contextlib.asynccontextmanager
async def harness(
    *,
    on_message: MessageHook | None = None,
    senders: dict[str, Sender] | None = None,
    probe: float | None = None,
    grace: float = 1.0,
    speed: float = 1.0,
    config: EngineConfig | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Harness]:
    go = FakeGo()
    client = go.client("acct-store")
    factory = transport_factory(
        {ACCOUNT: client},
        on_message=on_message,
        senders=senders,
        keepalive_probe_s=probe,
        close_grace_s=grace,
        wall_clock=wall_clock,
    )
    gw = Recording(
        factory,
        neonize_config(config or EngineConfig(health_timer=False)),
        random=random.Random(7).random,
        speed=speed,
    )
    await gw.start()
    try:
        yield Harness(go, client, gw)
    finally:
        await gw.aclose()


def message_ev(
    text: str = "ping", message_id: str = "ABCD1234", chat: str = CHAT, from_me: bool = False
) -> MessageEv:
    """A MessageEv as neonize builds it from whatsmeow's events.Message."""
    user, server = chat.split("@")
    jid = JID(User=user, Server=server, RawAgent=0, Device=0, Integrator=0, IsEmpty=False)
    source = MessageSource(Chat=jid, Sender=jid, IsFromMe=from_me, IsGroup=server == "g.us")
    info = MessageInfo(MessageSource=source, ID=message_id, Pushname="someone", Type="text")
    return MessageEv(Info=info, Message=WAMessage(conversation=text))


def pong(message: InboundMessage) -> ReplyRequest | None:
    return None if message.from_me else ReplyRequest(payload=f"re: {message.text}")


def other_tasks() -> set[asyncio.Task[Any]]:
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not me and t.get_name() != "test-main"}


# --------------------------------------------------------------------------- helpers


def test_format_jid_writes_heirline_grammar_and_empty_is_none() -> None:
    assert format_jid(PN) == ME_PN
    assert format_jid(LID) == ME_LID
    agent = JID(User="1555", Server="s.whatsapp.net", RawAgent=1, Device=2)
    assert format_jid(agent) == "1555_1:2@s.whatsapp.net"
    assert format_jid(JID(User="1555", Server="s.whatsapp.net")) == "1555@s.whatsapp.net"
    assert format_jid(JID(IsEmpty=True)) is None
    assert format_jid(JID()) is None
    assert format_jid(JID(User="", Server="s.whatsapp.net")) is None


def test_chat_jid_parses_normalizes_legacy_server_and_names_bad_input() -> None:
    jid = chat_jid("15559990000@c.us")
    assert (jid.User, jid.Server, jid.Device, jid.RawAgent) == (
        "15559990000",
        "s.whatsapp.net",
        0,
        0,
    )
    group = chat_jid("120363-1234@g.us")
    assert (group.User, group.Server, group.IsEmpty) == ("120363-1234", "g.us", False)
    assert chat_jid("1555:3@s.whatsapp.net").Device == 3
    with pytest.raises(JidError, match="exactly one '@'"):
        chat_jid("nobody")
    with pytest.raises(JidError, match="unknown JID server"):
        chat_jid("1555@example.com")


def test_config_resends_only_what_repeats_harmlessly() -> None:
    with pytest.raises(ValueError, match=r"\['media', 'text'\].*chosen message id"):
        check_config(EngineConfig())
    config = neonize_config(EngineConfig(max_transmissions=3))
    assert config.resendable_kinds == RESENDABLE_KINDS
    assert config.max_transmissions == 3
    check_config(config)
    check_config(EngineConfig(resendable_kinds=frozenset()))
    narrower = neonize_config(EngineConfig(resendable_kinds=frozenset({"read_receipt"})))
    assert narrower.resendable_kinds == {"read_receipt"}
    assert RESENDABLE_KINDS <= KINDS
    with pytest.raises(ValueError, match="chosen message id"):
        neonize_gateway(
            {ACCOUNT: FakeGo().client("x")}, random=random.random, config=EngineConfig()
        )


def test_reply_request_rejects_a_deadline_in_the_past() -> None:
    with pytest.raises(ValueError, match="deadline_ms must be >= 1"):
        ReplyRequest(payload="x", deadline_ms=0)


def test_transport_rejects_bad_construction() -> None:
    go = FakeGo()
    client = go.client("one")

    async def main() -> None:
        gw = Recording(lambda cb: _unused(cb), neonize_config(), random=random.random)
        with pytest.raises(ValueError, match="clients is empty"):
            NeonizeTransport({}, gw)
        with pytest.raises(ValueError, match="share one client"):
            NeonizeTransport({"a": client, "b": client}, gw)
        with pytest.raises(ValueError, match="keepalive_probe_s must be > 0"):
            NeonizeTransport({"a": client}, gw, keepalive_probe_s=0)
        with pytest.raises(ValueError, match="close_grace_s must be > 0"):
            NeonizeTransport({"a": client}, gw, close_grace_s=0)
        build = transport_factory({"a": client})
        with pytest.raises(TypeError, match="needs a gateway that feeds events"):
            build(_CallbacksOnly())
        with pytest.raises(ValueError, match="chosen message id"):
            build(Recording(build, EngineConfig(), random=random.random))

    run(main())


def _unused(callbacks: TransportCallbacks) -> Transport:
    raise AssertionError("not started")


class _CallbacksOnly:
    def on_open(
        self, account: str, generation: int, attempt: int, pn: str | None, lid: str | None,
        e164: str | None,
    ) -> None: ...  # fmt: skip
    def on_close(self, account: str, generation: int, attempt: int, status: int | None) -> None: ...
    def on_activity(self, account: str, generation: int, attempt: int) -> None: ...
    def on_ack(self, account: str, generation: int, attempt: int, message_id: str) -> None: ...
    def on_send_failed(
        self, account: str, generation: int, attempt: int, message_id: str, io_started: bool,
        error: str,
    ) -> None: ...  # fmt: skip


BAD_RECEIPTS = (
    "{",
    "[]",
    '{"ids": [], "sender": "1@s.whatsapp.net"}',
    '{"ids": ["a"]}',
    '{"ids": [""], "sender": "1@s.whatsapp.net"}',
    '{"ids": ["a"], "sender": "x"}',
)


def test_read_receipt_payload_round_trips_and_bad_payloads_send_nothing() -> None:
    go = FakeGo()
    client = go.client("rr")
    inbound = InboundMessage(
        ACCOUNT, 1, 1, CHAT, "15559990000:4@s.whatsapp.net", "MSG1", False, False, "", message_ev()
    )
    request = read_receipt(inbound)
    assert request.kind == "read_receipt"
    assert isinstance(request.payload, str)

    async def main() -> None:
        go.live[b"rr"] = FakeRun(b"rr", lambda *a: None, frozenset())
        assert await send_read_receipt(client, chat_jid(CHAT), request.payload) is None  # type: ignore[arg-type]
        (uuid, ids, chat, sender, receipt) = go.read[0]
        assert (uuid, ids, receipt) == (b"rr", ["MSG1"], b"read")
        assert (chat.User, sender.User, sender.Device) == ("15559990000", "15559990000", 4)
        for bad in BAD_RECEIPTS:
            with pytest.raises(PayloadError):
                await send_read_receipt(client, chat_jid(CHAT), bad)
        assert len(go.read) == 1

    run(main())


# --------------------------------------------------------------------------- event mapping


def test_connected_opens_the_socket_as_the_clients_own_jid_and_lid() -> None:
    async def main() -> None:
        async with harness() as h:
            await h.connect()
            assert h.facts(SocketOpened) == [
                SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=ME_PN, lid=ME_LID)
            ]
            assert h.state() is State.OPEN
            assert h.transport.is_open(ACCOUNT, 1)
            assert h.go.calls.count("GetMe") == 1
            # the dispatcher was bound for connect() only: the host's own is back
            assert isinstance(h.client.event, neonize_events.Event)
            assert h.client.event.list_func == {}

    run(main())


CLOSES = [
    pytest.param(
        [DisconnectedEv(status=True)], Status.CONNECTION_LOST, State.BACKOFF, id="disconnected-408"
    ),
    pytest.param(
        [StreamErrorEv(Code="xml-not-well-formed"), DisconnectedEv()],
        Status.BAD_SESSION,
        State.BACKOFF,
        id="stream-error-then-disconnected-500",
    ),
    pytest.param(
        [LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT)],
        Status.LOGGED_OUT,
        State.LOGGED_OUT,
        id="logged-out-401",
    ),
    pytest.param(
        [LoggedOutEv(OnConnect=True, Reason=ConnectFailureReason.MAIN_DEVICE_GONE)],
        Status.FORBIDDEN,
        State.FORBIDDEN,
        id="logged-out-locked-403",
    ),
    pytest.param(
        [LoggedOutEv(OnConnect=True, Reason=ConnectFailureReason.UNKNOWN_LOGOUT)],
        Status.FORBIDDEN,
        State.FORBIDDEN,
        id="logged-out-banned-403",
    ),
    pytest.param(
        [StreamReplacedEv()], Status.CONNECTION_REPLACED, State.REPLACED, id="replaced-440"
    ),
    pytest.param(
        [TemporaryBanEv(Code=TemporaryBan.BLOCKED_BY_USERS, Expire=3600)],
        Status.FORBIDDEN,
        State.FORBIDDEN,
        id="temporary-ban-403",
    ),
    pytest.param([ClientOutdatedEv()], 405, State.BACKOFF, id="client-outdated-405"),
    pytest.param(
        [ConnectFailureEv(Reason=ConnectFailureReason.GENERIC, Message="generic")],
        400,
        State.BACKOFF,
        id="connect-failure-400",
    ),
    pytest.param(
        [ConnectFailureEv(Reason=ConnectFailureReason.BAD_USER_AGENT)],
        409,
        State.BACKOFF,
        id="connect-failure-409",
    ),
    pytest.param(
        [ConnectFailureEv(Reason=ConnectFailureReason.SERVICE_UNAVAILABLE)],
        503,
        State.BACKOFF,
        id="connect-failure-503",
    ),
]


@pytest.mark.parametrize(("events", "status", "state"), CLOSES)
def test_each_closing_event_closes_the_attempt_with_its_status_and_stops_the_run(
    events: list[object], status: int | None, state: State
) -> None:
    async def main() -> None:
        async with harness() as h:
            fake_run = await h.connect()
            for event in events:
                await h.emit(event)
            assert h.facts(SocketClosed) == [
                SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=status)
            ]
            assert h.state() is state
            assert not fake_run.alive, "the run must be stopped: whatsmeow must not reconnect"
            assert h.go.calls[-2:] == ["Disconnect", "Stop"]
            assert not h.transport.is_open(ACCOUNT, 1)

    run(main())


FRAMES = [
    pytest.param(KeepAliveRestoredEv(), id="keepalive-restored"),
    pytest.param(ReceiptEv(MessageIDs=["X"], Type=ReceiptEv.DELIVERED), id="receipt"),
    pytest.param(PairStatusEv(Status=PairStatus.SUCCESS, ID=PN), id="pair-success"),
    pytest.param(StreamErrorEv(Code="unknown"), id="stream-error"),
]


@pytest.mark.parametrize("event", FRAMES)
def test_other_received_events_are_frames_of_their_attempt(event: object) -> None:
    async def main() -> None:
        async with harness() as h:
            await h.connect()
            await h.emit(event)
            assert h.facts(Activity) == [
                Activity(account=ACCOUNT, generation=1, attempt=1, kind=ActivityKind.FRAME)
            ]
            assert h.state() is State.OPEN
            assert not h.facts(SocketClosed)

    run(main())


def test_pair_error_fails_the_login_without_a_status() -> None:
    async def main() -> None:
        async with harness() as h:
            fake_run = await h.start()
            await h.emit(PairStatusEv(Status=PairStatus.ERROR, Error="pair-device rejected"))
            assert not h.facts(SocketOpened)
            assert h.facts(SocketClosed) == [
                SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=None)
            ]
            assert not fake_run.alive
            assert any("pairing failed: pair-device rejected" in n for n in h.notes())

    run(main())


def test_keepalive_timeouts_are_silence_until_whatsmeow_gives_up_then_watchdog_silence() -> None:
    now = 1_800_000_000.0

    async def main() -> None:
        async with harness(wall_clock=lambda: now) as h:
            await h.connect()
            await h.emit(KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=int(now) - 40))
            await h.emit(KeepAliveTimeoutEv(ErrorCount=5, LastSuccess=int(now) - 170))
            assert not h.facts(Activity), "a failing keepalive must not look like traffic"
            assert not h.facts(WatchdogSilence)
            assert h.state() is State.OPEN
            await h.emit(KeepAliveTimeoutEv(ErrorCount=7, LastSuccess=int(now) - 181))
            assert h.facts(WatchdogSilence) == [
                WatchdogSilence(account=ACCOUNT, generation=1, attempt=1, silent_ms=181_000)
            ]
            await h.until(lambda: bool(h.facts(SocketClosed)), "the watchdog close")
            assert h.facts(SocketClosed)[0].status == Status.WATCHDOG
            await h.emit(KeepAliveTimeoutEv(ErrorCount=8, LastSuccess=int(now) - 200), h.go.run(0))
            assert len(h.facts(WatchdogSilence)) == 1, "reported once"

    run(main())


def test_the_probe_reports_liveness_only_while_keepalives_succeed() -> None:
    async def main() -> None:
        async with harness(probe=0.01) as h:
            await h.connect()

            def frames() -> int:
                return len(h.facts(Activity))

            await h.until(lambda: frames() >= 3, "probe frames while healthy")
            await h.emit(KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=int(time.time())))
            silent_from = frames()
            await asyncio.sleep(0.1)
            assert frames() == silent_from, "no liveness while whatsmeow's keepalive fails"
            await h.emit(KeepAliveRestoredEv())
            await h.until(lambda: frames() >= silent_from + 3, "probe frames after restore")
            await h.emit(DisconnectedEv())
            closed_at = frames()
            await asyncio.sleep(0.05)
            assert frames() == closed_at, "no probe after the close"

    run(main())


def test_whatsmeow_reconnecting_inside_a_run_is_a_frame_not_a_new_socket() -> None:
    async def main() -> None:
        async with harness() as h:
            await h.connect()
            await h.emit(KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=int(time.time()) - 30))
            await h.emit(ConnectedEv(status=True))
            assert len(h.facts(SocketOpened)) == 1
            assert h.facts(Activity) == [Activity(account=ACCOUNT, generation=1, attempt=1)]
            assert h.go.calls.count("GetMe") == 2, "the identity is read again"
            assert any("reconnected attempt 1 by itself" in n for n in h.notes())
            assert h.state() is State.OPEN

    run(main())


def test_a_reconnect_inside_a_run_that_shows_another_identity_restarts_the_attempt() -> None:
    async def main() -> None:
        async with harness(speed=50) as h:
            await h.connect()
            h.go.me.LID.CopyFrom(JID(User="999", Server="lid", RawAgent=0, Device=7, Integrator=0))
            await h.emit(ConnectedEv(status=True))
            assert h.facts(SocketClosed) == [
                SocketClosed(
                    account=ACCOUNT, generation=1, attempt=1, status=Status.RESTART_REQUIRED
                )
            ]
            await h.until(lambda: len(h.go.runs) == 2, "the engine reconnects at once")
            await h.emit(ConnectedEv(status=True))
            assert h.facts(SocketOpened)[-1].lid == "999:7@lid"

    run(main())


# --------------------------------------------------------------------------- inbound and sends


def test_inbound_message_is_activity_a_capture_and_a_delivered_reply() -> None:
    seen: list[InboundMessage] = []

    def hook(message: InboundMessage) -> ReplyRequest:
        seen.append(message)
        return ReplyRequest(payload="pong")

    async def main() -> None:
        async with harness(on_message=hook) as h:
            await h.connect()
            await h.emit(message_ev("ping", "M1"))
            reply_id = f"{ACCOUNT}/{CHAT}/M1/0"
            await h.until(lambda: reply_id in h.gw.outcomes, "the reply's outcome")
            assert h.gw.outcomes[reply_id].outcome == "delivered"
            assert h.gw.outcomes[reply_id].via == "origin"
            inbound = h.facts(Activity)[0]
            assert inbound == Activity(
                account=ACCOUNT, generation=1, attempt=1, kind=ActivityKind.INBOUND
            )
            assert h.facts(ReplyCaptured) == [
                ReplyCaptured(reply_id=reply_id, account=ACCOUNT, generation=1, chat=CHAT)
            ]
            assert h.facts(ReplyReady) == [ReplyReady(reply_id=reply_id, payload="pong")]
            assert h.facts(TransmitAcked) == [
                TransmitAcked(reply_id=reply_id, generation=1, attempt=1)
            ]
            (uuid, to, sent) = h.go.sent[0]
            assert (uuid, to.User, to.Server, sent.conversation) == (
                b"acct-store", "15559990000", "s.whatsapp.net", "pong",
            )  # fmt: skip
            (message,) = seen
            assert (message.chat, message.sender, message.message_id, message.text) == (
                CHAT, CHAT, "M1", "ping",
            )  # fmt: skip
            assert (message.generation, message.attempt, message.from_me) == (1, 1, False)

    run(main())


def test_a_payload_produced_later_is_made_ready_then() -> None:
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "thought about it"

    async def main() -> None:
        async with harness(on_message=lambda m: ReplyRequest(payload=slow)) as h:
            await h.connect()
            await h.emit(message_ev("hard question", "M2"))
            assert len(h.facts(ReplyCaptured)) == 1
            assert not h.facts(ReplyReady), "captured at once, ready only when produced"
            release.set()
            await h.until(lambda: bool(h.facts(TransmitAcked)), "the produced reply sent")
            assert h.facts(ReplyReady)[0].payload == "thought about it"
            assert h.go.sent[0][2].conversation == "thought about it"

    run(main())


def test_no_reply_a_failing_hook_and_a_failing_producer_send_nothing() -> None:
    async def broken() -> str:
        raise RuntimeError("model offline")

    def hook(message: InboundMessage) -> ReplyRequest | None:
        if message.text == "raise":
            raise RuntimeError("bug in the host")
        if message.text == "produce":
            return ReplyRequest(payload=broken)
        return None

    async def main() -> None:
        async with harness(on_message=hook) as h:
            await h.connect()
            for i, text in enumerate(("ignore", "raise", "produce")):
                await h.emit(message_ev(text, f"N{i}"))
            assert len(h.facts(Activity)) == 3
            assert [c.reply_id for c in h.facts(ReplyCaptured)] == [f"{ACCOUNT}/{CHAT}/N2/0"]
            await asyncio.sleep(0.05)
            assert not h.facts(ReplyReady)
            assert h.go.sent == []

    run(main())


def test_a_redelivered_message_is_not_captured_twice() -> None:
    async def main() -> None:
        async with harness(on_message=pong) as h:
            await h.connect()
            await h.emit(message_ev("ping", "SAME"))
            await h.emit(message_ev("ping", "SAME"))
            assert len(h.facts(ReplyCaptured)) == 1
            assert any("exists: message redelivered" in n for n in h.notes())
            await h.until(lambda: bool(h.facts(TransmitAcked)), "the one reply")
            assert len(h.go.sent) == 1

    run(main())


def test_several_requests_for_one_message_and_a_read_receipt() -> None:
    def hook(message: InboundMessage) -> list[ReplyRequest]:
        return [read_receipt(message), ReplyRequest(payload="hello", deadline_ms=60_000)]

    async def main() -> None:
        async with harness(on_message=hook) as h:
            await h.connect()
            await h.emit(message_ev("hi", "R1"))
            ids = [c.reply_id for c in h.facts(ReplyCaptured)]
            assert ids == [f"{ACCOUNT}/{CHAT}/R1/0", f"{ACCOUNT}/{CHAT}/R1/1"]
            assert [c.kind for c in h.facts(ReplyCaptured)] == ["read_receipt", "text"]
            deadline = h.facts(ReplyCaptured)[1].deadline_ms
            assert deadline is not None
            assert 60_000 <= deadline < 61_000
            await h.until(lambda: len(h.gw.outcomes) == 2, "both outcomes")
            assert {o.outcome for o in h.gw.outcomes.values()} == {"delivered"}
            assert h.go.read[0][1] == ["R1"]
            assert h.go.sent[0][2].conversation == "hello"

    run(main())


def test_messages_before_connected_are_held_until_the_socket_shows_who_it_is() -> None:
    async def main() -> None:
        async with harness(on_message=pong) as h:
            await h.start()
            await h.emit(message_ev("early", "E1"))
            assert not h.facts(ReplyCaptured), "no capture before the socket's identity is known"
            await h.emit(ConnectedEv(status=True))
            kinds = [type(e).__name__ for e in h.gw.fed if not isinstance(e, Start)]
            assert kinds[:4] == ["SocketOpened", "Activity", "ReplyCaptured", "ReplyReady"]
            await h.until(lambda: bool(h.gw.outcomes), "the reply's outcome")
            assert next(iter(h.gw.outcomes.values())).outcome == "delivered"

    run(main())


def test_the_hosts_own_neonize_handlers_still_run() -> None:
    got: list[str] = []

    async def main() -> None:
        go = FakeGo()
        client = go.client("acct-store")

        @client.event(MessageEv)
        async def on_message(c: NewAClient, message: MessageEv) -> None:
            got.append(message.Info.ID)

        gw = Recording(
            transport_factory({ACCOUNT: client}, keepalive_probe_s=None),
            neonize_config(EngineConfig(health_timer=False)),
            random=random.random,
        )
        async with gw:
            h = Harness(go, client, gw)
            await h.connect()
            await h.emit(message_ev("x", "H1"))
            await h.until(lambda: got == ["H1"], "the host's handler")
            assert h.facts(Activity)[0].kind is ActivityKind.INBOUND
            assert set(client.event.list_func) == {17}, "the host's registrations are untouched"

    run(main())


SEND_FAILURES = [
    pytest.param("websocket not connected", False, id="not-connected-before-io"),
    pytest.param(
        "failed to get device list: websocket not connected", False, id="wrapped-before-io"
    ),
    pytest.param("the store doesn't contain a device JID", False, id="not-logged-in-before-io"),
    pytest.param("timed out waiting for message send response", True, id="timeout-after-io"),
    pytest.param("server returned error 479", True, id="unknown-error-after-io"),
]


@pytest.mark.parametrize(("error", "io_started"), SEND_FAILURES)
def test_send_errors_say_whether_io_started(error: str, io_started: bool) -> None:
    async def main() -> None:
        config = EngineConfig(health_timer=False, max_transmissions=1)
        async with harness(on_message=pong, config=config) as h:
            h.go.send_errors.append(error)
            await h.connect()
            await h.emit(message_ev("ping", "F1"))
            await h.until(lambda: bool(h.gw.outcomes), "the reply's outcome")
            (failed,) = h.facts(TransmitFailed)
            assert failed.io_started is io_started
            assert failed.error == f"send failed: {error}"
            outcome = next(iter(h.gw.outcomes.values())).outcome
            # text is never resent (no chosen message id): unknown once I/O started
            assert outcome == ("unknown" if io_started else "failed")

    run(main())


def test_kinds_without_a_sender_fail_before_io_and_a_host_sender_adds_one() -> None:
    sent: list[tuple[str, str]] = []

    async def send_media(client: NewAClient, to: JID, payload: str) -> str | None:
        sent.append((to.User, payload))
        return "MEDIA-ID"

    def hook(message: InboundMessage) -> ReplyRequest:
        return ReplyRequest(kind="media" if message.text == "media" else "group_metadata",
                            payload="/tmp/cat.jpg")  # fmt: skip

    async def main() -> None:
        config = EngineConfig(health_timer=False, max_transmissions=1)
        async with harness(on_message=hook, config=config) as h:
            await h.connect()
            await h.emit(message_ev("lookup", "K1"))
            await h.until(lambda: bool(h.gw.outcomes), "the lookup's outcome")
            (failed,) = h.facts(TransmitFailed)
            assert not failed.io_started
            assert "kind 'group_metadata' is not supported by this adapter" in failed.error
            assert h.go.sent == []
        async with harness(on_message=hook, config=config, senders={"media": send_media}) as h:
            await h.connect()
            await h.emit(message_ev("media", "K2"))
            await h.until(lambda: bool(h.gw.outcomes), "the media's outcome")
            assert next(iter(h.gw.outcomes.values())).outcome == "delivered"
            assert sent == [("15559990000", "/tmp/cat.jpg")]

    run(main())


def test_a_send_in_flight_when_the_connection_drops_fails_after_io_then_the_socket_closes() -> None:
    async def main() -> None:
        async with harness(on_message=pong) as h:
            h.go.hold_sends = True
            await h.connect()
            await h.emit(message_ev("ping", "D1"))
            await h.until(lambda: len(h.go.sent) == 1, "the send in flight")
            await h.emit(DisconnectedEv())
            failed = h.facts(TransmitFailed)
            assert len(failed) == 1
            assert failed[0].io_started
            kinds = [type(e).__name__ for e in h.gw.fed]
            assert kinds.index("TransmitFailed") < kinds.index("SocketClosed")
            await h.until(lambda: bool(h.gw.outcomes), "the reply's outcome")
            assert next(iter(h.gw.outcomes.values())).outcome == "unknown"

    run(main())


def record_send_failures(h: Harness) -> list[tuple[bool, str]]:
    """Catch the transport's send failures before the gateway (which would feed them)."""
    failures: list[tuple[bool, str]] = []

    def on_send_failed(
        account: str, generation: int, attempt: int, message_id: str, io_started: bool, error: str
    ) -> None:
        failures.append((io_started, error))

    h.gw.on_send_failed = on_send_failed  # type: ignore[method-assign]
    return failures


def test_a_send_for_a_closed_attempt_fails_before_io() -> None:
    async def main() -> None:
        async with harness() as h:
            await h.connect()
            await h.emit(DisconnectedEv())
            failures = record_send_failures(h)
            await h.transport.send(ACCOUNT, 1, 1, "late", CHAT, "text", "x")
            await h.transport.send(ACCOUNT, 1, 99, "never", CHAT, "text", "x")
            assert failures == [(False, "connection closed (428): no open socket")] * 2
            assert h.go.sent == []

    run(main())


def test_a_bad_chat_and_an_empty_text_fail_before_io() -> None:
    async def main() -> None:
        async with harness() as h:
            await h.connect()
            failures = record_send_failures(h)
            await h.transport.send(ACCOUNT, 1, 1, "m1", "nobody", "text", "x")
            await h.transport.send(ACCOUNT, 1, 1, "m2", CHAT, "text", "")
            assert [io for io, _ in failures] == [False, False]
            assert failures[0][1].startswith("bad chat JID: JID 'nobody'")
            assert failures[1][1] == "send failed: empty text: WhatsApp shows no empty message"
            assert h.go.sent == []

    run(main())


# --------------------------------------------------------------------------- attempts and runs


def test_full_flow_reconnect_is_a_new_attempt_and_old_attempts_events_are_late() -> None:
    async def main() -> None:
        async with harness(on_message=pong, speed=50) as h:
            run1 = await h.connect()
            await h.emit(message_ev("ping", "F1"))
            await h.until(lambda: len(h.gw.outcomes) == 1, "first reply")

            # the connection drops: attempt 1 closes 408, the engine retries as attempt 2
            await h.emit(DisconnectedEv(status=True))
            assert not run1.alive
            await h.until(lambda: len(h.go.runs) == 2, "the retry's new run")
            run2 = h.go.run()
            await h.emit(ConnectedEv(status=True), run2)
            assert [(o.attempt, o.pn, o.lid) for o in h.facts(SocketOpened)] == [
                (1, ME_PN, ME_LID), (2, ME_PN, ME_LID),
            ]  # fmt: skip
            assert h.gw.engine.controller_socket(ACCOUNT, 1) == 2

            # late events of attempt 1, delivered after attempt 2 opened
            fed = len(h.gw.fed)
            await h.emit(message_ev("late", "F2"), run1)
            late = h.gw.fed[fed]
            assert late == Activity(
                account=ACCOUNT, generation=1, attempt=1, kind=ActivityKind.INBOUND
            )
            assert h.gw.rejections == [], "late, not rejected"
            await h.until(lambda: len(h.gw.outcomes) == 2, "the late message's reply")
            assert h.go.sent[-1][2].conversation == "re: late"
            assert h.gw.outcomes[f"{ACCOUNT}/{CHAT}/F2/0"].outcome == "delivered"
            fed = len(h.gw.fed)
            await h.emit(ConnectedEv(status=True), run1)
            await h.emit(DisconnectedEv(status=True), run1)
            await h.emit(KeepAliveRestoredEv(), run1)
            assert h.gw.fed[fed:] == [Activity(account=ACCOUNT, generation=1, attempt=1)]
            assert h.state() is State.OPEN
            assert any("connected attempt 1 after it was closed: ignored" in n for n in h.notes())

            # logged out on attempt 2
            await h.emit(LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT))
            assert h.facts(SocketClosed)[-1] == SocketClosed(
                account=ACCOUNT, generation=1, attempt=2, status=Status.LOGGED_OUT
            )
            assert h.state() is State.LOGGED_OUT
            await asyncio.sleep(0.1)
            assert len(h.go.runs) == 2, "no reconnect after a logout"

            # relinked by a human: a new generation, replaced by another client
            run3 = await h.start()
            await h.emit(ConnectedEv(status=True), run3)
            await h.emit(StreamReplacedEv(), run3)
            assert h.facts(SocketClosed)[-1] == SocketClosed(
                account=ACCOUNT, generation=2, attempt=3, status=Status.CONNECTION_REPLACED
            )
            assert h.state(2) is State.REPLACED
            await asyncio.sleep(0.1)
            assert len(h.go.runs) == 3, "never reconnect after 440"
        assert all(not r.alive for r in h.go.runs)
        assert other_tasks() == set()

    run(main())


def test_a_terminal_verdict_that_raced_the_close_is_reported_at_the_next_open() -> None:
    async def main() -> None:
        async with harness(speed=50) as h:
            run1 = await h.connect()
            await h.emit(DisconnectedEv())
            await h.emit(LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT), run1)
            await h.until(lambda: len(h.facts(SocketClosed)) == 2, "the next attempt's close")
            assert [(c.attempt, c.status) for c in h.facts(SocketClosed)] == [
                (1, Status.CONNECTION_LOST), (2, Status.LOGGED_OUT),
            ]  # fmt: skip
            assert h.state() is State.LOGGED_OUT
            assert len(h.go.runs) == 1, "a deleted session is not connected again"

    run(main())


def test_a_late_verdict_after_a_newer_attempt_opened_is_not_pinned_on_it() -> None:
    async def main() -> None:
        async with harness(speed=50) as h:
            run1 = await h.connect()
            await h.emit(DisconnectedEv())
            await h.until(lambda: len(h.go.runs) == 2, "the retry's run")
            await h.emit(ConnectedEv(), h.go.run())
            await h.emit(StreamReplacedEv(), run1)
            assert h.state() is State.OPEN
            assert len(h.facts(SocketClosed)) == 1
            assert any("stream replaced after attempt 1 closed: ignored" in n for n in h.notes())

    run(main())


def test_a_run_that_ends_by_itself_closes_its_attempt() -> None:
    async def main() -> None:
        async with harness(speed=50) as h:
            run1 = await h.start()
            run1.end("failed to connect: dial tcp: i/o timeout")
            await h.until(lambda: bool(h.facts(SocketClosed)), "the close")
            assert h.facts(SocketClosed)[0] == SocketClosed(
                account=ACCOUNT, generation=1, attempt=1, status=None
            )
            assert any("i/o timeout" in n for n in h.notes())
            await h.until(lambda: len(h.go.runs) == 2, "the engine's retry")

    run(main())


def test_a_run_that_will_not_stop_blocks_the_next_connect_until_it_ends() -> None:
    async def main() -> None:
        async with harness(grace=0.05, speed=50) as h:
            run1 = await h.connect()
            h.go.stop_hangs = True
            await h.emit(DisconnectedEv())
            assert run1.alive
            await h.until(lambda: len(h.facts(SocketClosed)) >= 2, "the refused attempt 2")
            assert h.facts(SocketClosed)[1].status is None
            assert len(h.go.runs) == 1, "never connect while the old run may still call back"
            assert any("has not ended" in n for n in h.notes())
            h.go.stop_hangs = False
            run1.end()
            await h.until(lambda: len(h.go.runs) == 2, "connect once the old run ended")

    run(main())


def test_an_open_on_another_event_loop_than_neonizes_fails_loudly() -> None:
    async def main() -> None:
        other = asyncio.new_event_loop()
        try:
            async with harness() as h:
                neonize_events.event_global_loop = other
                h.gw.feed(Start(account=ACCOUNT))
                await h.until(lambda: bool(h.facts(SocketClosed)), "the refused open")
                assert h.go.runs == []
                assert any("another event loop" in n for n in h.notes())
        finally:
            other.close()

    run(main())


def test_an_account_without_a_client_fails_its_open() -> None:
    async def main() -> None:
        async with harness() as h:
            h.gw.feed(Start(account="stranger"))
            await h.until(lambda: bool(h.facts(SocketClosed)), "the close")
            assert h.facts(SocketClosed)[0] == SocketClosed(
                account="stranger", generation=1, attempt=1, status=None
            )
            assert any("no neonize client for account 'stranger'" in n for n in h.notes())

    run(main())


def test_no_client_call_reaches_a_stopped_run() -> None:
    async def main() -> None:
        async with harness(speed=50) as h:
            run1 = await h.connect()
            await h.emit(DisconnectedEv())
            calls = len(h.go.calls)
            await h.emit(ConnectedEv(), run1)  # would need GetMe on a stopped client
            assert "GetMe" not in h.go.calls[calls:]

    run(main())


def test_shutdown_stops_every_run_and_leaves_no_task() -> None:
    async def main() -> None:
        async with harness(on_message=pong, probe=0.01) as h:
            await h.connect()
            h.go.hold_sends = True
            await h.emit(message_ev("ping", "S1"))
            await h.until(lambda: len(h.go.sent) == 1, "a send in flight")
        assert not h.go.run().alive
        assert h.gw.outcomes[f"{ACCOUNT}/{CHAT}/S1/0"].outcome == "unknown"
        assert other_tasks() == set()

    run(main())


def test_shutdown_waits_for_a_close_already_in_progress() -> None:
    async def main() -> None:
        async with harness(grace=0.2) as h:
            run1 = await h.connect()
            h.go.stop_hangs = True
            emitting = asyncio.create_task(run1.emit(DisconnectedEv()))
            await h.until(lambda: "Stop" in h.go.calls, "the close in progress")
        await emitting
        # the 408 close in progress was reported, not cut short by the shutdown
        assert h.facts(SocketClosed) == [
            SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=Status.CONNECTION_LOST)
        ]
        run1.end()

    run(main())


def test_a_send_that_outlives_its_close_is_failed_at_the_close_and_its_outcome_dropped() -> None:
    async def main() -> None:
        async with harness(on_message=pong, grace=0.05) as h:
            h.go.hold_sends = True
            h.go.disconnect_releases = False
            await h.connect()
            await h.emit(message_ev("ping", "O1"))
            await h.until(lambda: len(h.go.sent) == 1, "the send in flight")
            await h.emit(DisconnectedEv())
            (failed,) = h.facts(TransmitFailed)
            assert failed.io_started
            assert failed.error == "connection closed (status 408) before the ack"
            h.go.release_sends()
            await asyncio.sleep(0.05)
            assert len(h.facts(TransmitFailed)) == 1, "its late outcome is dropped"
            assert not h.facts(TransmitAcked)

    run(main())


def test_messages_held_by_an_attempt_that_never_opened_still_reach_the_hook() -> None:
    seen: list[str] = []

    def hook(message: InboundMessage) -> None:
        seen.append(message.message_id)

    async def main() -> None:
        async with harness(on_message=hook) as h:
            await h.start()
            await h.emit(message_ev("early", "H1"))
            assert seen == []
            await h.emit(DisconnectedEv())
            assert seen == ["H1"], "received, so handed over"
            assert not h.facts(Activity), "no activity for an attempt that never opened"

    run(main())


def test_odd_hook_answers_and_refused_captures_send_nothing() -> None:
    answers: dict[str, object] = {
        "string": "not a request",
        "tuple": (ReplyRequest(payload="a"), "junk", ReplyRequest(payload="b")),
        "kind": ReplyRequest(kind="sticker", payload="x"),
        "number": ReplyRequest(payload=_returns_a_number),
    }

    def hook(message: InboundMessage) -> Any:
        return answers[message.text]

    async def main() -> None:
        async with harness(on_message=hook) as h:
            await h.connect()
            for text in answers:
                await h.emit(message_ev(text, text))
            await h.until(lambda: len(h.go.sent) == 2, "the tuple's two replies")
            captured = [c.reply_id for c in h.facts(ReplyCaptured)]
            assert captured == [
                f"{ACCOUNT}/{CHAT}/tuple/0",
                f"{ACCOUNT}/{CHAT}/tuple/2",
                f"{ACCOUNT}/{CHAT}/kind/0",
                f"{ACCOUNT}/{CHAT}/number/0",
            ]
            assert [r.code for r in h.gw.rejections] == ["unknown_kind"]
            await asyncio.sleep(0.05)
            assert sorted(m.conversation for _, _, m in h.go.sent) == ["a", "b"]
            assert len(h.facts(ReplyReady)) == 2

    run(main())


async def _returns_a_number() -> str:
    value: Any = 42
    return value  # type: ignore[no-any-return]


def test_a_message_without_a_chat_gets_no_reply_and_a_raising_host_handler_is_contained() -> None:
    async def main() -> None:
        go = FakeGo()
        client = go.client("acct-store")

        @client.event(MessageEv)
        async def broken(c: NewAClient, message: MessageEv) -> None:
            raise RuntimeError("host bug")

        gw = Recording(
            transport_factory({ACCOUNT: client}, on_message=pong, keepalive_probe_s=None),
            neonize_config(EngineConfig(health_timer=False)),
            random=random.random,
        )
        async with gw:
            h = Harness(go, client, gw)
            await h.connect()
            nowhere = message_ev("x", "C1")
            nowhere.Info.MessageSource.Chat.User = ""
            await h.emit(nowhere)
            await h.emit(message_ev("y", "C2"))
            assert [c.reply_id for c in h.facts(ReplyCaptured)] == [f"{ACCOUNT}/{CHAT}/C2/0"]
            assert len(h.facts(Activity)) == 2

    run(main())


def test_transport_calls_out_of_order_are_answered() -> None:
    async def main() -> None:
        async with harness() as h:
            await h.connect()
            transport = h.transport
            with pytest.raises(ValueError, match="already open or opening"):
                await transport.open(ACCOUNT, 1, 1)
            # a new attempt while the last is open: the last one is closed first
            await transport.open(ACCOUNT, 1, 2)
            assert [(c.attempt, c.status) for c in h.facts(SocketClosed)] == [(1, None)]
            await h.until(lambda: len(h.go.runs) == 2, "attempt 2's run")
            assert not h.go.run(0).alive
            await transport.aclose()
            assert [(c.attempt, c.status) for c in h.facts(SocketClosed)] == [(1, None), (2, None)]
            assert not h.go.run().alive
            with pytest.raises(RuntimeError, match="transport is closed"):
                await transport.open(ACCOUNT, 1, 3)

    run(main())


def test_a_connect_that_raises_or_returns_no_run_closes_its_attempt() -> None:
    async def raises() -> object:
        raise RuntimeError("no database")

    async def returns_nothing() -> object:
        return None

    async def main() -> None:
        for connect, why in ((raises, "no database"), (returns_nothing, "not its run task")):
            async with harness() as h:
                h.client.connect = connect  # type: ignore[method-assign,assignment]
                h.gw.feed(Start(account=ACCOUNT))
                await h.until(lambda: bool(h.facts(SocketClosed)), "the close")
                assert h.facts(SocketClosed)[0].status is None
                assert any(why in n for n in h.notes())
                assert isinstance(h.client.event, neonize_events.Event)
                assert h.client.event.list_func == {}, "the host's dispatcher is back"

    run(main())


def test_neonize_gateway_builds_a_working_gateway() -> None:
    async def main() -> None:
        go = FakeGo()
        client = go.client("acct-store")
        gw = neonize_gateway({ACCOUNT: client}, random=random.random, on_message=pong, speed=10)
        async with gw:
            transport = gw.transport
            assert isinstance(transport, NeonizeTransport)
            assert gw.engine.config.resendable_kinds == RESENDABLE_KINDS
            gw.feed(Start(account=ACCOUNT))
            h = Harness(go, client, Recording.__new__(Recording))
            h.gw = gw  # type: ignore[assignment]
            await h.until(lambda: len(go.runs) == 1, "the run")
            before = transport.handled
            await go.run().emit(ConnectedEv())
            await go.run().emit(message_ev("ping", "G1"))
            await h.until(lambda: transport.handled >= before + 2, "both events")
            await h.until(lambda: bool(gw.outcomes), "the reply")
            assert next(iter(gw.outcomes.values())).outcome == "delivered"

    run(main())


# --------------------------------------------------------------------------- the documented example


def test_the_documented_example_runs_against_neonizes_client() -> None:
    """docs/neonize.md embeds docs/neonize_echo.py; run it with a fake Go library."""
    root = Path(__file__).resolve().parent.parent
    program = (root / "docs" / "neonize_echo.py").read_text("utf-8")
    doc = (root / "docs" / "neonize.md").read_text("utf-8")
    assert f"```python\n{program}```" in doc, (
        "docs/neonize.md must embed docs/neonize_echo.py as is"
    )
    example = runpy.run_path(str(root / "docs" / "neonize_echo.py"), run_name="example")

    async def main() -> None:
        go = FakeGo()
        client = go.client("heirline-echo")
        stop = asyncio.Event()
        serving = asyncio.create_task(example["serve"](client, stop))
        await _poll(lambda: len(go.runs) == 1, "the example connects")
        await go.run().emit(ConnectedEv(status=True))
        await go.run().emit(message_ev("hello", "X1"))
        await _poll(lambda: len(go.sent) == 1, "the example replies")
        assert go.sent[0][2].conversation == "you said: hello"
        assert go.read[0][1] == ["X1"]
        stop.set()
        await serving
        assert not go.run().alive

    run(main())


async def _poll(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not within 5 s: {what}")
