"""Health never restarts a working socket; the watchdog closes a silent one; retries run out first.

Driven with real timers through the engine (:class:`engine_support.Driver`
obeys every ``StartTimer``/``CancelTimer``), at the default health settings
unless a test says otherwise: check every 5 min, stale after 30 min of no
activity, watchdog 5 min, retry grace 30 s, 12 retries.
"""

from __future__ import annotations

import pytest
from engine_support import ACCOUNT, GROUP, PN, Driver, codes, of

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import EngineConfig
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import LifecycleConfig, State
from heirline.core.timers import HEALTH, RetryTimer, WatchdogTimer

MINUTE = 60_000
HOUR = 60 * MINUTE


def booted(config: EngineConfig | None = None) -> Driver:
    """Start at 0 (health checks at every 5 min from then), socket 1 open at 1 000."""
    d = Driver(config)
    out = d.at(0, ev.Start(account=ACCOUNT))
    armed = fx.StartTimer(timer=HEALTH, deadline_ms=300_000) in out
    assert armed is d.engine.config.health_timer
    d.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    return d


def restarts(d: Driver) -> list[tuple[int, str | None]]:
    """(time, reason) of every health restart."""
    out = []
    for now, log in d.logs("health_restart"):
        reason = log.fields["reason"]
        assert reason is None or isinstance(reason, str)
        out.append((now, reason))
    return out


def watchdog_closes(d: Driver) -> list[tuple[int, int]]:
    """(time, attempt) of every close the engine asked for with status 499."""
    return [(now, c.attempt) for now, c in d.emitted(fx.CloseSocket) if c.status == 499]


# ------------------------------------------------------------ the stale rule


def test_a_socket_that_sends_and_acks_a_reply_every_minute_is_never_restarted() -> None:
    d = booted()
    for i in range(1, 3 * 60):  # three hours, one reply a minute, no frames, no inbound facts
        t = i * MINUTE
        d.run_until(t)
        rid = f"r{i}"
        d.at(t, ev.ReplyCaptured(reply_id=rid, account=ACCOUNT, generation=1, chat=GROUP))
        sent = d.at(t + 100, ev.ReplyReady(reply_id=rid, payload="pong"))
        assert [(x.generation, x.attempt) for x in of(fx.Transmit, sent)] == [(1, 1)]
        d.at(t + 200, ev.TransmitAcked(reply_id=rid, generation=1, attempt=1))
    d.run_until(3 * HOUR)
    assert restarts(d) == []
    assert watchdog_closes(d) == []
    assert d.engine.generations(ACCOUNT) == (1,)
    assert d.engine.controller_state(ACCOUNT, 1) is State.OPEN
    assert len(of(fx.ReplyDelivered, d.effects)) == 179
    # The health timer really ran the whole time: 36 checks in three hours.
    assert len([1 for _, e, _ in d.fed if e == ev.TimerFired(timer=HEALTH)]) == 36


CAPTURE = ev.ReplyCaptured(reply_id="r", account=ACCOUNT, generation=1, chat=GROUP)
READY = ev.ReplyReady(reply_id="r", payload="x")
ACK = ev.TransmitAcked(reply_id="r", generation=1, attempt=1)
INBOUND = ev.Activity(account=ACCOUNT, generation=1, attempt=1, kind=ev.ActivityKind.INBOUND)
FRAME = ev.Activity(account=ACCOUNT, generation=1, attempt=1)


@pytest.mark.parametrize(
    ("facts", "restart_at"),
    [
        # Nothing after the open at 1 000: over 30 min first at the check at 35 min.
        ([], 35 * MINUTE),
        ([(400_000, FRAME)], 35 * MINUTE),  # frames do not count
        ([(400_000, INBOUND)], 40 * MINUTE),  # 400 000 + 30 min = 36 min 40 s -> 40 min
        ([(400_000, CAPTURE)], 40 * MINUTE),
        ([(60_000, CAPTURE), (400_000, READY)], 40 * MINUTE),  # the transmission counts
        ([(60_000, CAPTURE), (60_000, READY), (700_000, ACK)], 45 * MINUTE),  # and the ack
    ],
    ids=["nothing", "frame", "inbound", "capture", "transmission", "ack"],
)
def test_each_kind_of_activity_feeds_the_stale_rule(
    facts: list[tuple[int, ev.Event]], restart_at: int
) -> None:
    # No watchdog, and replies that live long enough: only the stale rule is at work.
    d = booted(EngineConfig(lifecycle=LifecycleConfig(watchdog_ms=None), reply_deadline_ms=HOUR))
    for at, fact in facts:
        d.later(at, fact)
    d.run_until(50 * MINUTE)
    assert restarts(d)[0] == (restart_at, "stale-socket")


def test_inbound_activity_keeps_an_idle_socket_healthy() -> None:
    # The frames of the next test (which is restarted at 35 min), plus an inbound message
    # every 10 min: the inbound messages are what keeps it off the stale rule.
    d = booted()
    for t in range(30_000, 3 * HOUR + 1, 30_000):
        d.run_until(t)
        d.at(t, ev.Activity(account=ACCOUNT, generation=1, attempt=1))
        if t % (10 * MINUTE) == 0:
            inbound = ev.Activity(
                account=ACCOUNT, generation=1, attempt=1, kind=ev.ActivityKind.INBOUND
            )
            d.at(t, inbound)
    d.run_until(3 * HOUR)
    assert restarts(d) == []
    assert watchdog_closes(d) == []
    assert d.engine.generations(ACCOUNT) == (1,)


def test_frames_alone_feed_the_watchdog_but_not_the_stale_rule() -> None:
    d = booted()
    for t in range(30_000, 40 * MINUTE, 30_000):  # a keepalive frame every 30 s
        d.run_until(t)
        d.at(t, ev.Activity(account=ACCOUNT, generation=1, attempt=1))
    d.run_until(40 * MINUTE)
    # The watchdog never closed it: it was re-armed from the frames.
    assert watchdog_closes(d) == []
    # The stale rule: open since 1 000 with no inbound, capture, transmission or ack. The
    # check at 30 min sees 29 min 59 s of silence (not over 30 min); the one at 35 min restarts.
    assert restarts(d) == [(35 * MINUTE, "stale-socket")]
    assert d.engine.current(ACCOUNT) == 2


def test_a_silent_socket_without_watchdog_is_restarted_as_stale() -> None:
    d = booted(EngineConfig(lifecycle=LifecycleConfig(watchdog_ms=None)))
    d.run_until(40 * MINUTE)
    assert watchdog_closes(d) == []
    assert restarts(d) == [(35 * MINUTE, "stale-socket")]


# ------------------------------------------------------------ the watchdog


def test_the_watchdog_closes_a_half_open_socket_exactly_watchdog_ms_after_its_last_activity() -> (
    None
):
    d = booted()
    d.at(50_000, ev.Activity(account=ACCOUNT, generation=1, attempt=1))
    # The timer armed at the open (1 000 + 300 000) fires and re-arms from the frame at 50 000.
    d.run_until(301_000)
    assert d.timers[WatchdogTimer(ACCOUNT, 1)][0] == 350_000
    assert watchdog_closes(d) == []
    # A timer that fires a millisecond early (a host's clock) re-arms; it does not close.
    early = d.at(349_999, ev.TimerFired(timer=WatchdogTimer(ACCOUNT, 1)))
    assert early == [fx.StartTimer(timer=WatchdogTimer(ACCOUNT, 1), deadline_ms=350_000)]
    d.run_until(350_000)
    assert watchdog_closes(d) == [(350_000, 1)]
    assert d.engine.controller_state(ACCOUNT, 1) is State.CLOSING
    assert [log.message for _, log in d.logs("lifecycle.watchdog")] == [
        "Closing: watchdog: no traffic for 300000 ms."
    ]


def test_a_half_open_socket_reconnects_and_its_replies_follow_the_delivery_rules() -> None:
    # A 10 min reply deadline: at the default 5 min the deadline (capture + 5 min) comes no
    # later than the watchdog's close (last activity, at least the capture, + 5 min).
    config = EngineConfig(
        resendable_kinds=frozenset({"text", "media", "group_metadata"}),
        reply_deadline_ms=600_000,
    )
    d = booted(config)
    d.at(2_000, ev.ReplyCaptured(reply_id="t", account=ACCOUNT, generation=1, chat=GROUP))
    d.at(
        2_000,
        ev.ReplyCaptured(
            reply_id="rr", account=ACCOUNT, generation=1, chat=GROUP, kind="read_receipt"
        ),
    )
    # Both go out through socket 1, which is half-open: no ack, no frame ever comes back.
    d.at(2_100, ev.ReplyReady(reply_id="t", payload="x"), ev.ReplyReady(reply_id="rr"))
    assert sorted(d.engine.in_flight()) == ["rr", "t"]
    d.run_until(302_000)  # last activity: the captures at 2 000
    assert watchdog_closes(d) == [(302_000, 1)]
    closed = d.at(302_010, ev.SocketClosed(account=ACCOUNT, generation=1, attempt=1, status=499))
    # The text waits for a resend with the same message id; the read receipt may have gone out
    # and is never resent: unknown.
    assert of(fx.ReplyFailed, closed) == [
        fx.ReplyFailed(
            reply_id="rr",
            outcome="unknown",
            reason="transmission via generation 1 may have reached the receiver (socket closed "
            "(status 499)); read_receipt is never resent",
        )
    ]
    assert d.engine.reply_state("t") == "waiting"
    (retry,) = [s for s in of(fx.StartTimer, closed) if s.timer == RetryTimer(ACCOUNT, 1)]
    d.run_until(retry.deadline_ms)
    assert of(fx.OpenSocket, d.effects)[-1] == fx.OpenSocket(
        account=ACCOUNT, generation=1, attempt=2
    )
    again = d.at(
        retry.deadline_ms + 5, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=2, pn=PN)
    )
    (resend,) = of(fx.Transmit, again)
    assert (resend.attempt, resend.message_id, resend.transmission) == (2, "t", 2)
    done = d.at(retry.deadline_ms + 10, ev.TransmitAcked(reply_id="t", generation=1, attempt=2))
    assert of(fx.ReplyDelivered, done) == [
        fx.ReplyDelivered(reply_id="t", generation=1, via="origin")
    ]
    assert restarts(d) == []


# ------------------------------------------------------------ the retry grace


@pytest.mark.parametrize(
    ("grace", "after_ms", "action"),
    [
        (30_000, 50, "health_hold"),
        (30_000, 30_000, "health_hold"),
        (30_000, 30_001, "health_restart"),
        (None, 50, "health_restart"),
    ],
)
def test_the_retry_grace_covers_closing_after_its_own_watchdog_close(
    grace: int | None, after_ms: int, action: str
) -> None:
    config = EngineConfig(health=HealthConfig(retry_grace_ms=grace), health_timer=False)
    d = booted(config)
    d.run_until(301_000)
    assert watchdog_closes(d) == [(301_000, 1)]
    assert d.engine.controller_state(ACCOUNT, 1) is State.CLOSING
    out = d.at(301_000 + after_ms, ev.HealthCheck())
    assert [c for c in codes(out) if c.startswith("health_")] == [action]
    if action == "health_hold":
        (log,) = of(fx.Log, out)
        assert log.message == (
            f"health-monitor: holding (closing its own silent socket for "
            f"{after_ms / 1000:.2f}s, within the 30s retry grace)"
            if after_ms % 1000
            else f"health-monitor: holding (closing its own silent socket for "
            f"{after_ms // 1000}s, within the 30s retry grace)"
        )
        assert d.engine.current(ACCOUNT) == 1
    else:
        assert d.engine.current(ACCOUNT) == 2


# ------------------------------------------------------------ the gave-up rule


def connect_fails_with_408(effect: fx.Effect, now: int) -> list[tuple[int, ev.Event]]:
    """Every socket the engine opens fails to connect 5 ms later (status 408)."""
    if isinstance(effect, fx.OpenSocket):
        closed = ev.SocketClosed(
            account=effect.account, generation=effect.generation, attempt=effect.attempt, status=408
        )
        return [(now + 5, closed)]
    return []


def test_all_twelve_retries_happen_before_any_gave_up_restart() -> None:
    # Health checks every second, by the engine's own timer; everything else default.
    config = EngineConfig(health=HealthConfig(check_interval_ms=1_000))
    assert config.lifecycle.backoff.max_attempts == 12
    d = Driver(config, react=connect_fails_with_408)
    d.at(0, ev.Start(account=ACCOUNT))
    d.run_until(10 * MINUTE)
    opens = [(now, o.generation) for now, o in d.emitted(fx.OpenSocket)]
    gen1 = [now for now, g in opens if g == 1]
    assert len(gen1) == 13  # the first connect and all 12 retries
    exhausted = d.logs("lifecycle.exhausted")[0]
    assert exhausted[1].generation == 1
    assert exhausted[1].message == (
        "Web connection closed (status 408). Giving up after 12/12 retries."
    )
    first_restart = restarts(d)[0]
    assert first_restart[1] == "gave-up"
    # No restart of any kind before the controller gave up by itself; the restart comes at the
    # next check (a second later at the most).
    assert gen1[-1] < exhausted[0] < first_restart[0] <= exhausted[0] + 1_000
    assert all(g == 1 for now, g in opens if now <= exhausted[0])
    # The health timer did fire every second all along.
    checks = [now for now, e, _ in d.fed if e == ev.TimerFired(timer=HEALTH)]
    assert checks[:3] == [1_000, 2_000, 3_000]
    assert len([t for t in checks if t <= exhausted[0]]) == exhausted[0] // 1_000
