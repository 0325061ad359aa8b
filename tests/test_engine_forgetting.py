"""State stays bounded: generations nothing refers to are forgotten, and facts about them are late.

The engine keeps each account's newest generation and the older ones that are
not over or are named by an open reply (as origin, or as the carrier of a
transmission in flight). A fact about a forgotten generation -- older than the
newest, so it was issued -- is answered as late (a log, or a close for a
socket that opened anyway, or ``generation_forgotten`` for a capture), never
as ``unknown_controller``, which is kept for generations never issued.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_support import (
    ACCOUNT,
    GROUP,
    PN,
    Run,
    codes,
    fingerprint,
    incident_config,
    of,
    restart_cycles,
    retained_size,
)

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import Engine, EngineConfig
from heirline.core.timers import DeadlineTimer, RetryTimer, WatchdogTimer


def superseded() -> Run:
    """Generation 1 opened socket 1 and was replaced by generation 2 (socket 2, open)."""
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    out = run.at(2_000, ev.Start(account=ACCOUNT))
    assert (
        fx.CloseSocket(
            account=ACCOUNT, generation=1, attempt=1, reason="superseded by generation 2"
        )
        in out
    )
    run.at(2_100, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    return run


def test_a_superseded_generation_nothing_names_is_forgotten() -> None:
    run = superseded()
    assert run.engine.generations(ACCOUNT) == (2,)
    assert run.engine.controller_state(ACCOUNT, 1) is None
    assert run.engine.controller_socket(ACCOUNT, 1) is None
    assert run.engine.controller_identity(ACCOUNT, 1) is None
    assert run.engine.current(ACCOUNT) == 2


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=428), ["late_close"]),
        (ev.Stop(account=ACCOUNT, generation=1), ["stop_ignored"]),
        (ev.TimerFired(timer=RetryTimer(ACCOUNT, 1)), ["stale_timer"]),
        (ev.TimerFired(timer=WatchdogTimer(ACCOUNT, 1)), ["stale_timer"]),
        (
            ev.WatchdogSilence(account=ACCOUNT, generation=1, attempt=1, silent_ms=5),
            ["stale_watchdog"],
        ),
        (ev.Activity(account=ACCOUNT, generation=1, attempt=1), []),
        (
            ev.Activity(account=ACCOUNT, generation=1, attempt=1, kind=ev.ActivityKind.INBOUND),
            [],
        ),
        (
            ev.ReplyCaptured(reply_id="r", account=ACCOUNT, generation=1, chat=GROUP),
            ["generation_forgotten"],
        ),
    ],
)
def test_facts_about_a_forgotten_generation_are_late(event: ev.Event, expected: list[str]) -> None:
    run, twin = superseded(), superseded()
    out = run.at(3_000, event)
    assert codes(out) == expected
    assert len(out) == len(expected)  # nothing but the log (or the rejection)
    assert run.engine.generations(ACCOUNT) == (2,)
    # Later, the engine is byte for byte the twin that never heard the late fact.
    for r in (run, twin):
        r.at(3_001, ev.Activity(account=ACCOUNT, generation=2, attempt=2))
    assert fingerprint(run.engine) == fingerprint(twin.engine)


def test_a_socket_of_a_forgotten_generation_that_opens_after_all_is_closed() -> None:
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))  # socket 1 connecting
    run.at(500, ev.Start(account=ACCOUNT))  # generation 2, socket 2; generation 1 forgotten
    assert run.engine.generations(ACCOUNT) == (2,)
    out = run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    assert out == [
        fx.CloseSocket(
            account=ACCOUNT,
            generation=1,
            attempt=1,
            reason="stale socket: generation 1 is over",
        )
    ]
    assert run.engine.generations(ACCOUNT) == (2,)


@pytest.mark.parametrize("generation", [0, -1, 3, 2**63])
def test_a_generation_never_issued_is_unknown_controller(generation: int) -> None:
    run = superseded()
    for event in (
        ev.SocketClosed(account=ACCOUNT, generation=generation, attempt=1),
        ev.Stop(account=ACCOUNT, generation=generation),
        ev.TimerFired(timer=RetryTimer(ACCOUNT, generation)),
        ev.ReplyCaptured(reply_id="r", account=ACCOUNT, generation=generation, chat=GROUP),
    ):
        assert codes(run.at(3_000, event)) == ["unknown_controller"], event


def test_the_origin_of_an_open_reply_is_kept_until_the_reply_ends() -> None:
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    run.at(1_500, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(2_000, ev.Start(account=ACCOUNT))
    assert run.engine.generations(ACCOUNT) == (1, 2)  # named by r1 (its origin)
    assert run.engine.controller_state(ACCOUNT, 1) == "stopped"
    run.at(2_100, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    # A third generation: 2 is not named by anything and goes, 1 stays.
    run.at(2_200, ev.Start(account=ACCOUNT))
    assert run.engine.generations(ACCOUNT) == (1, 3)
    run.at(2_300, ev.SocketOpened(account=ACCOUNT, generation=3, attempt=3, pn=PN))
    sent = run.at(2_400, ev.ReplyReady(reply_id="r1", payload="x"))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, sent)] == [(3, 3)]
    assert run.engine.generations(ACCOUNT) == (1, 3)
    run.at(2_500, ev.TransmitAcked(reply_id="r1", generation=3, attempt=3))
    assert run.engine.generations(ACCOUNT) == (3,)


def test_an_origin_that_carried_its_reply_is_kept_until_the_reply_ends_at_its_deadline() -> None:
    run = Run(incident_config(reply_deadline_ms=60_000))
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    run.at(1_500, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(1_600, ev.ReplyReady(reply_id="r1", payload="x"))  # in flight through socket 1
    assert run.engine.in_flight() == {"r1": 1}
    out = run.at(2_000, ev.Start(account=ACCOUNT))  # stops 1: the transmission is lost
    assert run.engine.in_flight() == {}
    assert run.engine.reply_state("r1") == "waiting"
    assert not of(fx.ReplyFailed, out)
    assert run.engine.generations(ACCOUNT) == (1, 2)
    # The successor never opens: the reply ends at its deadline, and only then is 1 forgotten.
    ended = run.at(61_500, ev.TimerFired(timer=DeadlineTimer("r1")))
    assert [f.outcome for f in of(fx.ReplyFailed, ended)] == ["unknown"]
    assert run.engine.generations(ACCOUNT) == (2,)
    # Socket 1's ack after everything ended: late, judged from the memory of ended replies.
    late = run.at(62_000, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    assert codes(late) == ["late_ack"]


def test_a_carrier_is_named_only_while_its_transmission_is_in_flight() -> None:
    # Generation 1 captures; generation 2 carries the reply. When 2 is stopped in flight the
    # transmission is lost, so 2 no longer carries it: 2 is forgotten although the reply is
    # open, and 1 (its origin) stays. A late ack of socket 2 is still judged (from the reply).
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    run.at(1_500, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(2_000, ev.Start(account=ACCOUNT))
    run.at(2_100, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    sent = run.at(2_200, ev.ReplyReady(reply_id="r1", payload="x"))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, sent)] == [(2, 2)]
    assert run.engine.in_flight() == {"r1": 2}
    assert run.engine.generations(ACCOUNT) == (1, 2)
    run.at(2_300, ev.Start(account=ACCOUNT))
    assert run.engine.in_flight() == {}
    assert run.engine.reply_state("r1") == "waiting"
    assert run.engine.generations(ACCOUNT) == (1, 3)
    again = run.at(2_400, ev.SocketOpened(account=ACCOUNT, generation=3, attempt=3, pn=PN))
    assert [(t.generation, t.attempt, t.transmission) for t in of(fx.Transmit, again)] == [
        (3, 3, 2)
    ]
    assert run.engine.generations(ACCOUNT) == (1, 3)
    # Socket 2's ack arrives late: the receiver has the message, delivered via generation 2.
    done = run.at(2_500, ev.TransmitAcked(reply_id="r1", generation=2, attempt=2))
    assert of(fx.ReplyDelivered, done) == [
        fx.ReplyDelivered(reply_id="r1", generation=2, via="successor")
    ]
    assert run.engine.generations(ACCOUNT) == (3,)
    assert codes(run.at(2_600, ev.TransmitAcked(reply_id="r1", generation=3, attempt=3))) == [
        "late_ack"
    ]


# ------------------------------------------------------------ remember_ended


def test_remember_ended_is_an_exact_bound() -> None:
    run = Run(EngineConfig(remember_ended=3))
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    for i in range(1, 4):
        rid = f"r{i}"
        run.at(2_000 + i, ev.ReplyCaptured(reply_id=rid, account=ACCOUNT, generation=1, chat=GROUP))
        run.at(2_000 + i, ev.ReplyReady(reply_id=rid, payload="x"))
        run.at(2_000 + i, ev.TransmitAcked(reply_id=rid, generation=1, attempt=1))
    # Three ended, three remembered: r1 is still known.
    assert [run.engine.reply_state(f"r{i}") for i in range(1, 4)] == ["delivered"] * 3
    assert codes(run.at(3_000, ev.ReplyReady(reply_id="r1"))) == ["reply_ended"]
    assert codes(run.at(3_000, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))) == [
        "duplicate_ack"
    ]
    # The fourth pushes r1 out, and only r1.
    run.at(4_000, ev.ReplyCaptured(reply_id="r4", account=ACCOUNT, generation=1, chat=GROUP))
    run.at(4_000, ev.ReplyReady(reply_id="r4", payload="x"))
    run.at(4_000, ev.TransmitAcked(reply_id="r4", generation=1, attempt=1))
    assert run.engine.reply_state("r1") is None
    assert [run.engine.reply_state(f"r{i}") for i in range(2, 5)] == ["delivered"] * 3
    assert codes(run.at(5_000, ev.ReplyReady(reply_id="r1"))) == ["unknown_reply"]
    assert codes(run.at(5_000, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))) == [
        "unexpected_ack"
    ]
    assert codes(run.at(5_000, ev.ReplyReady(reply_id="r2"))) == ["reply_ended"]


# ------------------------------------------------------------ memory


def _measure(cycles: int) -> tuple[int, int, Engine]:
    """Retained size of one engine after 1 000 and after ``cycles`` restart cycles."""
    engine = Engine(EngineConfig(remember_ended=100), random=lambda: 0.5)
    restart_cycles(engine, 1, 1_000)
    gc.collect()
    small = retained_size(engine)
    restart_cycles(engine, 1_001, cycles - 1_000)
    gc.collect()
    large = retained_size(engine)
    return small, large, engine


def test_memory_after_20k_restart_cycles_is_within_5_percent_of_1k() -> None:
    # remember_ended=100: the bounded memory of ended replies (2 replies per 10 cycles) is full
    # before the first measure; its bound is tested above.
    started = time.perf_counter()
    small, large, engine = _measure(20_000)
    print(
        f"\n[memory] engine retained after 1k cycles: {small} B, after 20k: {large} B "
        f"({(large - small) / small:+.1%}; {time.perf_counter() - started:.1f}s)"
    )
    assert engine.generations(ACCOUNT) == (20_000,)
    assert engine.open_replies() == ()
    assert abs(large - small) <= 0.05 * small


_CHILD = """
import gc, json, sys, tracemalloc
from engine_support import restart_cycles
from heirline.core.engine import Engine, EngineConfig
n = int(sys.argv[1])
tracemalloc.start()
engine = Engine(EngineConfig(remember_ended=100), random=lambda: 0.5)
restart_cycles(engine, 1, 1_000)
gc.collect()
small = tracemalloc.get_traced_memory()[0]
restart_cycles(engine, 1_001, n - 1_000)
gc.collect()
large = tracemalloc.get_traced_memory()[0]
print(json.dumps({"small": small, "large": large, "gens": list(engine.generations("default"))}))
"""


@pytest.mark.soak
def test_memory_after_100k_restart_cycles_is_within_5_percent_of_1k_tracemalloc() -> None:
    # tracemalloc from the engine's creation, in a child process without beartype (which
    # would make 100k cycles under tracing take many minutes).
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "100000"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    got = json.loads(proc.stdout)
    small, large = got["small"], got["large"]
    print(
        f"\n[memory, tracemalloc] after 1k cycles: {small} B, after 100k: {large} B "
        f"({(large - small) / small:+.1%}; {time.perf_counter() - started:.1f}s)"
    )
    assert got["gens"] == [100_000]
    assert abs(large - small) <= 0.05 * small


@pytest.mark.soak
def test_memory_after_100k_restart_cycles_is_within_5_percent_of_1k_retained() -> None:
    small, large, engine = _measure(100_000)
    print(f"\n[memory] engine retained after 1k cycles: {small} B, after 100k: {large} B")
    assert engine.generations(ACCOUNT) == (100_000,)
    assert abs(large - small) <= 0.05 * small
