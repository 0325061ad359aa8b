"""Seven virtual days through the fake gateway: a busy account is never restarted.

Issue 10: the stale rule once looked only at lifecycle facts, so a socket that
captured, sent and acked a reply every minute was restarted as stale at the
first health check after 30 minutes, and its replies were handed to a
successor -- the incident's pattern. Here one process runs, for 7 days of
virtual time at the default configuration (keepalive frames on):

* ``busy``: an inbound message every 3 min and a reply captured, made ready
  and acked every 4 min -- never restarted, never closed by the watchdog;
* ``deaf``: connected but half-open (nothing ever comes back): the watchdog
  closes each socket 5 min after it opened, and it reconnects 2 s later;
* ``idle``: connected, frames flowing, but no inbound message ever: the stale
  rule restarts it, as often as the policy allows and no more.

The expected counts are derived by hand from the default configuration, in
the comments next to them.

Wall time: the week costs about 65 s here (one day: 7 s) with the 4 min frames,
and several minutes with 30 s frames, almost all of it beartype re-decorating
the fake gateway's and the health policy's nested closures on every call
(measured: 8 s for the week once they are hoisted). So the default suite runs
one day, and the week runs with the soak tests (``-m soak``).
"""

from __future__ import annotations

import itertools
import time

from heirline.adapters.channel import Identity
from heirline.adapters.fake import At, FakeChannel, FakeGateway, Script
from heirline.core.engine import EngineConfig
from heirline.core.events import ReplyCaptured, ReplyReady, Start

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

BUSY, DEAF, IDLE = "busy", "deaf", "idle"


class HalfOpenChannel(FakeChannel):
    """A fake channel on which the sockets of some accounts are half-open from the start."""

    def __init__(self, deaf: set[str]) -> None:
        super().__init__()
        self.deaf = deaf

    def connect(self, account: str, generation: int, attempt: int) -> Identity | None:
        identity = super().connect(account, generation, attempt)
        if identity is not None and account in self.deaf:
            self.half_open(account)
        return identity


def run_days(days: int, keepalive_ms: int, replies_n: int, closes_n: int, restarts_n: int) -> None:
    """Run ``days`` and check the hand-computed counts: busy replies, deaf closes, idle restarts."""
    end = days * DAY  # 7 days: 604 800 000 ms
    config = EngineConfig()  # every default
    channel = HalfOpenChannel({DEAF})
    channel.add_account(BUSY, pn="4915100000001@s.whatsapp.net")
    channel.add_account(DEAF, pn="4915100000002@s.whatsapp.net")
    channel.add_account(IDLE, pn="4915100000003@s.whatsapp.net")
    # A draw of 0 makes every retry delay its base: 2 000 ms for a first retry.
    gw = FakeGateway(config, random=lambda: 0.0, channel=channel, keepalive_ms=keepalive_ms)
    assert (gw.connect_ms, gw.ack_ms, gw.boot_ms) == (5, 5, 0)
    replies: list[str] = []

    def script() -> Script:
        for account in (BUSY, DEAF, IDLE):
            gw.feed(Start(account=account))
        for minute in range(1, end // MINUTE + 1):
            yield At(minute * MINUTE)
            if minute % 3 == 0:
                assert gw.inbound(BUSY)
            if minute % 4 == 0:
                rid = f"b{minute}"
                replies.append(rid)
                gen = gw.current[BUSY]
                gw.feed(ReplyCaptured(reply_id=rid, account=BUSY, generation=gen, chat="c@g.us"))
                gw.feed(ReplyReady(reply_id=rid, payload="pong"))

    started = time.perf_counter()
    gw.run(script())
    gw.run_until(end + gw.ack_ms)  # the ack of the reply made ready at the very end
    wall = time.perf_counter() - started

    def times(code: str, account: str) -> list[int]:
        return [e.at_ms for e in gw.timeline if e.code == code and e.account == account]

    restarts = {a: times("health_restart", a) for a in (BUSY, DEAF, IDLE)}
    watchdog = {a: times("lifecycle.watchdog", a) for a in (BUSY, DEAF, IDLE)}
    print(
        f"\n[{days} days, keepalive {keepalive_ms} ms, {wall:.1f}s wall] health restarts: "
        + ", ".join(f"{a} {len(t)}" for a, t in restarts.items())
        + "; watchdog closes: "
        + ", ".join(f"{a} {len(t)}" for a, t in watchdog.items())
    )
    assert gw.rejections == []

    # busy: never restarted, never closed, every reply delivered through its first socket.
    assert restarts[BUSY] == []
    assert watchdog[BUSY] == []
    assert gw.engine.generations(BUSY) == (1,)
    assert gw.engine.controller_socket(BUSY, 1) == 1
    assert len(replies) == end // (4 * MINUTE) == replies_n
    assert {gw.outcomes[r].outcome for r in replies} == {"delivered"}
    assert {gw.outcomes[r].generation for r in replies} == {1}

    # deaf: socket k opens at 5 + (k-1) * 302 005 (connect 5 ms; 300 000 watchdog + 2 000 retry
    # delay + 5 connect per cycle) and is closed 300 000 ms later, at exactly 5 min of silence.
    period = 300_000 + 2_000 + 5
    expected = [300_005 + k * period for k in range((end - 300_005) // period + 1)]
    assert len(expected) == closes_n
    assert watchdog[DEAF] == expected
    assert restarts[DEAF] == []  # between closes it is open (< 30 min) or in the retry grace
    assert gw.engine.generations(DEAF) == (1,)
    # Its last socket is the one the retry after the last close opened.
    assert gw.engine.controller_socket(DEAF, 1) == closes_n + 1

    # idle: health checks at every 300 000 ms from the first Start (0); a socket that opened at
    # t+5 is over the 30 min stale limit (1 800 000 ms) first at the check at t + 2 100 000
    # (t + 1 800 000 sees 1 799 995 ms). So: a restart every 35 min, 288 in 7 days (the last at
    # exactly 7 days), 41 in one. 35 min is past the 10 min cooldown, and at most 2 fall in an
    # hour (the limit is 10): the policy holds none of them.
    assert restarts[IDLE] == [m * 2_100_000 for m in range(1, end // 2_100_000 + 1)]
    assert len(restarts[IDLE]) == restarts_n
    assert watchdog[IDLE] == []  # the frames feed the watchdog
    stale = [e for e in gw.timeline if e.code == "health_restart" and e.account == IDLE]
    assert {e.fields["reason"] for e in stale} == {"stale-socket"}
    assert gw.engine.current(IDLE) == restarts_n + 1
    # Policy bounds, checked on the restart times themselves.
    cfg = config.health
    ts = restarts[IDLE]
    assert all(b - a >= cfg.cooldown_ms for a, b in itertools.pairwise(ts))
    assert all(sum(1 for u in ts if t - cfg.window_ms < u <= t) <= cfg.max_restarts for t in ts)
    # Forgetting: only the newest generation of each account is kept after a week.
    assert gw.engine.generations(IDLE) == (restarts_n + 1,)


# Hand-computed counts (see run_days): replies every 4 min; deaf closes
# (end - 300 005) // 302 005 + 1; idle restarts end // 2 100 000.
ONE_DAY = (360, 286, 41)  # 1 440 / 4; 86 099 995 // 302 005 = 285, + 1; 86.4e6 // 2.1e6
SEVEN_DAYS = (2520, 2002, 288)  # 10 080 / 4; 604 499 995 // 302 005 = 2 001, + 1; 288


def test_one_day_with_a_frame_every_four_minutes() -> None:
    # A frame every 4 min keeps the 5 min watchdog fed as well as one every 30 s does, with an
    # eighth of the events (the counts are the same).
    run_days(1, 240_000, *ONE_DAY)


def test_seven_days_with_a_frame_every_four_minutes() -> None:
    run_days(7, 240_000, *SEVEN_DAYS)


def test_seven_days_with_the_default_keepalive() -> None:
    # About 4 s of wall time: the 7-day run is part of the default suite.
    run_days(7, 30_000, *SEVEN_DAYS)
