"""The delivery machine: every (state, trigger) pair is the hand-written transition or a
typed rejection, the compiled table agrees with the ``transitions`` oracle built from the
hand-written table on every pair and on random runs, and a reply changes state only
through ``Reply._set_state``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from machine_oracle import Oracle, check_pair, fire, state_assignments

from heirline.core.controller import AttemptCounter, Controller
from heirline.core.delivery import (
    DELIVERY,
    KINDS,
    TABLE,
    TERMINAL_STATES,
    EndedReply,
    Reply,
    ReplyState,
    ReplyTrigger,
)
from heirline.core.errors import InvalidTransition
from heirline.core.identity import SelfIdentity, identity_keys
from heirline.core.lifecycle import LifecycleConfig

ROOT = Path(__file__).resolve().parents[1]

#: The states and triggers, spelled out (the wire and the logs carry these strings).
STATES = ["pending", "waiting", "in_flight", "delivered", "refused", "failed", "unknown"]
TRIGGERS = [
    "transmit",
    "hold",
    "refuse",
    "refuse_unclear",
    "ack",
    "lost_before_io",
    "lost_resendable",
    "lost_unresendable",
    "give_up",
    "deadline",
    "deadline_unclear",
    "shutdown",
    "shutdown_unclear",
]

#: The specification, pair by pair: every accepted input and where it leads.
EXPECTED = {
    ("pending", "transmit"): "in_flight",
    ("pending", "hold"): "waiting",
    ("pending", "refuse"): "refused",
    ("pending", "deadline"): "failed",
    ("pending", "shutdown"): "failed",
    ("waiting", "transmit"): "in_flight",
    ("waiting", "hold"): "waiting",
    ("waiting", "refuse"): "refused",
    ("waiting", "refuse_unclear"): "unknown",
    ("waiting", "ack"): "delivered",  # a late ack of an earlier transmission
    ("waiting", "deadline"): "failed",
    ("waiting", "deadline_unclear"): "unknown",
    ("waiting", "shutdown"): "failed",
    ("waiting", "shutdown_unclear"): "unknown",
    ("in_flight", "ack"): "delivered",
    ("in_flight", "lost_before_io"): "waiting",
    ("in_flight", "lost_resendable"): "waiting",
    ("in_flight", "lost_unresendable"): "unknown",
    ("in_flight", "give_up"): "failed",
    ("in_flight", "deadline_unclear"): "unknown",
    ("in_flight", "shutdown_unclear"): "unknown",
}
ORACLE = Oracle(STATES, TRIGGERS, "pending", EXPECTED)


def test_states_and_triggers_are_the_spelled_out_ones_in_order() -> None:
    assert [s.value for s in ReplyState] == STATES
    assert [t.value for t in ReplyTrigger] == TRIGGERS
    assert list(DELIVERY.states) == STATES
    assert list(DELIVERY.triggers) == TRIGGERS
    assert DELIVERY.initial == "pending"
    assert DELIVERY.name == TABLE.name == "delivery"


def test_the_declaration_is_exactly_the_hand_written_table() -> None:
    declared = {(t.source, t.trigger): t.dest for t in DELIVERY.transitions}
    assert declared == EXPECTED
    assert len(DELIVERY.transitions) == len(EXPECTED)


@pytest.mark.parametrize(("state", "trigger"), DELIVERY.pairs())
def test_every_pair_is_the_hand_written_transition_or_a_typed_rejection(
    state: ReplyState, trigger: ReplyTrigger
) -> None:
    check_pair(TABLE, ORACLE, state, trigger)


def test_terminal_states_accept_nothing_and_are_the_four_outcomes() -> None:
    assert {"delivered", "refused", "failed", "unknown"} == TERMINAL_STATES
    assert DELIVERY.terminal == TERMINAL_STATES
    for state in TERMINAL_STATES:
        assert all(not TABLE.accepts(state, t) for t in DELIVERY.triggers)


def test_every_non_terminal_state_can_end_at_shutdown_and_at_its_deadline() -> None:
    for state in set(ReplyState) - TERMINAL_STATES:
        ends = {EXPECTED.get((state, t)) for t in ("shutdown", "shutdown_unclear")}
        assert ends - {None}, f"{state} has no way to end at shutdown"
        assert ends - {None} <= {"failed", "unknown"}
        deadline = {EXPECTED.get((state, t)) for t in ("deadline", "deadline_unclear")}
        assert deadline - {None} <= {"failed", "unknown"}
        assert deadline - {None}


def test_an_in_flight_reply_never_ends_failed_at_shutdown_or_deadline() -> None:
    """A transmission in flight may have arrived: only ``unknown`` is honest."""
    for trigger in ("shutdown", "deadline"):
        assert not TABLE.accepts(ReplyState.IN_FLIGHT, ReplyTrigger(trigger))


def test_a_transmission_is_only_ever_started_from_pending_or_waiting() -> None:
    sources = {t.source for t in DELIVERY.transitions if t.dest is ReplyState.IN_FLIGHT}
    assert sources == {ReplyState.PENDING, ReplyState.WAITING}


@given(st.lists(st.sampled_from(DELIVERY.triggers), max_size=25))
def test_random_input_sequences_agree_with_the_oracle(triggers: list[ReplyTrigger]) -> None:
    oracle = ORACLE.machine()
    state = DELIVERY.initial
    for trigger in triggers:
        expected = fire(oracle, trigger)
        assert expected == EXPECTED.get((state, trigger))
        if expected is None:
            with pytest.raises(InvalidTransition):
                TABLE.next(state, trigger)
        else:
            state = TABLE.next(state, trigger)
        assert state == oracle.state


# -- the Reply: one chokepoint ---------------------------------------------------------------


def _reply() -> Reply:
    origin = Controller("acct", 1, LifecycleConfig(), AttemptCounter())
    identity = SelfIdentity.parse(pn="4915123456789@s.whatsapp.net")
    return Reply("r1", origin, "chat@s.whatsapp.net", "text", "m1", identity, 5_000)


def test_a_new_reply_is_pending_with_nothing_sent() -> None:
    reply = _reply()
    assert reply.state is ReplyState.PENDING
    assert (reply.account, reply.origin.generation, reply.message_id) == ("acct", 1, "m1")
    assert (reply.via, reply.via_attempt, reply.transmissions, reply.sent) == (None, None, 0, {})
    assert reply.io_ever_started is False
    assert reply.keys == identity_keys(reply.identity)
    assert reply.payload == reply.wait_reason == ""
    assert repr(reply) == "Reply('r1', state='pending', via=None)"
    assert "text" in KINDS


#: A way into each state through the chokepoint (checked against the hand-written table).
PATHS: dict[str, list[str]] = {
    "pending": [],
    "waiting": ["hold"],
    "in_flight": ["transmit"],
    "delivered": ["transmit", "ack"],
    "refused": ["refuse"],
    "failed": ["deadline"],
    "unknown": ["transmit", "lost_unresendable"],
}


@pytest.mark.parametrize(("state", "trigger"), DELIVERY.pairs())
def test_a_reply_in_every_state_takes_every_trigger_or_refuses_it_unchanged(
    state: ReplyState, trigger: ReplyTrigger
) -> None:
    reply = _reply()
    at = "pending"
    for step in PATHS[state]:
        reply._set_state(ReplyTrigger(step))
        at = EXPECTED[(at, step)]
    assert reply.state is state
    assert at == state
    expected = EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(InvalidTransition) as caught:
            reply._set_state(trigger)
        assert (caught.value.machine, caught.value.state, caught.value.trigger) == (
            "delivery",
            state,
            trigger,
        )
        assert reply.state is state
    else:
        reply._set_state(trigger)
        assert reply.state is ReplyState(expected)


@given(st.lists(st.sampled_from(DELIVERY.triggers), max_size=25))
def test_reply_set_state_follows_the_oracle_and_a_rejection_changes_nothing(
    triggers: list[ReplyTrigger],
) -> None:
    reply = _reply()
    oracle = ORACLE.machine()
    for trigger in triggers:
        before = reply.state
        expected = fire(oracle, trigger)
        if expected is None:
            with pytest.raises(InvalidTransition) as caught:
                reply._set_state(trigger)
            assert (caught.value.machine, caught.value.state, caught.value.trigger) == (
                "delivery",
                before,
                trigger,
            )
            assert reply.state is before
        else:
            reply._set_state(trigger)
            assert reply.state == expected
            assert isinstance(reply.state, ReplyState)


def test_only_set_state_assigns_a_reply_state() -> None:
    """No ``reply.state = ...`` anywhere but the chokepoint (and the constructor)."""
    assert state_assignments(ROOT / "core" / "delivery.py") == {
        "Reply.__init__",
        "Reply._set_state",
    }
    for module in ("book.py", "engine.py", "routing.py"):
        assert state_assignments(ROOT / "core" / module) == set(), module


def test_the_memory_of_an_ended_reply_is_a_named_record() -> None:
    ended = EndedReply(ReplyState.DELIVERED, {3: 1}, 3, "m")
    assert ended._fields == ("state", "sent", "acked_attempt", "message_id")
    assert (ended.state, ended.sent, ended.acked_attempt, ended.message_id) == (
        "delivered",
        {3: 1},
        3,
        "m",
    )
