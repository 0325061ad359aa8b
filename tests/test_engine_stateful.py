"""Hypothesis stateful tests: long random runs of plausible adapter inputs.

The same world as the exhaustive explorer (``tests/test_explore.py``: engine,
fake adapter, :class:`tests.invariants.InvariantChecker` with strict
deadlines), but more generations and replies and far longer runs than
exhaustive search can reach. Each rule draws one input of its kind among those
an adapter could report in the current state (an ack only for a transmission
that happened, an open only for a socket being connected, ...); every step is
checked by the checker and the state is re-checked between steps. Example
counts come from the conftest profile; only the run length is set here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from heirline.core.events import (
    Event,
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    SocketClosed,
    SocketOpened,
    Start,
    Stop,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_explore import World, apply, new_world, plausible

MAX_GENERATIONS = 6
REPLIES = tuple(
    (f"r{i}", kind)
    for i, kind in enumerate(("text", "read_receipt", "text", "media", "group_metadata"), 1)
)
MAX_TICKS = 40


class EngineMachine(RuleBasedStateMachine):
    """Random walks over plausible inputs; the invariant checker judges every step."""

    def __init__(self) -> None:
        super().__init__()
        self.world: World = new_world()
        self.kinds: dict[str, int] = {}

    def _moves(self, *kinds: type[Event]) -> list[Event | None]:
        moves = plausible(
            self.world, max_generations=MAX_GENERATIONS, replies=REPLIES, max_ticks=MAX_TICKS
        )
        return [m for m in moves if m is not None and isinstance(m, kinds)]

    def _play(self, data: st.DataObject, *kinds: type[Event]) -> None:
        moves = self._moves(*kinds)
        if moves:
            apply(self.world, data.draw(st.sampled_from(moves), label="event"))

    @precondition(lambda self: self.world.adapter.highest < MAX_GENERATIONS)
    @rule()
    def start(self) -> None:
        apply(self.world, Start(account="a"))

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
    def fire_timer(self, data: st.DataObject) -> None:
        self._play(data, TimerFired)

    @rule()
    def advance_time(self) -> None:
        moves = plausible(
            self.world, max_generations=MAX_GENERATIONS, replies=REPLIES, max_ticks=MAX_TICKS
        )
        if None in moves:  # only when every due timer has fired
            apply(self.world, None)

    @precondition(lambda self: self.world.adapter.highest < MAX_GENERATIONS)
    @rule()
    def health_check(self) -> None:
        apply(self.world, HealthCheck())

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

    @invariant()
    def invariants_hold(self) -> None:
        self.world.checker.check(self.world.adapter.now)


EngineMachine.TestCase.settings = settings(stateful_step_count=150)
TestEngineStateful = EngineMachine.TestCase
