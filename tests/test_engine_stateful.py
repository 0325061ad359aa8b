"""Hypothesis stateful tests: long random runs of plausible, racy and bad adapter inputs.

The same world as the exhaustive explorer (``tests/test_explore.py``: engine,
fake adapter, the hand-written ground truth of who each socket identity is,
:class:`tests.invariants.InvariantChecker` with strict deadlines), but two
accounts, more generations and replies (every kind) and far longer runs than
exhaustive search can reach. Each rule draws one input of its kind among those
an adapter could report in the current state (an ack only for a transmission
that happened, an open only for a socket being connected, a watchdog report
only for a socket silent long enough, ...); racy inputs (late closes, frames and
acks of sockets that are gone) must keep every invariant or be rejected without
changing anything; bad inputs must be rejected with their code and leave the
world byte-identical. Every step is checked by the checker and the state is
re-checked between steps. Example counts come from the conftest profile; only
the run length is set here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from heirline.core.effects import Rejected
from heirline.core.events import (
    Activity,
    Event,
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    Shutdown,
    SocketClosed,
    SocketOpened,
    Start,
    Stop,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
    WatchdogSilence,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_explore import (
    World,
    apply,
    must_reject,
    new_world,
    plausible,
    racy,
    restore,
    snapshot,
)

MAX_GENERATIONS = 6
MAX_TICKS = 40
STEPS = 150
#: Shutdown ends a run (every later input is rejected): only late in it.
SHUTDOWN_AFTER = 120


class EngineMachine(RuleBasedStateMachine):
    """Random walks over plausible inputs; the invariant checker judges every step."""

    def __init__(self) -> None:
        super().__init__()
        self.world: World = new_world("long")
        self.steps = 0

    def _moves(self) -> list[Event | None]:
        return list(plausible(self.world, max_generations=MAX_GENERATIONS, max_ticks=MAX_TICKS))

    def _apply(self, event: Event | None) -> None:
        self.steps += 1
        effects = apply(self.world, event)
        rejected = [e for e in effects if isinstance(e, Rejected)]
        assert not rejected, f"a plausible input was rejected: {event!r} -> {rejected!r}"

    def _play(self, data: st.DataObject, *kinds: type[Event]) -> None:
        moves = [m for m in self._moves() if m is not None and isinstance(m, kinds)]
        if moves:
            self._apply(data.draw(st.sampled_from(moves), label="event"))

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self._play(data, Start)

    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        self._play(data, Stop)

    @rule(data=st.data())
    def open_socket(self, data: st.DataObject) -> None:
        self._play(data, SocketOpened)

    @rule(data=st.data())
    def close_socket(self, data: st.DataObject) -> None:
        self._play(data, SocketClosed)

    @rule(data=st.data())
    def frame(self, data: st.DataObject) -> None:
        self._play(data, Activity)

    @rule(data=st.data())
    def watchdog_silence(self, data: st.DataObject) -> None:
        self._play(data, WatchdogSilence)

    @rule(data=st.data())
    def fire_timer(self, data: st.DataObject) -> None:
        self._play(data, TimerFired)

    @rule()
    def advance_time(self) -> None:
        if None in self._moves():  # only when every due timer has fired
            self._apply(None)

    @rule(data=st.data())
    def health_check(self, data: st.DataObject) -> None:
        self._play(data, HealthCheck)

    @rule(data=st.data())
    def capture(self, data: st.DataObject) -> None:
        self._play(data, ReplyCaptured)

    @rule(data=st.data())
    def ready(self, data: st.DataObject) -> None:
        self._play(data, ReplyReady)

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        self._play(data, TransmitAcked)

    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        self._play(data, TransmitFailed)

    @rule(data=st.data())
    def learn_mapping(self, data: st.DataObject) -> None:
        self._play(data, MappingLearned)

    @precondition(lambda self: self.steps >= SHUTDOWN_AFTER)
    @rule(data=st.data())
    def shutdown(self, data: st.DataObject) -> None:
        self._play(data, Shutdown)

    def _copy(self) -> bytes:
        """Continue on a restored copy of the world and return its snapshot.

        Pickle records which strings are shared, so a live world's bytes may differ from
        its copy's; from the first copy on they are a fixpoint, and comparable.
        """
        self.world = restore(snapshot(self.world))
        return snapshot(self.world)

    @rule(data=st.data())
    def racy_input(self, data: st.DataObject) -> None:
        moves = list(racy(self.world))
        if not moves:
            return
        event = data.draw(st.sampled_from(moves), label="racy")
        before = self._copy()
        self.steps += 1
        effects = apply(self.world, event)
        if any(isinstance(e, Rejected) for e in effects):
            assert snapshot(self.world) == before, f"rejected racy {event!r} changed the world"

    @rule(data=st.data())
    def bad_input(self, data: st.DataObject) -> None:
        bad = list(must_reject(self.world))
        event, now, code = data.draw(st.sampled_from(bad), label="bad")
        before = self._copy()
        effects = self.world.step(event, now)
        assert [type(e) for e in effects] == [Rejected], (event, now, effects)
        assert isinstance(effects[0], Rejected)
        assert effects[0].code == code, (event, now, effects)
        assert snapshot(self.world) == before, f"rejected {event!r} changed the world"

    @invariant()
    def invariants_hold(self) -> None:
        self.world.checker.check(self.world.adapter.now)


EngineMachine.TestCase.settings = settings(stateful_step_count=STEPS)
TestEngineStateful = EngineMachine.TestCase
