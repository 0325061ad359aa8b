"""Log levels: records below ``EngineConfig.log_level`` are never built, and decide nothing.

docs/lifecycle.md ("Log records and levels") promises three things: the level
applies to the controllers' records as well as the engine's; a record below it
is not even constructed (so an embedder that reads no debug records does not
pay for them); and every other effect is the same at every level.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.effects import LogLevel
from heirline.core.engine import Engine, EngineConfig
from heirline.core.lifecycle import LifecycleConfig
from heirline.core.timers import RetryTimer

A = "acct"
PN = "4915100000001@s.whatsapp.net"

#: A story that makes the engine say something at every level: a reply sent, lost with its
#: socket (warning), resent after the retry (info) and delivered; a late close (debug) and a
#: late ack (warning); a restart, a 401 (error), a health hold (info), a stop of a generation
#: that is over (debug).
STORY: tuple[tuple[int, ev.Event], ...] = (
    (0, ev.Start(account=A)),
    (5, ev.SocketOpened(account=A, generation=1, attempt=1, pn=PN)),
    (10, ev.ReplyCaptured(reply_id="r1", account=A, generation=1, chat="c@g.us")),
    (11, ev.ReplyReady(reply_id="r1", payload="hi")),
    (20, ev.SocketClosed(account=A, generation=1, attempt=1, status=408)),
    (2_020, ev.TimerFired(timer=RetryTimer(account=A, generation=1))),
    (2_030, ev.SocketOpened(account=A, generation=1, attempt=2, pn=PN)),
    (2_040, ev.TransmitAcked(reply_id="r1", generation=1, attempt=2)),
    (2_050, ev.SocketClosed(account=A, generation=1, attempt=1, status=408)),
    (2_060, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1)),
    (2_070, ev.Start(account=A)),
    (2_080, ev.SocketOpened(account=A, generation=2, attempt=3, pn=PN)),
    (2_090, ev.SocketClosed(account=A, generation=2, attempt=3, status=401)),
    (100_000, ev.HealthCheck()),
    (100_010, ev.Stop(account=A, generation=2)),
)


def play(level: LogLevel) -> list[list[fx.Effect]]:
    """The effects of every step of :data:`STORY` at ``level`` (a retry delay of 2 000 ms)."""
    engine = Engine(EngineConfig(log_level=level, health_timer=False), random=lambda: 0.0)
    steps = [engine.handle(event, now) for now, event in STORY]
    assert not any(isinstance(e, fx.Rejected) for step in steps for e in step)
    return steps


def logs(steps: list[list[fx.Effect]]) -> list[fx.Log]:
    return [e for step in steps for e in step if isinstance(e, fx.Log)]


def test_the_story_says_something_at_every_level() -> None:
    said = logs(play(LogLevel.DEBUG))
    assert {log.level for log in said} == {"debug", "info", "warning", "error"}
    codes = {log.code for log in said}
    assert {"late_close", "late_ack", "lifecycle.logged_out", "health_hold"} <= codes
    assert {"lifecycle.retry_scheduled", "lifecycle.stopped", "stop_ignored"} <= codes


@pytest.mark.parametrize("level", list(LogLevel))
def test_only_records_at_or_above_the_level_come_out(level: LogLevel) -> None:
    said = logs(play(level))
    assert all(LogLevel[log.level.upper()] >= level for log in said)
    expected = [log for log in logs(play(LogLevel.DEBUG)) if LogLevel[log.level.upper()] >= level]
    assert said == expected
    if level is LogLevel.OFF:
        assert said == []


@pytest.mark.parametrize("level", list(LogLevel))
def test_the_level_changes_no_decision(level: LogLevel) -> None:
    def decisions(steps: list[list[fx.Effect]]) -> list[list[fx.Effect]]:
        return [[e for e in step if not isinstance(e, fx.Log)] for step in steps]

    assert decisions(play(level)) == decisions(play(LogLevel.DEBUG))


@pytest.mark.parametrize("level", [LogLevel.INFO, LogLevel.WARNING, LogLevel.ERROR, LogLevel.OFF])
def test_a_record_below_the_level_is_never_built(
    level: LogLevel, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    init: Callable[..., None] = fx.Log.__init__

    def counting_init(self: fx.Log, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        built.append(self.level)

    monkeypatch.setattr(fx.Log, "__init__", counting_init)
    play(level)
    assert all(LogLevel[label.upper()] >= level for label in built), built
    assert (built == []) is (level is LogLevel.OFF)
    monkeypatch.undo()
    # Nothing was built and then dropped: what comes out is all that was built.
    assert len(built) == len(logs(play(level)))


def test_the_engine_level_is_the_controllers_level() -> None:
    config = EngineConfig(log_level=LogLevel.ERROR)
    assert config.lifecycle.log_level is LogLevel.ERROR
    # Whatever the lifecycle config said: one threshold for the whole engine.
    config = EngineConfig(lifecycle=LifecycleConfig(log_level=LogLevel.DEBUG))
    assert config.lifecycle.log_level is LogLevel.DEBUG is config.log_level
    config = EngineConfig(
        lifecycle=LifecycleConfig(log_level=LogLevel.DEBUG), log_level=LogLevel.WARNING
    )
    assert config.lifecycle.log_level is LogLevel.WARNING
