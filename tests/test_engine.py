"""Scenario specifications for the engine facade, on virtual time.

Each test replays a story from DESIGN.md or issue 5 through ``Engine.handle``
and asserts the effects that matter: where a reply went, why it waited, why it
was refused, and that nothing went out through the wrong controller.
"""

from __future__ import annotations

import pytest
from engine_support import (
    ACCOUNT,
    GROUP,
    LID,
    OTHER_PN,
    PN,
    PN_DEVICE,
    T0,
    Run,
    codes,
    incident_config,
    of,
)

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import EngineConfig
from heirline.core.errors import ConfigError
from heirline.core.health import HealthConfig
from heirline.core.identity import LidMapping
from heirline.core.lifecycle import State
from heirline.core.timers import HEALTH, DeadlineTimer, RetryTimer, WatchdogTimer


def boot_a(run: Run, now: int = T0 - 60_000, **identity: str) -> None:
    """Generation 1 of the account opens its first socket (attempt 1)."""
    out = run.at(now, ev.Start(account=ACCOUNT))
    assert of(fx.OpenSocket, out) == [fx.OpenSocket(account=ACCOUNT, generation=1, attempt=1)]
    run.at(
        now + 1_000,
        ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, **(identity or {"pn": PN})),
    )


def capture(run: Run, now: int, reply_id: str = "r1", kind: str = "text", gen: int = 1) -> None:
    run.at(
        now,
        ev.ReplyCaptured(reply_id=reply_id, account=ACCOUNT, generation=gen, chat=GROUP, kind=kind),
    )


def restart_after_408(run: Run, closed_at: int = T0 + 108_578) -> None:
    """12:02:27.820 the 408; 114 ms later the health monitor restarts the account.

    Generation 2 opens the account's second socket: attempt 2.
    """
    out = run.at(closed_at, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    assert [e.timer for e in of(fx.StartTimer, out)] == [RetryTimer(ACCOUNT, 1)]
    assert of(fx.CancelTimer, out) == [fx.CancelTimer(timer=WatchdogTimer(ACCOUNT, 1))]
    out = run.at(closed_at + 114, ev.HealthCheck())
    assert of(fx.Registered, out) == [fx.Registered(account=ACCOUNT, generation=2, predecessor=1)]
    assert of(fx.OpenSocket, out) == [fx.OpenSocket(account=ACCOUNT, generation=2, attempt=2)]
    assert fx.CancelTimer(timer=RetryTimer(ACCOUNT, 1)) in out


# ---------------------------------------------------------------- the incident


def test_seed_incident_reply_goes_out_through_b_in_the_step_b_opens() -> None:
    run = Run(incident_config())
    boot_a(run, pn=PN_DEVICE)
    capture(run, T0)
    restart_after_408(run)
    waiting = run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="pong"))
    assert not of(fx.Transmit, waiting)
    assert [log.message for log in of(fx.Log, waiting)] == [
        "reply r1 waits: successor generation 2 is connecting, not open yet"
    ]

    opened = run.at(T0 + 116_408, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    assert of(fx.Transmit, opened) == [
        fx.Transmit(
            reply_id="r1",
            account=ACCOUNT,
            generation=2,
            attempt=2,
            message_id="r1",
            chat=GROUP,
            kind="text",
            payload="pong",
            transmission=1,
        )
    ]
    done = run.at(T0 + 116_700, ev.TransmitAcked(reply_id="r1", generation=2, attempt=2))
    assert of(fx.ReplyDelivered, done) == [
        fx.ReplyDelivered(reply_id="r1", generation=2, via="successor")
    ]
    assert fx.CancelTimer(timer=DeadlineTimer("r1")) in done
    assert run.engine.reply_state("r1") == "delivered"
    assert len(run.outcomes()) == 1


def test_the_seed_retry_line_is_logged_with_retry_count_and_delay() -> None:
    run = Run(incident_config())
    boot_a(run)
    out = run.at(T0, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    (log,) = [e for e in of(fx.Log, out) if e.fields.get("status") == 408]
    delay = log.fields["delay_ms"]
    assert isinstance(delay, int)
    assert 2_000 <= delay <= 2_500
    assert log.fields["retry"] == 1
    assert "attempt" not in log.fields
    assert log.message == f"Web connection closed (status 408). Retry 1/12 in {delay / 1000:.2f}s…"


def test_with_the_default_retry_grace_a_comes_back_and_delivers_itself() -> None:
    run = Run(EngineConfig(health=HealthConfig(startup_grace_ms=0)))
    boot_a(run)
    capture(run, T0)
    out = run.at(
        T0 + 108_578, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408)
    )
    (timer,) = of(fx.StartTimer, out)
    assert timer.timer == RetryTimer(ACCOUNT, 1)
    held = run.at(T0 + 108_692, ev.HealthCheck())
    assert not of(fx.Registered, held)
    assert [log.code for log in of(fx.Log, held)] == ["health_hold"]
    run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="pong"))
    retry = run.at(timer.deadline_ms, ev.TimerFired(timer=timer.timer))
    assert of(fx.OpenSocket, retry) == [fx.OpenSocket(account=ACCOUNT, generation=1, attempt=2)]
    opened = run.at(
        timer.deadline_ms + 800, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN)
    )
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, opened)] == [(1, 2)]
    run.at(timer.deadline_ms + 900, ev.TransmitAcked(reply_id="r1", generation=1, attempt=2))
    assert run.outcomes() == [fx.ReplyDelivered(reply_id="r1", generation=1, via="origin")]


# ------------------------------------------------------------------ identities


def test_relinked_successor_is_refused_at_once_and_never_transmits() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    restart_after_408(run)
    run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="pong"))
    opened = run.at(
        T0 + 116_408, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=OTHER_PN)
    )
    assert not run.transmits()
    (failed,) = of(fx.ReplyFailed, opened)
    assert failed.outcome == "refused"
    assert "successor generation 2" in failed.reason
    assert "different" in failed.reason


def test_conflicting_successor_same_lid_other_number_is_refused() -> None:
    run = Run(incident_config())
    boot_a(run, pn=PN, lid=LID)
    capture(run, T0)
    restart_after_408(run)
    run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="pong"))
    opened = run.at(
        T0 + 116_408,
        ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=OTHER_PN, lid=LID),
    )
    assert not run.transmits()
    (failed,) = of(fx.ReplyFailed, opened)
    assert failed.outcome == "refused"
    assert "conflicting" in failed.reason


def test_pn_only_origin_and_lid_only_successor_match_through_the_mapping() -> None:
    run = Run(incident_config(), mapping=LidMapping.from_pairs([(PN, LID)]))
    boot_a(run, pn=PN)
    capture(run, T0)
    restart_after_408(run)
    run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="pong"))
    opened = run.at(
        T0 + 116_408, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, lid=LID)
    )
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, opened)] == [(2, 2)]


def test_without_the_mapping_they_wait_until_it_is_learned() -> None:
    run = Run(incident_config())
    boot_a(run, pn=PN)
    capture(run, T0)
    restart_after_408(run)
    run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="pong"))
    opened = run.at(
        T0 + 116_408, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, lid=LID)
    )
    assert not of(fx.Transmit, opened)
    assert "not comparable" in of(fx.Log, opened)[-1].message
    learned = run.at(T0 + 117_000, ev.MappingLearned(pn=PN, lid=LID))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, learned)] == [(2, 2)]


def test_unauthenticated_successor_waits_then_delivers_when_it_authenticates() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    restart_after_408(run)
    run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="pong"))
    anon = run.at(T0 + 116_408, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2))
    assert not of(fx.Transmit, anon)
    assert of(fx.Log, anon)[-1].message.endswith("is open but not authenticated yet")
    # The unauthenticated socket closes (515 after pairing) and reopens logged in: a new socket.
    again = run.at(
        T0 + 117_000, ev.SocketClosed(account=ACCOUNT, generation=2, attempt=2, status=515)
    )
    assert of(fx.OpenSocket, again) == [fx.OpenSocket(account=ACCOUNT, generation=2, attempt=3)]
    authed = run.at(T0 + 118_000, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=3, pn=PN))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, authed)] == [(2, 3)]


def test_a_reply_captured_just_after_the_close_keeps_the_identity_it_arrived_through() -> None:
    run = Run(incident_config())
    boot_a(run)
    run.at(T0 - 1, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    capture(run, T0)  # the gateway reports the inbound it handled before the close
    run.at(T0 + 1, ev.ReplyReady(reply_id="r1", payload="x"))
    run.at(T0 + 2, ev.Start(account=ACCOUNT))
    out = run.at(T0 + 900, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, out)] == [(2, 2)]


def test_origin_that_never_authenticated_is_refused() -> None:
    run = Run(incident_config())
    run.at(T0 - 1_000, ev.Start(account=ACCOUNT))
    run.at(T0 - 500, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1))
    capture(run, T0)
    out = run.at(T0 + 10, ev.ReplyReady(reply_id="r1", payload="x"))
    assert of(fx.ReplyFailed, out) == [
        fx.ReplyFailed(
            reply_id="r1",
            outcome="refused",
            reason="origin never authenticated: no identity to match",
        )
    ]


def test_origin_relinked_under_its_own_live_socket_is_refused() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    run.at(T0 + 10, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=515))
    run.at(T0 + 20, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=OTHER_PN))
    out = run.at(T0 + 30, ev.ReplyReady(reply_id="r1", payload="x"))
    assert not run.transmits()
    assert [f.outcome for f in of(fx.ReplyFailed, out)] == ["refused"]


# -------------------------------------------------------------- time and codes


def test_no_successor_before_the_deadline_fails_with_the_wait_reason() -> None:
    run = Run(incident_config(reply_deadline_ms=240_000))
    boot_a(run)
    capture(run, T0)
    run.at(T0 + 5, ev.Stop(account=ACCOUNT, generation=1, reason="owner"))
    run.at(T0 + 10, ev.ReplyReady(reply_id="r1", payload="x"))
    out = run.at(T0 + 240_000, ev.TimerFired(timer=DeadlineTimer("r1")))
    assert of(fx.ReplyFailed, out) == [
        fx.ReplyFailed(
            reply_id="r1", outcome="failed", reason="deadline passed: no successor registered yet"
        )
    ]


def test_a_reply_never_made_ready_fails_at_its_deadline() -> None:
    run = Run(incident_config())
    boot_a(run)
    out = run.at(
        T0,
        ev.ReplyCaptured(
            reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP, deadline_ms=T0 + 50
        ),
    )
    assert fx.StartTimer(timer=DeadlineTimer("r1"), deadline_ms=T0 + 50) in out
    out = run.at(T0 + 50, ev.TimerFired(timer=DeadlineTimer("r1")))
    assert [(f.outcome, f.reason) for f in of(fx.ReplyFailed, out)] == [
        ("failed", "deadline passed before the reply was ready")
    ]


def test_515_reconnects_at_once_and_the_origin_delivers() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    out = run.at(T0 + 1, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=515))
    assert of(fx.OpenSocket, out) == [fx.OpenSocket(account=ACCOUNT, generation=1, attempt=2)]
    assert not of(fx.StartTimer, out)
    run.at(T0 + 2, ev.ReplyReady(reply_id="r1", payload="x"))
    out = run.at(T0 + 500, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, out)] == [(1, 2)]


def test_401_logged_out_unregisters_and_the_reply_waits_for_a_same_identity_login() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    run.at(T0 + 1, ev.ReplyReady(reply_id="r1", payload="x"))
    # The reply went out through A before the logout; A never acked it.
    out = run.at(T0 + 2, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=401))
    assert fx.Unregistered(account=ACCOUNT, generation=1) in out
    assert run.engine.controller_state(ACCOUNT, 1) == "logged_out"
    assert run.engine.current(ACCOUNT) is None
    assert run.engine.reply_state("r1") == "waiting"
    # The user links the same phone again: the resend carries the same message id.
    run.at(T0 + 60_000, ev.Start(account=ACCOUNT))
    out = run.at(T0 + 61_000, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    (resend,) = of(fx.Transmit, out)
    assert (resend.generation, resend.attempt, resend.message_id, resend.transmission) == (
        2,
        2,
        "r1",
        2,
    )


def test_stop_while_a_send_is_in_flight_resends_once_with_the_same_id() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    first = run.at(T0 + 1, ev.ReplyReady(reply_id="r1", payload="x"))
    assert [(t.generation, t.attempt) for t in of(fx.Transmit, first)] == [(1, 1)]
    stopped = run.at(T0 + 2, ev.Stop(account=ACCOUNT, generation=1, reason="shutdown"))
    assert not of(fx.Transmit, stopped)
    assert (
        fx.CloseSocket(account=ACCOUNT, generation=1, attempt=1, status=None, reason="shutdown")
        in stopped
    )
    run.at(T0 + 3, ev.Start(account=ACCOUNT))
    out = run.at(T0 + 900, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    (resend,) = of(fx.Transmit, out)
    assert (resend.generation, resend.attempt, resend.message_id) == (2, 2, "r1")
    # A's late failure report changes nothing; B's ack delivers.
    late = run.at(
        T0 + 950, ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=True)
    )
    assert [log.code for log in of(fx.Log, late)] == ["stale_failure"]
    assert len(late) == 1
    done = run.at(T0 + 1_000, ev.TransmitAcked(reply_id="r1", generation=2, attempt=2))
    assert [o.via for o in of(fx.ReplyDelivered, done)] == ["successor"]
    assert len(run.outcomes()) == 1


def test_a_read_receipt_whose_io_may_have_started_is_reported_unknown_when_not_resendable() -> None:
    config = EngineConfig(
        health=HealthConfig(retry_grace_ms=None, startup_grace_ms=0),
        resendable_kinds=frozenset({"text", "media", "group_metadata"}),
    )
    run = Run(config)
    boot_a(run)
    capture(run, T0, kind="read_receipt")
    run.at(T0 + 1, ev.ReplyReady(reply_id="r1"))
    out = run.at(
        T0 + 2,
        ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=True, error="eof"),
    )
    (failed,) = of(fx.ReplyFailed, out)
    assert failed.outcome == "unknown"
    assert "read_receipt is never resent" in failed.reason
    assert len(run.transmits()) == 1


def test_failure_before_io_is_retried_through_the_route_then_gives_up() -> None:
    run = Run(incident_config(max_transmissions=2))
    boot_a(run)
    capture(run, T0)
    run.at(T0 + 1, ev.ReplyReady(reply_id="r1", payload="x"))
    again = run.at(
        T0 + 2, ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=False)
    )
    # The second transmission goes through the same socket (attempt 1).
    assert [(t.transmission, t.attempt) for t in of(fx.Transmit, again)] == [(2, 1)]
    out = run.at(
        T0 + 3,
        ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=False, error="x"),
    )
    assert [(f.outcome, f.reason) for f in of(fx.ReplyFailed, out)] == [
        ("failed", "2 transmissions failed before any I/O (x)")
    ]


def test_deadline_while_in_flight_is_unknown_not_failed() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    run.at(T0 + 1, ev.ReplyReady(reply_id="r1", payload="x"))
    out = run.at(T0 + 300_000, ev.TimerFired(timer=DeadlineTimer("r1")))
    assert [f.outcome for f in of(fx.ReplyFailed, out)] == ["unknown"]
    assert run.engine.in_flight() == {}


def test_stale_unregister_after_b_registered_never_removes_b() -> None:
    run = Run(incident_config())
    boot_a(run)
    run.at(T0, ev.Start(account=ACCOUNT))  # B replaces A, A is stopped by the engine
    late = run.at(T0 + 5, ev.Stop(account=ACCOUNT, generation=1, reason="late shutdown of A"))
    assert codes(late) == ["stop_ignored"]
    assert not of(fx.Unregistered, late)
    assert run.engine.current(ACCOUNT) == 2
    assert run.engine.controller_state(ACCOUNT, 2) == "connecting"


@pytest.mark.parametrize("kind", ["group_metadata", "read_receipt", "media"])
def test_every_socket_consumer_routes_through_the_successor_after_restart(kind: str) -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0, kind=kind)
    restart_after_408(run)
    run.at(T0 + 110_000, ev.ReplyReady(reply_id="r1"))
    out = run.at(T0 + 116_408, ev.SocketOpened(account=ACCOUNT, generation=2, attempt=2, pn=PN))
    assert [(t.generation, t.attempt, t.kind) for t in of(fx.Transmit, out)] == [(2, 2, kind)]


def test_watchdog_closes_with_499_and_the_close_goes_through_the_policy() -> None:
    run = Run(incident_config())
    boot_a(run)
    out = run.at(
        T0, ev.WatchdogSilence(account=ACCOUNT, generation=1, attempt=1, silent_ms=300_000)
    )
    assert [(c.generation, c.attempt, c.status) for c in of(fx.CloseSocket, out)] == [(1, 1, 499)]
    assert of(fx.CancelTimer, out) == [fx.CancelTimer(timer=WatchdogTimer(ACCOUNT, 1))]
    assert run.engine.controller_state(ACCOUNT, 1) == "closing"
    out = run.at(T0 + 5, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=499))
    assert [t.timer for t in of(fx.StartTimer, out)] == [RetryTimer(ACCOUNT, 1)]


def test_the_engine_arms_its_own_health_timer_and_rearms_it() -> None:
    run = Run(incident_config())
    out = run.at(0, ev.Start(account=ACCOUNT))
    assert fx.StartTimer(timer=HEALTH, deadline_ms=300_000) in out
    again = run.at(300_000, ev.TimerFired(timer=HEALTH))
    assert fx.StartTimer(timer=HEALTH, deadline_ms=600_000) in again


def test_without_health_timer_the_engine_arms_none_and_refuses_a_health_timer() -> None:
    run = Run(EngineConfig(health_timer=False))
    out = run.at(0, ev.Start(account=ACCOUNT))
    assert not [e for e in of(fx.StartTimer, out) if e.timer == HEALTH]
    assert codes(run.at(300_000, ev.TimerFired(timer=HEALTH))) == ["unknown_timer"]


# ------------------------------------------------------------------- bad input


def _state(run: Run) -> tuple[object, ...]:
    e = run.engine
    return (
        e.current(ACCOUNT),
        e.controller_state(ACCOUNT, 1),
        e.controller_socket(ACCOUNT, 1),
        e.controller_identity(ACCOUNT, 1),
        e.open_replies(),
        e.in_flight(),
        e.reply_state("r1"),
        len(e.mapping),
    )


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (ev.SocketOpened(account=ACCOUNT, generation=9, attempt=1, pn=PN), "unknown_controller"),
        (ev.SocketOpened(account=ACCOUNT, generation=1, attempt=9, pn=PN), "unknown_socket"),
        (ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn="not a jid"), "bad_identity"),
        (ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=GROUP), "bad_identity"),
        (
            ev.SocketClosed(account="nobody", generation=1, attempt=1, status=408),
            "unknown_controller",
        ),
        (ev.TimerFired(timer=DeadlineTimer("bogus")), "unknown_timer"),
        (ev.TimerFired(timer=WatchdogTimer("nobody", 1)), "unknown_timer"),
        (ev.TimerFired(timer=RetryTimer(ACCOUNT, 7)), "unknown_controller"),
        (ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN), "invalid_transition"),
        (ev.TransmitAcked(reply_id="r1", generation=1, attempt=1), "unexpected_ack"),
        (ev.TransmitAcked(reply_id="nope", generation=1, attempt=1), "unexpected_ack"),
        (
            ev.TransmitFailed(reply_id="r1", generation=2, attempt=1, io_started=True),
            "unexpected_failure",
        ),
        (ev.ReplyReady(reply_id="nope"), "unknown_reply"),
        (
            ev.ReplyCaptured(reply_id="r1", account=ACCOUNT, generation=1, chat=GROUP),
            "duplicate_reply",
        ),
        (
            ev.ReplyCaptured(reply_id="r2", account=ACCOUNT, generation=1, chat=GROUP, kind="fax"),
            "unknown_kind",
        ),
        (
            ev.ReplyCaptured(
                reply_id="r2", account=ACCOUNT, generation=1, chat=GROUP, deadline_ms=T0
            ),
            "bad_deadline",
        ),
        (ev.MappingLearned(pn=OTHER_PN, lid=LID), "mapping_conflict"),
    ],
)
def test_bad_input_is_rejected_with_a_code_and_changes_nothing(event: ev.Event, code: str) -> None:
    run = Run(incident_config(), mapping=LidMapping.from_pairs([(PN, LID)]))
    boot_a(run)
    capture(run, T0)
    before = _state(run)
    out = run.at(T0 + 1, event)
    assert out == [fx.Rejected(code=code, message=of(fx.Rejected, out)[0].message)]
    assert _state(run) == before


def test_a_watchdog_that_raced_a_close_is_ignored() -> None:
    run = Run(incident_config())
    boot_a(run)
    run.at(T0, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=408))
    out = run.at(T0 + 1, ev.WatchdogSilence(account=ACCOUNT, generation=1, attempt=1, silent_ms=9))
    assert [(type(e), getattr(e, "code", None)) for e in out] == [(fx.Log, "stale_watchdog")]
    assert run.engine.controller_state(ACCOUNT, 1) is State.BACKOFF


def test_a_retry_timer_that_raced_its_cancel_is_ignored() -> None:
    run = Run(incident_config())
    boot_a(run)
    out = run.at(T0, ev.TimerFired(timer=RetryTimer(ACCOUNT, 1)))
    assert [(type(e), getattr(e, "code", None)) for e in out] == [(fx.Log, "stale_timer")]
    assert run.engine.controller_state(ACCOUNT, 1) is State.OPEN


def test_a_second_ack_for_one_message_is_rejected() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    run.at(T0 + 1, ev.ReplyReady(reply_id="r1", payload="x"))
    run.at(T0 + 2, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    out = run.at(T0 + 3, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    assert [(type(e), getattr(e, "code", None)) for e in out] == [(fx.Rejected, "duplicate_ack")]
    assert len(run.outcomes()) == 1


def test_ready_twice_is_rejected_and_the_first_transmission_stands() -> None:
    run = Run(incident_config())
    boot_a(run)
    capture(run, T0)
    run.at(T0 + 1, ev.ReplyReady(reply_id="r1", payload="x"))
    out = run.at(T0 + 2, ev.ReplyReady(reply_id="r1", payload="y"))
    assert [getattr(e, "code", None) for e in out] == ["reply_not_pending"]
    assert len(run.transmits()) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("reply_deadline_ms", 0), ("max_transmissions", 0), ("remember_ended", -1)],
)
def test_engine_config_is_validated(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=field):
        EngineConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_resendable_kinds_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown kinds"):
        EngineConfig(resendable_kinds=frozenset({"fax"}))
