"""The fake runtime: scheduler order, replace/cancel, the in-memory channel, the incident."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from heirline.adapters.channel import Identity
from heirline.adapters.demo import act_scenario, run_act_fake
from heirline.adapters.fake import (
    At,
    FakeChannel,
    FakeGateway,
    Scheduler,
    Script,
    ScriptTimeout,
    Until,
    VirtualClock,
)
from heirline.core.engine import EngineConfig
from heirline.core.events import HealthCheck, ReplyCaptured, ReplyReady, Start
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import LifecycleConfig
from heirline.core.timers import RetryTimer, WatchdogTimer

# The demo's incident (examples/incident.toml).
ACCOUNT = "default"
PN = "4915123456789@s.whatsapp.net"
LID = "123456789012345@lid"
GROUP = "120363041234567890@g.us"
REPLY = "r1"
MESSAGE_ID = "3EB0C0FFEE0001"


def demo_config() -> EngineConfig:
    """The engine as the demo's incident runs it (examples/incident.toml's [engine])."""
    return act_scenario("incident").config


# --------------------------------------------------------------------------- scheduler


def test_scheduler_runs_in_deadline_then_insertion_order() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    ran: list[tuple[str, int]] = []

    def record(name: str) -> Callable[[], None]:
        return lambda: ran.append((name, clock.now_ms))

    for name, at in (("c", 20), ("a", 10), ("b", 10), ("d", 5)):
        sched.call_at(at, record(name))
    assert sched.run_until(15) == 3
    assert ran == [("d", 5), ("a", 10), ("b", 10)]
    assert clock.now_ms == 15
    sched.run_until(100)
    assert ran[-1] == ("c", 20)
    assert clock.now_ms == 100


def test_scheduler_replace_moves_the_key_and_cancel_removes_it() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    ran: list[str] = []
    sched.call_at(10, lambda: ran.append("first"), key="t")
    sched.call_at(10, lambda: ran.append("other"), key="u")
    sched.call_at(10, lambda: ran.append("replaced"), key="t")  # replaces: now after "u"
    sched.call_at(5, lambda: ran.append("gone"), key="x")
    assert sched.cancel("x") is True
    assert sched.cancel("x") is False
    assert sched.pending() == [(10, "u"), (10, "t")]
    sched.run_until(10)
    assert ran == ["other", "replaced"]
    assert sched.next_deadline() is None


def test_scheduler_callbacks_may_schedule_work_that_is_due_in_the_same_run() -> None:
    clock = VirtualClock()
    sched = Scheduler(clock)
    ran: list[int] = []

    def chain() -> None:
        ran.append(clock.now_ms)
        if len(ran) < 3:
            sched.call_at(clock.now_ms + 4, chain)

    sched.call_at(1, chain)
    sched.run_until(10)
    assert ran == [1, 5, 9]


def test_virtual_clock_never_goes_back() -> None:
    clock = VirtualClock(50)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(49)


# --------------------------------------------------------------------------- channel


def test_fake_channel_binds_identity_at_login_and_dedups_the_ledger() -> None:
    channel = FakeChannel()
    channel.add_account("a", pn=PN)
    assert channel.connect("a", 1, 1) == Identity(PN)
    channel.add_account("a", lid=LID)  # later logins show another form
    assert channel.deliver("a", 1, "m1", "c@g.us", "text", "x")
    assert channel.deliver("a", 1, "m1", "c@g.us", "text", "x")
    assert channel.ledger.received(PN) == ("m1",)
    assert channel.ledger.duplicates_suppressed == 1
    assert channel.ledger.received(LID) == ()
    assert channel.connect("a", 1, 2) == Identity(lid=LID)  # a second socket, same generation
    assert channel.connection_count("a") == 2
    assert channel.close_account("a", 408) == 2
    assert not channel.deliver("a", 1, "m2", "c@g.us", "text", "x")
    assert not channel.is_live("a", 2)
    channel.logout("a")
    assert channel.connect("a", 2, 3) is None
    with pytest.raises(KeyError):
        channel.close_account("nobody", 408)
    with pytest.raises(KeyError):
        channel.half_open("nobody")


def test_fake_channel_half_open_swallows_sends_and_stays_connected() -> None:
    channel = FakeChannel()
    channel.add_account("a", pn=PN)
    channel.connect("a", 1, 1)
    assert channel.half_open("a") == 1
    assert channel.is_live("a", 1)
    assert channel.is_silent("a", 1)
    assert channel.deliver("a", 1, "m1", "c@g.us", "text", "x")  # the frame left...
    assert channel.ledger.total == 0  # ...and never arrived
    channel.connect("a", 1, 2)  # a fresh socket is not half-open
    assert not channel.is_silent("a", 2)
    assert channel.deliver("a", 2, "m1", "c@g.us", "text", "x")
    assert channel.ledger.received(PN) == ("m1",)
    assert channel.disconnect("a", 1)
    assert not channel.is_silent("a", 1)


# --------------------------------------------------------------------------- gateway


def test_engine_timers_drive_the_retry_at_their_deadline() -> None:
    gw = FakeGateway(EngineConfig(health_timer=False), seed=73, connect_ms=5)
    gw.channel.add_account("a", pn=PN)
    gw.feed(Start(account="a"))
    gw.run_until(5)
    assert gw.engine.controller_state("a", 1) == "open"
    gw.channel.close_account("a", 408)
    assert gw.engine.controller_state("a", 1) == "backoff"
    retry = [(d, k) for d, k in gw.scheduler.pending() if isinstance(k, tuple) and k[0] == "timer"]
    assert retry == [(5 + 2140, ("timer", RetryTimer("a", 1)))]
    gw.run_until(5 + 2139)
    assert gw.engine.controller_state("a", 1) == "backoff"
    gw.run_until(5 + 2140)
    assert gw.engine.controller_state("a", 1) == "connecting"
    gw.run_until(5 + 2140 + 5)
    assert gw.engine.controller_state("a", 1) == "open"


def test_incident_is_delivered_through_successor_b_exactly_once() -> None:
    act = run_act_fake("incident")
    outcome = act.outcomes[REPLY]
    assert (outcome.outcome, outcome.via, outcome.generation) == ("delivered", "successor", 2)
    assert act.ledger.holders(MESSAGE_ID) == (Identity(lid=LID),)
    assert act.transmissions == 1
    assert act.ok
    messages = [e.message for e in act.timeline]
    assert "Web connection closed (status 408). Retry 1/12 in 2.14s…" in messages
    restart = next(e for e in act.timeline if e.code == "health_restart")
    closed = next(e for e in act.timeline if e.code == "lifecycle.retry_scheduled")
    assert restart.at_ms - closed.at_ms == 114
    opened = next(e for e in act.timeline if e.code == "socket_opened" and e.generation == 2)
    assert outcome.at_ms == opened.at_ms + 5  # routed in B's open step, acked after ack_ms
    routed = next(e for e in act.timeline if e.code == "reply_routed")
    assert routed.at_ms == opened.at_ms


def test_relinked_account_is_refused_at_once_and_b_never_transmits() -> None:
    act = run_act_fake("relink")
    outcome = act.outcomes[REPLY]
    assert outcome.outcome == "refused"
    assert "different identity" in outcome.reason
    assert act.transmissions == 0
    assert act.ledger.total == 0
    opened = next(e for e in act.timeline if e.code == "socket_opened" and e.generation == 2)
    assert outcome.at_ms == opened.at_ms
    assert act.ok


def test_the_seed_picks_the_jitter() -> None:
    act = run_act_fake("incident", seed=1)
    line = next(e.message for e in act.timeline if e.code == "lifecycle.retry_scheduled")
    assert "2.14s" not in line
    assert act.ok  # the outcome does not depend on the jitter


def _grace_script(gw: FakeGateway) -> Script:
    """The incident with the default health config: no restart 114 ms after the 408."""
    gw.channel.add_account(ACCOUNT, pn=PN)
    gw.feed(Start(account=ACCOUNT))
    yield At(10)
    gw.feed(ReplyCaptured(reply_id=REPLY, account=ACCOUNT, generation=1, chat=GROUP))
    gw.feed(ReplyReady(reply_id=REPLY, payload="hi"))
    yield At(11)  # transmitted through A; the 408 comes before the ack
    gw.channel.close_account(ACCOUNT, 408)
    yield At(11 + 114)
    gw.feed(HealthCheck())
    yield Until(lambda: REPLY in gw.outcomes, 60_000, "reply ends")


def test_default_health_keeps_a_and_the_resend_is_deduplicated_by_message_id() -> None:
    config = EngineConfig(health_timer=False)  # default HealthConfig: retry grace on
    gw = FakeGateway(config, random=random.Random(73).random, connect_ms=5, ack_ms=50)
    gw.engine.handle(HealthCheck(), 0)  # the monitor starts at 0 (start-up grace from there)
    gw.run(_grace_script(gw))
    codes = [e.code for e in gw.timeline]
    assert "health_restart" not in codes
    assert gw.current[ACCOUNT] == 1
    outcome = gw.outcomes[REPLY]
    assert (outcome.outcome, outcome.via, outcome.generation) == ("delivered", "origin", 1)
    assert len(gw.transmissions) == 2
    assert {t.message_id for t in gw.transmissions} == {REPLY}
    assert gw.channel.ledger.received(PN) == (REPLY,)
    assert gw.channel.ledger.duplicates_suppressed == 1


def test_until_times_out_with_what_it_waited_for() -> None:
    gw = FakeGateway(demo_config())

    def never() -> Script:
        yield Until(lambda: False, 1_000, "something that never happens")

    with pytest.raises(ScriptTimeout, match="something that never happens"):
        gw.run(never())
    assert gw.now_ms() == 1_000


def test_rejections_are_recorded_not_raised() -> None:
    gw = FakeGateway(demo_config())
    gw.feed(ReplyReady(reply_id="nope"))
    assert [r.code for r in gw.rejections] == ["unknown_reply"]
    assert gw.timeline[-1].level == "error"


# ---------------------------------------------------------------- activity and the watchdog

WATCHDOG_MS = 10_000
KEEPALIVE_MS = 3_000


def _watchdog_config() -> EngineConfig:
    return EngineConfig(health_timer=False, lifecycle=LifecycleConfig(watchdog_ms=WATCHDOG_MS))


class FramesSeen(FakeGateway):
    """Records every transport frame the channel reports (time, account, attempt)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[tuple[int, str, int]] = []

    def on_activity(self, account: str, generation: int, attempt: int) -> None:
        self.frames.append((self.now_ms(), account, attempt))
        super().on_activity(account, generation, attempt)


def _codes_at(gw: FakeGateway, code: str) -> list[tuple[int, int | None]]:
    return [(e.at_ms, e.generation) for e in gw.timeline if e.code == code]


def test_keepalive_frames_are_activity_and_keep_the_watchdog_quiet() -> None:
    gw = FramesSeen(_watchdog_config(), keepalive_ms=KEEPALIVE_MS)
    gw.channel.add_account("a", pn=PN)
    gw.feed(Start(account="a"))
    later = 20 * 60_000  # 120 watchdog periods
    gw.run_until(later)
    assert _codes_at(gw, "lifecycle.watchdog") == []
    assert gw.engine.controller_state("a", 1) == "open"
    assert gw.engine.controller_socket("a", 1) == 1
    assert len(gw.frames) == (later - 5) // KEEPALIVE_MS  # opened at 5, a frame every 3 s
    assert {(account, attempt) for _, account, attempt in gw.frames} == {("a", 1)}
    # the engine's watchdog stays armed, its deadline pushed back by the frames
    timer = ("timer", WatchdogTimer("a", 1))
    (deadline,) = [d for d, key in gw.scheduler.pending() if key == timer]
    assert later < deadline <= later + WATCHDOG_MS


def test_a_socket_that_shows_nothing_is_closed_by_the_watchdog_with_499_and_reconnects() -> None:
    gw = FramesSeen(_watchdog_config(), keepalive_ms=None, seed=73)
    gw.channel.add_account("a", pn=PN)
    gw.feed(Start(account="a"))
    gw.run_until(5 + WATCHDOG_MS - 1)
    assert gw.engine.controller_state("a", 1) == "open"
    gw.run_until(5 + WATCHDOG_MS)  # opened at 5, silent ever since
    assert _codes_at(gw, "lifecycle.watchdog") == [(5 + WATCHDOG_MS, 1)]
    closed = next(e for e in gw.timeline if e.code == "lifecycle.retry_scheduled")
    assert (closed.at_ms, closed.fields["status"]) == (5 + WATCHDOG_MS, 499)
    gw.run(iter([Until(lambda: gw.engine.controller_socket("a", 1) == 2, 60_000, "socket 2")]))
    gw.run(iter([Until(lambda: gw.engine.controller_state("a", 1) == "open", 60_000, "open")]))
    assert gw.frames == []
    assert gw.current == {"a": 1}  # the same controller reconnected: no restart


def test_a_half_open_socket_is_closed_by_the_watchdog_and_its_reply_goes_out_on_the_next() -> None:
    gw = FramesSeen(_watchdog_config(), keepalive_ms=KEEPALIVE_MS, seed=73)
    gw.channel.add_account("a", pn=PN)
    gw.feed(Start(account="a"))
    gw.run_until(19_000)
    gw.feed(ReplyCaptured(reply_id="r", account="a", generation=1, chat=GROUP))  # last sign of life
    gw.run_until(20_000)
    assert gw.channel.half_open("a") == 1
    frames = len(gw.frames)
    gw.feed(ReplyReady(reply_id="r", payload="hi"))  # goes into the half-open socket
    assert [t.attempt for t in gw.transmissions] == [1]
    gw.run_until(19_000 + WATCHDOG_MS - 1)
    assert gw.engine.controller_state("a", 1) == "open"
    assert len(gw.frames) == frames  # nothing comes back any more
    assert "r" not in gw.outcomes
    assert gw.channel.ledger.total == 0
    gw.run_until(19_000 + WATCHDOG_MS)  # silent for watchdog_ms since the capture
    assert _codes_at(gw, "lifecycle.watchdog") == [(19_000 + WATCHDOG_MS, 1)]
    closed = next(e for e in gw.timeline if e.code == "lifecycle.retry_scheduled")
    assert closed.fields["status"] == 499
    gw.run(iter([Until(lambda: "r" in gw.outcomes, 60_000, "r ends")]))
    outcome = gw.outcomes["r"]
    assert (outcome.outcome, outcome.via, outcome.generation) == ("delivered", "origin", 1)
    assert [t.attempt for t in gw.transmissions] == [1, 2]
    assert gw.channel.ledger.received(PN) == ("r",)
    assert gw.channel.ledger.duplicates_suppressed == 0  # the first copy never arrived
    assert gw.engine.controller_socket("a", 1) == 2
    assert gw.rejections == []


# --------------------------------------------------------------------------- shutdown

ENDINGS = ("reply_delivered", "reply_refused", "reply_failed", "reply_unknown")


@pytest.mark.parametrize("case", ["pending", "waiting_for_successor", "in_flight"])
def test_shutdown_ends_every_open_reply_once_and_leaves_nothing_behind(case: str) -> None:
    gw = FakeGateway(EngineConfig(health_timer=False), seed=73, ack_ms=1_000, boot_ms=10)
    gw.channel.add_account("a", pn=PN)
    gw.feed(Start(account="a"))
    gw.run_until(100)
    gw.feed(ReplyCaptured(reply_id="r", account="a", generation=1, chat=GROUP))
    if case == "waiting_for_successor":
        gw.channel.close_account("a", 408)
        gw.boot_ms = 60_000  # B boots slowly: the reply waits for it
        gw.feed(Start(account="a"))
        gw.feed(ReplyReady(reply_id="r", payload="hi"))
        assert gw.engine.reply_state("r") == "waiting"
        assert gw.channel.connection_count() == 0
    elif case == "in_flight":
        gw.feed(ReplyReady(reply_id="r", payload="hi"))
        gw.run_until(200)  # the ack comes after 1 s
        assert gw.engine.in_flight() == {"r": 1}
        assert gw.channel.ledger.received(PN) == ("r",)
    else:
        assert gw.engine.reply_state("r") == "pending"
    gw.shutdown()
    outcome = gw.outcomes["r"]
    if case == "in_flight":
        assert outcome.outcome == "unknown"
        assert outcome.reason.startswith("shutdown; a transmission may have reached")
    else:
        assert (outcome.outcome, outcome.reason) == (
            "failed",
            "shutdown before the reply was sent",
        )
    assert gw.engine.shut_down
    assert gw.engine.open_replies() == ()
    # nothing left to happen: no timer, no boot, no connect, no ack, no keepalive, no socket
    assert gw.scheduler.pending() == []
    assert gw.channel.connection_count() == 0
    assert gw.sockets == {}
    timeline = list(gw.timeline)
    gw.feed(Start(account="a"))  # facts after the shutdown are dropped, not rejected
    gw.shutdown()  # idempotent
    gw.run_until(10 * 60_000)
    assert gw.timeline == timeline
    assert [e.code for e in gw.timeline if e.code in ENDINGS] == [f"reply_{outcome.outcome}"]
    assert gw.rejections == []


def test_inbound_messages_feed_the_health_stale_rule_and_frames_do_not() -> None:
    health = HealthConfig(check_interval_ms=10_000, startup_grace_ms=0, stale_after_ms=60_000)
    config = EngineConfig(health=health)
    busy, quiet = (FakeGateway(config, keepalive_ms=KEEPALIVE_MS) for _ in range(2))
    for gw in (busy, quiet):
        gw.channel.add_account("a", pn=PN)
        gw.feed(Start(account="a"))
    assert not busy.inbound("a")  # not open yet: nothing to report
    for at in range(30_000, 600_001, 30_000):
        busy.run_until(at)
        assert busy.inbound("a")  # a message every 30 s on the open socket
    quiet.run_until(600_000)  # only keepalive frames
    assert _codes_at(busy, "health_restart") == []
    assert busy.engine.generations("a") == (1,)
    restarts = [e for e in quiet.timeline if e.code == "health_restart"]
    assert restarts, "a socket with frames but no inbound traffic goes stale"
    assert {e.fields["reason"] for e in restarts} == {"stale-socket"}
    assert _codes_at(quiet, "lifecycle.watchdog") == []  # the frames kept the watchdog quiet
