"""Shutdown: every open reply ends exactly once, every controller stops, nothing after it.

A reply that never started I/O (pending, or waiting without any transmission)
fails with "<reason> before the reply was sent"; one in flight, or waiting
after a transmission that may have arrived, ends unknown. Every controller is
stopped (sockets closed, retry and watchdog timers cancelled), the health timer
is cancelled, and every later input is ``Rejected(shut_down)``.
"""

from __future__ import annotations

from collections import Counter

import pytest
from engine_support import GROUP, PN, Run, codes, fingerprint, of

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import EngineConfig
from heirline.core.lifecycle import State
from heirline.core.timers import HEALTH, DeadlineTimer, RetryTimer, WatchdogTimer

A, B, C = "a", "b", "c"
UNCLEAR = "bye; a transmission may have reached the receiver without an ack"


def busy_engine(config: EngineConfig | None = None) -> Run:
    """a: in backoff with three replies; b: open with one in flight; c: connecting."""
    run = Run(config)
    for account in (A, B, C):
        run.at(0, ev.Start(account=account))
    run.at(1_000, ev.SocketOpened(account=A, generation=1, attempt=1, pn=PN))
    run.at(1_000, ev.SocketOpened(account=B, generation=1, attempt=1, pn=PN))
    for rid in ("pending", "waiting", "unclear"):
        run.at(2_000, ev.ReplyCaptured(reply_id=rid, account=A, generation=1, chat=GROUP))
    run.at(2_100, ev.ReplyReady(reply_id="unclear", payload="x"))  # in flight on a's socket 1
    run.at(2_200, ev.SocketClosed(account=A, generation=1, attempt=1, status=408))
    run.at(2_300, ev.ReplyReady(reply_id="waiting", payload="y"))  # a has no socket: waits
    run.at(2_400, ev.ReplyCaptured(reply_id="flight", account=B, generation=1, chat=GROUP))
    run.at(2_500, ev.ReplyReady(reply_id="flight", payload="z"))
    e = run.engine
    assert [e.reply_state(r) for r in ("pending", "waiting", "unclear", "flight")] == [
        "pending",
        "waiting",
        "waiting",
        "in_flight",
    ]
    assert [e.controller_state(x, 1) for x in (A, B, C)] == [
        State.BACKOFF,
        State.OPEN,
        State.CONNECTING,
    ]
    return run


def test_shutdown_ends_every_reply_exactly_once_and_stops_everything() -> None:
    run = busy_engine()
    out = run.at(3_000, ev.Shutdown(reason="bye"))
    ended = of(fx.ReplyFailed, out)
    assert Counter(f.reply_id for f in ended) == Counter(
        {"pending": 1, "waiting": 1, "unclear": 1, "flight": 1}
    )
    assert {(f.reply_id, f.outcome, f.reason) for f in ended} == {
        ("pending", "failed", "bye before the reply was sent"),
        ("waiting", "failed", "bye before the reply was sent"),
        ("unclear", "unknown", UNCLEAR),
        ("flight", "unknown", UNCLEAR),
    }
    assert not of(fx.Transmit, out)
    assert not of(fx.ReplyDelivered, out)
    cancelled = {c.timer for c in of(fx.CancelTimer, out)}
    assert cancelled == {
        DeadlineTimer("pending"),
        DeadlineTimer("waiting"),
        DeadlineTimer("unclear"),
        DeadlineTimer("flight"),
        RetryTimer(A, 1),  # a was in backoff
        WatchdogTimer(B, 1),  # b's socket was open
        HEALTH,
    }
    assert {(c.account, c.generation, c.attempt, c.reason) for c in of(fx.CloseSocket, out)} == {
        (B, 1, 1, "bye"),
        (C, 1, 1, "bye"),
    }
    assert {(u.account, u.generation) for u in of(fx.Unregistered, out)} == {
        (A, 1),
        (B, 1),
        (C, 1),
    }
    e = run.engine
    assert e.shut_down
    assert e.open_replies() == ()
    assert e.in_flight() == {}
    assert e.watched() == ()
    assert [e.controller_state(x, 1) for x in (A, B, C)] == [State.STOPPED] * 3
    assert [e.current(x) for x in (A, B, C)] == [None] * 3


AFTER: list[ev.Event] = [
    ev.Shutdown(),
    ev.Start(account=A),
    ev.Stop(account=B, generation=1),
    ev.SocketOpened(account=C, generation=1, attempt=1, pn=PN),
    ev.SocketClosed(account=B, generation=1, attempt=1, status=428),
    ev.Activity(account=B, generation=1, attempt=1),
    ev.WatchdogSilence(account=B, generation=1, attempt=1, silent_ms=1),
    ev.TimerFired(timer=HEALTH),
    ev.TimerFired(timer=RetryTimer(A, 1)),
    ev.TimerFired(timer=DeadlineTimer("pending")),
    ev.HealthCheck(),
    ev.MappingLearned(pn=PN, lid="123@lid"),
    ev.ReplyCaptured(reply_id="new", account=B, generation=1, chat=GROUP),
    ev.ReplyReady(reply_id="pending"),
    ev.TransmitAcked(reply_id="flight", generation=1, attempt=1),
    ev.TransmitFailed(reply_id="flight", generation=1, attempt=1, io_started=True),
    ev.RegistryAnswer(account=A, generation=1, granted=True),
]


@pytest.mark.parametrize("event", AFTER, ids=lambda e: type(e).__name__)
def test_everything_after_shutdown_is_rejected_and_changes_nothing(event: ev.Event) -> None:
    run = busy_engine()
    run.at(3_000, ev.Shutdown(reason="bye"))
    before = fingerprint(run.engine)
    out = run.at(4_000, event)
    assert [(type(x), x.code) for x in of(fx.Rejected, out)] == [(fx.Rejected, "shut_down")]
    assert len(out) == 1
    assert fingerprint(run.engine) == before


def test_shutdown_of_an_idle_engine_and_the_default_reason() -> None:
    run = Run()
    assert run.at(0, ev.Shutdown()) == []  # nothing to end, no health timer armed yet
    assert run.engine.shut_down
    assert codes(run.at(1, ev.Start(account=A))) == ["shut_down"]


def test_shutdown_stops_an_older_generation_that_still_runs() -> None:
    run = Run(EngineConfig(external_registry=True))
    run.at(0, ev.Start(account=A))
    run.at(1, ev.RegistryAnswer(account=A, generation=1, granted=True))
    run.at(2, ev.SocketOpened(account=A, generation=1, attempt=1, pn=PN))
    run.at(3, ev.Start(account=A))  # 2 asks the registry; 1 still runs
    out = run.at(4, ev.Shutdown())
    assert fx.CloseSocket(account=A, generation=1, attempt=1, reason="shutdown") in out
    assert run.engine.generations(A) == (2,)  # 1 is over and nothing names it
    assert run.engine.controller_state(A, 2) is State.STOPPED
