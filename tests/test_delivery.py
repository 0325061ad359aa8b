"""The delivery machine: every (state, trigger) pair is declared or rejected, and the
compiled table agrees with the ``transitions`` oracle on every pair and on random runs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transitions import MachineError

from heirline.core import delivery
from heirline.core.delivery import DELIVERY, TABLE, TERMINAL_STATES
from heirline.core.errors import InvalidTransition

#: The specification, pair by pair: every accepted input and where it leads.
EXPECTED = {
    ("pending", "transmit"): "in_flight",
    ("pending", "hold"): "waiting",
    ("pending", "refuse"): "refused",
    ("pending", "deadline"): "failed",
    ("waiting", "transmit"): "in_flight",
    ("waiting", "hold"): "waiting",
    ("waiting", "refuse"): "refused",
    ("waiting", "refuse_unclear"): "unknown",
    ("waiting", "ack"): "delivered",
    ("waiting", "deadline"): "failed",
    ("waiting", "deadline_unclear"): "unknown",
    ("in_flight", "ack"): "delivered",
    ("in_flight", "lost_before_io"): "waiting",
    ("in_flight", "lost_resendable"): "waiting",
    ("in_flight", "lost_unresendable"): "unknown",
    ("in_flight", "give_up"): "failed",
    ("in_flight", "deadline_unclear"): "unknown",
}


@pytest.mark.parametrize(("state", "trigger"), DELIVERY.pairs())
def test_every_pair_is_the_declared_transition_or_a_typed_rejection(
    state: str, trigger: str
) -> None:
    expected = EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(InvalidTransition) as caught:
            TABLE.next(state, trigger)
        assert (caught.value.state, caught.value.trigger) == (state, trigger)
    else:
        assert TABLE.next(state, trigger) == expected


def test_terminal_states_accept_nothing_and_are_the_four_outcomes() -> None:
    assert {"delivered", "refused", "failed", "unknown"} == TERMINAL_STATES
    for state in TERMINAL_STATES:
        assert all(not TABLE.accepts(state, t) for t in DELIVERY.triggers)


def test_a_transmission_is_only_ever_started_from_pending_or_waiting() -> None:
    sources = {t.source for t in DELIVERY.transitions if t.dest == delivery.IN_FLIGHT}
    assert sources == {delivery.PENDING, delivery.WAITING}


def _oracle_step(state: str, trigger: str) -> str | None:
    machine = DELIVERY.oracle(state)
    try:
        machine.trigger(trigger)
    except MachineError:
        return None
    return str(machine.state)


@pytest.mark.parametrize(("state", "trigger"), DELIVERY.pairs())
def test_compiled_table_agrees_with_the_transitions_oracle(state: str, trigger: str) -> None:
    assert _oracle_step(state, trigger) == (
        TABLE.next(state, trigger) if TABLE.accepts(state, trigger) else None
    )


@given(st.lists(st.sampled_from(DELIVERY.triggers), max_size=25))
def test_random_input_sequences_agree_with_the_oracle(triggers: list[str]) -> None:
    oracle = DELIVERY.oracle()
    state = DELIVERY.initial
    for trigger in triggers:
        try:
            oracle.trigger(trigger)
        except MachineError:
            with pytest.raises(InvalidTransition):
                TABLE.next(state, trigger)
            continue
        state = TABLE.next(state, trigger)
        assert state == oracle.state
