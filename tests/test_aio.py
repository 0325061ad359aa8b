"""The asyncio runtime over real loopback sockets: same outcomes as the fake, nothing leaked."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from heirline.adapters.aio import MAX_SPEED, MIN_SPEED, AsyncGateway, speed_problem
from heirline.adapters.channel import ChannelServer
from heirline.adapters.demo import (
    ACCOUNT,
    REPLY,
    ActResult,
    demo_config,
    run_act_async,
    run_act_fake,
)
from heirline.adapters.fake import At, Script, ScriptTimeout, Until
from heirline.core.engine import EngineConfig
from heirline.core.events import ReplyCaptured, ReplyReady, Start

T = TypeVar("T")
TIMEOUT = 20.0


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
            server.add_account("a", pn="15550001111@s.whatsapp.net")
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
            server.add_account("a", pn="15550001111@s.whatsapp.net")
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
            server.add_account(ACCOUNT, pn="15550001111@s.whatsapp.net")
            gw = AsyncGateway.over_channel(
                server.port, demo_config(), random=random.Random(2).random, speed=50
            )

            def script() -> Script:
                gw.feed(Start(account=ACCOUNT))
                yield Until(lambda: gw.engine.controller_state(ACCOUNT, 1) == "open", 5_000, "open")
                gw.feed(ReplyCaptured(reply_id="y", account=ACCOUNT, generation=1, chat="c@g.us"))
                server.close_account(ACCOUNT, 500)
                gw.feed(ReplyReady(reply_id="y", payload="p"))  # A may still look open
                yield At(gw.now_ms() + 50)

            async with gw:
                await gw.run(script())
            return gw

    gw = run(main())
    # Whatever the race, the reply never ended wrongly and nothing was rejected.
    assert gw.rejections == []
    assert "y" not in gw.outcomes or gw.outcomes["y"].outcome == "delivered"


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


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="speed"):
        AsyncGateway.over_channel(1234, random=random.random, speed=0)


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
