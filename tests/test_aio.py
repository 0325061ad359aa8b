"""The asyncio runtime over real loopback sockets: same outcomes as the fake, nothing leaked."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from heirline.adapters.aio import MAX_SPEED, MIN_SPEED, AsyncGateway, speed_problem
from heirline.adapters.channel import ChannelServer
from heirline.adapters.demo import act_scenario, run_act_async, run_act_fake
from heirline.adapters.fake import Script, ScriptTimeout, TimelineEntry, Until
from heirline.adapters.scenario import ScenarioResult as ActResult
from heirline.adapters.transport import ChannelTransport
from heirline.core.engine import EngineConfig
from heirline.core.events import ReplyCaptured, ReplyReady, Start
from heirline.core.lifecycle import LifecycleConfig

ACCOUNT = "default"
REPLY = "r1"


def demo_config() -> EngineConfig:
    """The engine as the demo's incident runs it (examples/incident.toml's [engine])."""
    return act_scenario("incident").config


T = TypeVar("T")
TIMEOUT = 20.0
PN = "15550001111@s.whatsapp.net"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh loop with a timeout (its wrapper task is named ``test-main``)."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        task.set_name("test-main")
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(main())


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks alive besides the running test itself."""
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not me and t.get_name() != "test-main"}


def _essence(act: ActResult) -> tuple[object, ...]:
    """What must be identical on every runtime: outcome kind, via, generation, ledger."""
    outcome = act.outcomes[REPLY]
    ledger = tuple(
        (str(i.identity), i.message_ids, i.duplicates_suppressed)
        for i in act.ledger.summary().identities
    )
    return (outcome.outcome, outcome.via, outcome.generation, act.transmissions, ledger)


@pytest.mark.parametrize("act", ["incident", "relink"])
def test_async_outcomes_match_the_fake_runtime(act: str) -> None:
    async def main() -> tuple[ActResult, set[asyncio.Task[Any]]]:
        result = await run_act_async(act, speed=50)
        return result, other_tasks()

    real, leaked = run(main())
    fake = run_act_fake(act)
    assert _essence(real) == _essence(fake)
    assert real.ok
    assert leaked == set()


def test_incident_retry_message_and_restart_gap_on_real_sockets() -> None:
    real = run(run_act_async("incident", speed=20))
    retry = next(e for e in real.timeline if e.code == "lifecycle.retry_scheduled")
    assert retry.message == "Web connection closed (status 408). Retry 1/12 in 2.14s…"
    restart = next(e for e in real.timeline if e.code == "health_restart")
    # 114 engine ms after the 408 was observed (plus at most a loop tick, x speed)
    assert 114 <= restart.at_ms - retry.at_ms < 114 + 200


def test_gateway_closes_every_socket_and_task_on_shutdown() -> None:
    async def main() -> tuple[int, int, frozenset[asyncio.Task[None]], set[asyncio.Task[Any]]]:
        async with ChannelServer() as server:
            server.add_account("a", pn=PN)
            gw = AsyncGateway.over_channel(
                server.port, EngineConfig(health_timer=False), random=random.Random(1).random
            )
            async with gw:
                gw.feed(Start(account="a"))
                assert await gw.wait_until(
                    lambda: gw.engine.controller_state("a", 1) == "open", 5_000
                )
                gw.feed(ReplyCaptured(reply_id="x", account="a", generation=1, chat="c@g.us"))
                live = server.connection_count("a")
            await gw.aclose()  # idempotent
            # give the server a moment to see the EOF of the client side
            for _ in range(100):
                if server.connection_count() == 0:
                    break
                await asyncio.sleep(0.01)
            after = server.connection_count()
        others = other_tasks()
        return live, after, gw.tasks, others

    live, after, gw_tasks, others = run(main())
    assert live == 1
    assert after == 0
    assert gw_tasks == frozenset()
    assert others == set()


def test_timers_fire_at_engine_deadlines_scaled_by_speed() -> None:
    async def main() -> list[str]:
        async with ChannelServer() as server:
            server.add_account("a", pn=PN)
            gw = AsyncGateway.over_channel(
                server.port,
                EngineConfig(health_timer=False),
                random=random.Random(73).random,
                speed=100,
            )
            async with gw:
                gw.feed(Start(account="a"))
                await gw.wait_until(lambda: gw.engine.controller_state("a", 1) == "open", 5_000)
                server.close_account("a", 408)  # retry 1 due 2140 engine ms later = 21 ms real
                reopened = await gw.wait_until(
                    lambda: any(e.code == "lifecycle.retrying" for e in gw.timeline), 10_000
                )
                assert reopened
                await gw.wait_until(lambda: gw.engine.controller_state("a", 1) == "open", 5_000)
                retry = next(e for e in gw.timeline if e.code == "lifecycle.retry_scheduled")
                fired = next(e for e in gw.timeline if e.code == "lifecycle.retrying")
                assert fired.at_ms - retry.at_ms >= 2140
            return [e.code for e in gw.timeline]

    codes = run(main())
    assert codes.count("socket_opened") == 2


def test_send_on_an_unknown_socket_fails_before_io_and_the_reply_waits() -> None:
    async def main() -> AsyncGateway:
        async with ChannelServer() as server:
            server.add_account(ACCOUNT, pn=PN)
            gw = AsyncGateway.over_channel(
                server.port, demo_config(), random=random.Random(2).random, speed=50
            )

            def script() -> Script:
                gw.feed(Start(account=ACCOUNT))
                yield Until(lambda: gw.engine.controller_state(ACCOUNT, 1) == "open", 5_000, "open")
                gw.feed(ReplyCaptured(reply_id="y", account=ACCOUNT, generation=1, chat="c@g.us"))
                server.close_account(ACCOUNT, 500)
                gw.feed(ReplyReady(reply_id="y", payload="p"))  # A may still look open
                yield Until(lambda: "y" in gw.outcomes, 30_000, "y ends")

            async with gw:
                await gw.run(script())
            assert server.ledger.received(PN) == ("y",)
            return gw

    gw = run(main())
    # Whatever the race (the send failing before I/O, or written into the closing
    # socket), A reconnects and the reply goes out through it, once; nothing rejected.
    assert gw.rejections == []
    outcome = gw.outcomes["y"]
    assert (outcome.outcome, outcome.via, outcome.generation) == ("delivered", "origin", 1)
    assert [t.attempt for t in gw.transmissions][-1] == 2


def test_script_timeout_on_the_loop() -> None:
    async def main() -> None:
        async with ChannelServer() as server:
            gw = AsyncGateway.over_channel(server.port, random=random.Random(0).random, speed=100)
            async with gw:

                def never() -> Script:
                    yield Until(lambda: False, 500, "nothing")

                await gw.run(never())

    with pytest.raises(ScriptTimeout, match="nothing"):
        run(main())


@pytest.mark.parametrize("speed", [0, -1, float("inf"), float("nan")])
def test_speed_must_be_finite_and_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        AsyncGateway.over_channel(1234, random=random.random, speed=speed)
    with pytest.raises(ValueError, match="speed"):
        AsyncGateway(
            lambda callbacks: ChannelTransport(1234, callbacks), random=random.random, speed=speed
        )


@pytest.mark.parametrize(
    ("speed", "fragment"),
    [
        (float("inf"), "must be a finite number, got inf"),
        (float("nan"), "must be a finite number, got nan"),
        (1e9, "between 1 (real time) and 1000, got 1e+09"),
        (1e306, "between 1 (real time) and 1000"),
        (0.5, "got 0.5"),
        (-1, "got -1"),
        (MAX_SPEED + 0.001, "and 1000"),
    ],
)
def test_speed_must_be_finite_and_within_what_the_loop_honours(speed: float, fragment: str) -> None:
    """An infinite speed used to overflow the engine clock (int(inf)) mid-run."""
    with pytest.raises(ValueError, match="speed") as caught:
        AsyncGateway.over_channel(1234, random=random.random, speed=speed)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("speed", [MIN_SPEED, 20, MAX_SPEED])
def test_speeds_within_the_bounds_are_taken(speed: float) -> None:
    assert speed_problem(speed) is None
    assert AsyncGateway.over_channel(1234, random=random.random, speed=speed).speed == speed


# ---------------------------------------------------------------- activity and the watchdog

WATCHDOG_MS = 6_000
SPEED = 20  # the watchdog is 300 ms of real time; the transport pings every 100 ms


def _watchdog_config() -> EngineConfig:
    return EngineConfig(health_timer=False, lifecycle=LifecycleConfig(watchdog_ms=WATCHDOG_MS))


class FramesSeen(AsyncGateway):
    """Records every frame the transport reports (engine time, account, attempt)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[tuple[int, str, int]] = []

    def on_activity(self, account: str, generation: int, attempt: int) -> None:
        self.frames.append((self.now_ms(), account, attempt))
        super().on_activity(account, generation, attempt)


def _entries(timeline: list[TimelineEntry], code: str) -> list[TimelineEntry]:
    return [e for e in timeline if e.code == code]


def test_frames_are_activity_and_keep_the_watchdog_quiet_on_a_healthy_socket() -> None:
    async def main() -> FramesSeen:
        async with ChannelServer() as server:
            server.add_account("a", pn=PN)
            gw = FramesSeen.over_channel(
                server.port, _watchdog_config(), random=random.Random(1).random, speed=SPEED
            )
            async with gw:
                gw.feed(Start(account="a"))
                assert await gw.wait_until(
                    lambda: gw.engine.controller_state("a", 1) == "open", 5_000
                )
                await gw.run_until(gw.now_ms() + 5 * WATCHDOG_MS)  # 1.5 s of real time
                assert gw.engine.controller_state("a", 1) == "open"
                assert gw.engine.controller_socket("a", 1) == 1
            return gw

    gw = run(main())
    assert _entries(gw.timeline, "lifecycle.watchdog") == []
    assert len(gw.frames) >= 5  # a pong every 100 ms for 1.5 s; allow a slow machine
    assert {(account, attempt) for _, account, attempt in gw.frames} == {("a", 1)}


def test_without_frames_the_watchdog_closes_with_499_and_the_controller_reconnects() -> None:
    """The counterpart of the test above: the same socket, no keepalive, no traffic."""

    async def main() -> FramesSeen:
        async with ChannelServer() as server:
            server.add_account("a", pn=PN)
            gw = FramesSeen(
                lambda callbacks: ChannelTransport(server.port, callbacks, keepalive_s=None),
                _watchdog_config(),
                random=random.Random(1).random,
                speed=SPEED,
            )
            async with gw:
                gw.feed(Start(account="a"))
                assert await gw.wait_until(
                    lambda: (
                        gw.engine.controller_socket("a", 1) == 2
                        and gw.engine.controller_state("a", 1) == "open"
                    ),
                    4 * WATCHDOG_MS,
                )
                assert gw.current == {"a": 1}  # the same controller reconnected: no restart
            return gw

    gw = run(main())
    assert gw.frames == []
    opened = _entries(gw.timeline, "socket_opened")[0]
    (watchdog,) = [
        e for e in _entries(gw.timeline, "lifecycle.watchdog") if e.at_ms < 2 * WATCHDOG_MS
    ]
    assert watchdog.generation == 1
    assert watchdog.at_ms - opened.at_ms >= WATCHDOG_MS
    closed = _entries(gw.timeline, "lifecycle.retry_scheduled")[0]
    assert closed.fields["status"] == 499


def test_a_half_open_connection_is_closed_by_the_watchdog_and_the_reply_goes_out_next() -> None:
    async def main() -> tuple[FramesSeen, int, tuple[str, ...], int]:
        async with ChannelServer() as server:
            server.add_account("a", pn=PN)
            gw = FramesSeen.over_channel(
                server.port, _watchdog_config(), random=random.Random(73).random, speed=SPEED
            )
            async with gw:
                gw.feed(Start(account="a"))
                assert await gw.wait_until(lambda: len(gw.frames) >= 2, 5_000)
                # the capture's own engine time is at or after this (it is the last activity)
                half_open_at = gw.now_ms()
                gw.feed(ReplyCaptured(reply_id="r", account="a", generation=1, chat="c@g.us"))
                assert server.half_open("a") == 1
                gw.feed(ReplyReady(reply_id="r", payload="hi"))  # into the half-open socket
                assert await gw.wait_until(lambda: "r" in gw.outcomes, 10 * WATCHDOG_MS)
            return gw, half_open_at, server.ledger.received(PN), server.ledger.duplicates_suppressed

    gw, half_open_at, received, suppressed = run(main())
    (watchdog,) = _entries(gw.timeline, "lifecycle.watchdog")
    assert watchdog.generation == 1
    # silent since the capture (just before the half-open); closed within two periods
    assert WATCHDOG_MS <= watchdog.at_ms - half_open_at <= 2 * WATCHDOG_MS
    closed = _entries(gw.timeline, "lifecycle.retry_scheduled")[0]
    assert closed.fields["status"] == 499
    outcome = gw.outcomes["r"]
    assert (outcome.outcome, outcome.via, outcome.generation) == ("delivered", "origin", 1)
    assert [t.attempt for t in gw.transmissions] == [1, 2]
    assert received == ("r",)
    assert suppressed == 0  # the copy sent into the half-open socket never arrived
    assert gw.engine.controller_socket("a", 1) == 2
    assert gw.rejections == []


# --------------------------------------------------------------------------- shutdown

ENDINGS = ("reply_delivered", "reply_refused", "reply_failed", "reply_unknown")


@pytest.mark.parametrize("case", ["pending", "waiting_for_successor", "in_flight"])
def test_aclose_ends_every_open_reply_once_and_leaks_nothing(case: str) -> None:
    async def main() -> tuple[AsyncGateway, set[asyncio.Task[Any]], int]:
        async with ChannelServer() as server:
            server.add_account("a", pn=PN)
            server.set_ack_delay(60_000)  # an ack never comes before the shutdown
            gw = AsyncGateway.over_channel(
                server.port, EngineConfig(health_timer=False), random=random.Random(73).random
            )
            await gw.start()
            gw.feed(Start(account="a"))
            assert await gw.wait_until(lambda: gw.engine.controller_state("a", 1) == "open", 5_000)
            gw.feed(ReplyCaptured(reply_id="r", account="a", generation=1, chat="c@g.us"))
            if case == "waiting_for_successor":
                server.close_account("a", 408)
                assert await gw.wait_until(
                    lambda: gw.engine.controller_state("a", 1) == "backoff", 5_000
                )
                gw.boot_ms = 600_000  # B boots slowly: the reply waits for it
                gw.feed(Start(account="a"))
                gw.feed(ReplyReady(reply_id="r", payload="hi"))
                assert gw.engine.reply_state("r") == "waiting"
                assert gw.booting == frozenset({("a", 2)})
            elif case == "in_flight":
                gw.feed(ReplyReady(reply_id="r", payload="hi"))
                for _ in range(500):  # bounded: the frame reaches the server within ms
                    if server.ledger.total:
                        break
                    await asyncio.sleep(0.01)
                assert server.ledger.received(PN) == ("r",)
                assert gw.engine.in_flight() == {"r": 1}
            else:
                assert gw.engine.reply_state("r") == "pending"
            transport = gw.transport
            assert isinstance(transport, ChannelTransport)
            await gw.aclose()
            assert gw.engine.shut_down
            assert gw.tasks == frozenset()
            assert gw.pending_timers == frozenset()
            assert gw.booting == frozenset()
            assert transport.sockets == ()
            for _ in range(500):  # the server sees the client's EOF
                if server.connection_count() == 0:
                    break
                await asyncio.sleep(0.01)
            connections = server.connection_count()
        return gw, other_tasks(), connections

    gw, others, connections = run(main())
    outcome = gw.outcomes["r"]
    if case == "in_flight":
        assert outcome.outcome == "unknown"
        assert outcome.reason.startswith("gateway shutdown; a transmission may have reached")
    else:
        assert (outcome.outcome, outcome.reason) == (
            "failed",
            "gateway shutdown before the reply was sent",
        )
    assert [e.code for e in gw.timeline if e.code in ENDINGS] == [f"reply_{outcome.outcome}"]
    assert gw.rejections == []
    assert others == set()
    assert connections == 0
