"""Sockets are named by attempt numbers: facts about an older socket are late, never applied.

One generation opens many sockets (first connect, each retry, each 515
reconnect), and the account's attempt counter numbers them 1, 2, 3, ... across
generations. The engine must judge every socket fact by that number, never by
arrival order: before attempt ids, a late close of the first socket of a
generation was applied to the socket the retry had just opened.
"""

from __future__ import annotations

import pytest
from engine_support import ACCOUNT, GROUP, PN, Run, codes, fingerprint, incident_config, of

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.lifecycle import State
from heirline.core.timers import RetryTimer, WatchdogTimer


def opened_then_retrying(run: Run) -> None:
    """Generation 1: socket 1 opens at 1 000, closes 408 at 10 000, the retry opens socket 2."""
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    closed = run.at(10_000, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    (retry,) = of(fx.StartTimer, closed)
    assert retry.timer == RetryTimer(ACCOUNT, 1)
    out = run.at(retry.deadline_ms, ev.TimerFired(timer=retry.timer))
    assert of(fx.OpenSocket, out) == [fx.OpenSocket(account=ACCOUNT, generation=1, attempt=2)]
    assert run.engine.controller_state(ACCOUNT, 1) is State.CONNECTING
    assert run.engine.controller_socket(ACCOUNT, 1) == 2


def test_a_late_close_of_the_older_socket_does_not_touch_the_connecting_one() -> None:
    run, twin = Run(incident_config()), Run(incident_config())
    opened_then_retrying(run)
    opened_then_retrying(twin)
    # The transport reports socket 1's close a second time (or late), while 2 is connecting.
    late = run.at(20_000, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=428))
    assert codes(late) == ["late_close"]
    assert len(late) == 1  # no retry timer, no open, no unregister: nothing but the log
    assert run.engine.controller_state(ACCOUNT, 1) is State.CONNECTING
    assert run.engine.controller_socket(ACCOUNT, 1) == 2
    # Socket 2 opens; the engine is then byte for byte the twin that never heard the late close.
    for r in (run, twin):
        out = r.at(20_100, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN))
        assert codes(out) == ["lifecycle.open", "socket_opened"]
    assert run.engine.controller_state(ACCOUNT, 1) is State.OPEN
    assert fingerprint(run.engine) == fingerprint(twin.engine)


def test_a_late_close_of_an_older_socket_leaves_the_open_one_and_its_replies_alone() -> None:
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    # 515: reconnect at once on socket 2 of the same generation.
    out = run.at(2_000, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=515))
    assert of(fx.OpenSocket, out) == [fx.OpenSocket(account=ACCOUNT, generation=1, attempt=2)]
    run.at(2_500, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN))
    run.at(3_000, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    sent = run.at(3_001, ev.ReplyReady(reply_id="r1", payload="x"))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, sent)] == [(1, 2)]
    # Socket 1's close, reported again late with another status: ignored.
    late = run.at(3_002, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    assert codes(late) == ["late_close"]
    assert len(late) == 1
    assert run.engine.controller_state(ACCOUNT, 1) is State.OPEN
    assert run.engine.in_flight() == {"r1": 1}
    done = run.at(3_010, ev.TransmitAcked(reply_id="r1", generation=1, attempt=2))
    assert of(fx.ReplyDelivered, done) == [
        fx.ReplyDelivered(reply_id="r1", generation=1, via="origin")
    ]


def test_a_stale_socket_opened_is_answered_with_a_close_of_that_attempt() -> None:
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))
    # Socket 1 never opened: the connect failed; the retry opens socket 2.
    out = run.at(100, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    (retry,) = of(fx.StartTimer, out)
    run.at(retry.deadline_ms, ev.TimerFired(timer=retry.timer))
    before = (
        run.engine.controller_state(ACCOUNT, 1),
        run.engine.controller_socket(ACCOUNT, 1),
        run.engine.controller_identity(ACCOUNT, 1),
    )
    # ... and then socket 1 does show up open after all.
    stale = run.at(
        retry.deadline_ms + 10, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN)
    )
    assert stale == [
        fx.CloseSocket(
            account=ACCOUNT,
            generation=1,
            attempt=1,
            status=None,
            reason="stale socket: generation 1 has a newer socket",
        )
    ]
    after = (
        run.engine.controller_state(ACCOUNT, 1),
        run.engine.controller_socket(ACCOUNT, 1),
        run.engine.controller_identity(ACCOUNT, 1),
    )
    assert before == after == (State.CONNECTING, 2, None)


def _events_about(attempt: int, account: str = ACCOUNT) -> list[ev.Event]:
    return [
        ev.SocketOpened(account=account, generation=1, attempt=attempt, pn=PN),
        ev.SocketClosed(account=account, generation=1, attempt=attempt, status=408),
        ev.Activity(account=account, generation=1, attempt=attempt),
        ev.Activity(account=account, generation=1, attempt=attempt, kind=ev.ActivityKind.INBOUND),
        ev.WatchdogSilence(account=account, generation=1, attempt=attempt, silent_ms=1),
        ev.TimerFired(timer=WatchdogTimer(account, attempt)),
    ]


@pytest.mark.parametrize("attempt", [0, -1, 3, 4, 2**53 - 1, 2**64])
@pytest.mark.parametrize("index", range(6))
def test_an_attempt_the_account_never_issued_is_unknown_socket(attempt: int, index: int) -> None:
    run = Run(incident_config())
    opened_then_retrying(run)  # attempts 1 and 2 issued
    event = _events_about(attempt)[index]
    before = fingerprint(run.engine)
    out = run.engine.handle(event, 50_000)
    assert [(type(e), e.code) for e in of(fx.Rejected, out)] == [(fx.Rejected, "unknown_socket")]
    assert len(out) == 1
    assert fingerprint(run.engine) == before


def test_attempts_are_per_account() -> None:
    run = Run(incident_config())
    opened_then_retrying(run)  # default: attempts 1 and 2
    run.at(60_000, ev.Start(account="other"))  # other: attempt 1
    out = run.at(60_001, ev.SocketClosed(account="other", generation=1, attempt=2, status=408))
    assert codes(out) == ["unknown_socket"]
    ok = run.at(60_002, ev.SocketOpened(account="other", generation=1, attempt=1, pn=PN))
    assert run.engine.controller_state("other", 1) is State.OPEN
    assert "socket_opened" in codes(ok)


def test_activity_of_an_older_socket_does_not_feed_the_new_sockets_watchdog() -> None:
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    run.at(2_000, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=515))
    out = run.at(3_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN))
    assert fx.StartTimer(timer=WatchdogTimer(ACCOUNT, 2), deadline_ms=303_000) in out
    # Frames and an inbound message reported for socket 1 (late): nothing.
    for kind in ev.ActivityKind:
        assert (
            run.at(200_000, ev.Activity(account=ACCOUNT, generation=1, attempt=1, kind=kind)) == []
        )
    # Socket 2's watchdog: silent since it opened at 3 000, so it closes now (not re-armed).
    fired = run.at(303_000, ev.TimerFired(timer=WatchdogTimer(ACCOUNT, 2)))
    assert of(fx.CloseSocket, fired) == [
        fx.CloseSocket(
            account=ACCOUNT,
            generation=1,
            attempt=2,
            status=499,
            reason="watchdog: no traffic for 300000 ms",
        )
    ]


def test_the_watchdog_timer_of_an_older_socket_is_stale() -> None:
    run = Run(incident_config())
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    run.at(2_000, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=515))
    run.at(3_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN))
    # Socket 1's watchdog raced its cancel: it must not close socket 2.
    out = run.at(301_000, ev.TimerFired(timer=WatchdogTimer(ACCOUNT, 1)))
    assert codes(out) == ["stale_timer"]
    assert len(out) == 1
    assert run.engine.controller_state(ACCOUNT, 1) is State.OPEN


def _resent_through_socket_2(run: Run) -> None:
    """Reply r1 goes out through socket 1, which closes 515; it is resent through socket 2."""
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    run.at(2_000, ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP))
    first = run.at(2_001, ev.ReplyReady(reply_id="r1", payload="x"))
    assert [(t.attempt, t.transmission) for t in of(fx.Transmit, first)] == [(1, 1)]
    run.at(2_002, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=515))
    again = run.at(2_500, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN))
    assert [(t.attempt, t.transmission, t.message_id) for t in of(fx.Transmit, again)] == [
        (2, 2, "r1")
    ]


def test_acks_and_failures_are_judged_by_the_attempt_they_echo() -> None:
    run = Run(incident_config())
    _resent_through_socket_2(run)
    # The failure of the first transmission (socket 1) is stale: the reply is in flight on 2.
    stale = run.at(
        2_600, ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=True)
    )
    assert codes(stale) == ["stale_failure"]
    assert len(stale) == 1
    assert run.engine.in_flight() == {"r1": 1}
    # Socket 3 never carried it (and was never opened): not an ack of this reply.
    assert codes(run.at(2_700, ev.TransmitAcked(reply_id="r1", generation=1, attempt=3))) == [
        "unexpected_ack"
    ]
    # The right generation and socket: delivered.
    done = run.at(2_800, ev.TransmitAcked(reply_id="r1", generation=1, attempt=2))
    assert of(fx.ReplyDelivered, done) == [
        fx.ReplyDelivered(reply_id="r1", generation=1, via="origin")
    ]
    # Socket 1's ack arriving after the end is late (the receiver dedups by message id) ...
    late = run.at(2_900, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    assert codes(late) == ["late_ack"]
    # ... socket 2's second ack is a duplicate.
    assert codes(run.at(3_000, ev.TransmitAcked(reply_id="r1", generation=1, attempt=2))) == [
        "duplicate_ack"
    ]
    assert len(run.outcomes()) == 1


def test_the_ack_of_the_first_socket_delivers_when_it_comes_first() -> None:
    run = Run(incident_config())
    _resent_through_socket_2(run)
    # Socket 1 did get the message through before it closed: its ack counts.
    done = run.at(2_600, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    assert of(fx.ReplyDelivered, done) == [
        fx.ReplyDelivered(reply_id="r1", generation=1, via="origin")
    ]
    assert run.engine.in_flight() == {}
    assert codes(run.at(2_700, ev.TransmitAcked(reply_id="r1", generation=1, attempt=2))) == [
        "late_ack"
    ]


def test_a_failure_on_the_current_socket_sends_again() -> None:
    run = Run(incident_config())
    _resent_through_socket_2(run)
    out = run.at(2_600, ev.TransmitFailed(reply_id="r1", generation=1, attempt=2, io_started=False))
    assert [(t.attempt, t.transmission) for t in of(fx.Transmit, out)] == [(2, 3)]
    # A failure naming a generation that never carried it is not this reply's.
    assert codes(
        run.at(2_700, ev.TransmitFailed(reply_id="r1", generation=2, attempt=2, io_started=True))
    ) == ["unexpected_failure"]


def test_a_late_socket_is_closed_whatever_identity_it_shows() -> None:
    """A stale open with a malformed JID must not be refused (and left open) but closed."""
    from heirline.core.engine import Engine

    engine = Engine(random=lambda: 0.5)
    engine.handle(ev.Start(account="x"), 0)
    engine.handle(ev.Stop(account="x", generation=1), 1)
    out = engine.handle(
        ev.SocketOpened(account="x", generation=1, attempt=1, pn="not a jid at all"), 2
    )
    assert [type(e) for e in out] == [fx.CloseSocket]
