"""Machine declarations are validated and compiled, and the compiled table agrees, on every
pair and on random runs, with a hand-written table and the ``transitions`` machine built
from that table (never from the declaration itself)."""

from __future__ import annotations

from enum import StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st
from machine_oracle import Oracle, check_pair, fire

from heirline.core.errors import InvalidTransition
from heirline.core.machine import CompiledMachine, MachineSpec, Transition


class Door(StrEnum):
    SHUT = "shut"
    OPEN = "open"
    GONE = "gone"
    ATTIC = "attic"  # never declared in SPEC: for the ill-formed declarations


class Push(StrEnum):
    PUSH = "push"
    PULL = "pull"
    BURN = "burn"
    KICK = "kick"  # never declared in SPEC


STATES = (Door.SHUT, Door.OPEN, Door.GONE)
TRIGGERS = (Push.PUSH, Push.PULL, Push.BURN)

SPEC = MachineSpec(
    name="door",
    states=STATES,
    initial=Door.SHUT,
    terminal=frozenset({Door.GONE}),
    triggers=TRIGGERS,
    transitions=(
        Transition(Door.SHUT, Push.PUSH, Door.OPEN),
        Transition(Door.OPEN, Push.PULL, Door.SHUT),
        Transition(Door.SHUT, Push.BURN, Door.GONE),
        Transition(Door.OPEN, Push.BURN, Door.GONE),
    ),
)

#: The door, written out by hand: every accepted pair; all other pairs are rejected.
EXPECTED = {
    ("shut", "push"): "open",
    ("shut", "burn"): "gone",
    ("open", "pull"): "shut",
    ("open", "burn"): "gone",
}
ORACLE = Oracle(["shut", "open", "gone"], ["push", "pull", "burn"], "shut", EXPECTED)
TABLE = SPEC.compile()


def test_the_declaration_is_exactly_the_hand_written_table() -> None:
    assert {(t.source, t.trigger): t.dest for t in SPEC.transitions} == EXPECTED


def test_pairs_are_every_state_with_every_trigger_in_declaration_order() -> None:
    assert SPEC.pairs() == [(s, t) for s in STATES for t in TRIGGERS]
    assert len(SPEC.pairs()) == 9
    assert SPEC.pairs() == ORACLE.pairs()


@pytest.mark.parametrize(("state", "trigger"), SPEC.pairs())
def test_every_pair_is_the_hand_written_transition_or_a_typed_rejection(
    state: Door, trigger: Push
) -> None:
    check_pair(TABLE, ORACLE, state, trigger)


def test_the_compiled_table_has_a_row_for_every_state_even_a_terminal_one() -> None:
    assert set(TABLE.table) == set(STATES)
    assert TABLE.table[Door.GONE] == {}
    assert TABLE.name == "door"
    assert isinstance(TABLE, CompiledMachine)


def test_an_undeclared_state_or_trigger_is_rejected_not_a_key_error() -> None:
    assert not TABLE.accepts(Door.ATTIC, Push.PUSH)
    assert not TABLE.accepts(Door.SHUT, Push.KICK)
    with pytest.raises(InvalidTransition) as caught:
        TABLE.next(Door.ATTIC, Push.PUSH)
    assert (caught.value.machine, caught.value.state, caught.value.trigger) == (
        "door",
        "attic",
        "push",
    )


def test_invalid_transition_message_names_machine_state_and_input_by_value() -> None:
    with pytest.raises(
        InvalidTransition, match=r"^door: input 'pull' is not accepted in state 'shut'$"
    ) as caught:
        TABLE.next(Door.SHUT, Push.PULL)
    # A StrEnum member is carried as its plain value, as the wire and logs show it.
    assert type(caught.value.state) is str
    assert type(caught.value.trigger) is str
    assert caught.value.code == "invalid_transition"


@given(st.lists(st.sampled_from(TRIGGERS), max_size=30))
def test_random_trigger_sequences_agree_with_the_oracle(triggers: list[Push]) -> None:
    machine = ORACLE.machine()
    state = SPEC.initial
    for trigger in triggers:
        expected = EXPECTED.get((state, trigger))
        assert fire(machine, trigger) == expected
        if expected is None:
            with pytest.raises(InvalidTransition):
                TABLE.next(state, trigger)
        else:
            state = TABLE.next(state, trigger)
            assert state == expected
        assert state == machine.state


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"initial": Door.ATTIC}, "initial state <Door.ATTIC: 'attic'> is not declared"),
        ({"terminal": frozenset({Door.ATTIC})}, "terminal state <Door.ATTIC: 'attic'> is not"),
        ({"states": (Door.SHUT, Door.SHUT, Door.OPEN, Door.GONE)}, "duplicate state names"),
        ({"triggers": (Push.PUSH, *TRIGGERS)}, "duplicate trigger names"),
        (
            {"transitions": (Transition(Door.SHUT, Push.KICK, Door.OPEN),)},
            "trigger <Push.KICK: 'kick'> is not declared",
        ),
        (
            {"transitions": (Transition(Door.SHUT, Push.PUSH, Door.ATTIC),)},
            "dest <Door.ATTIC: 'attic'> is not a declared state",
        ),
        (
            {"transitions": (Transition(Door.ATTIC, Push.PUSH, Door.OPEN),)},
            "source <Door.ATTIC: 'attic'> is not a declared state",
        ),
        (
            {"transitions": (Transition(Door.GONE, Push.PUSH, Door.OPEN),)},
            "terminal state <Door.GONE: 'gone'> has an outgoing transition",
        ),
        (
            {"transitions": (Transition(Door.SHUT, Push.PUSH, Door.OPEN),) * 2},
            "is declared twice",
        ),
    ],
)
def test_ill_formed_declarations_are_rejected_with_the_reason(
    kwargs: dict[str, object], complaint: str
) -> None:
    fields: dict[str, object] = {
        "name": SPEC.name,
        "states": SPEC.states,
        "initial": SPEC.initial,
        "terminal": SPEC.terminal,
        "triggers": SPEC.triggers,
        "transitions": SPEC.transitions,
        **kwargs,
    }
    with pytest.raises(ValueError, match=r"^machine 'door' is ill-formed: ") as caught:
        MachineSpec(**fields)  # type: ignore[arg-type,type-var]
    assert complaint in str(caught.value)


def test_every_problem_of_a_declaration_is_reported_at_once() -> None:
    with pytest.raises(ValueError, match="ill-formed") as caught:
        MachineSpec(
            name="door",
            states=STATES,
            initial=Door.ATTIC,
            terminal=frozenset({Door.GONE}),
            triggers=TRIGGERS,
            transitions=(Transition(Door.GONE, Push.KICK, Door.OPEN),),
        )
    message = str(caught.value)
    for complaint in ("initial state", "trigger <Push.KICK", "terminal state <Door.GONE"):
        assert complaint in message


def test_a_well_formed_declaration_with_no_transitions_rejects_everything() -> None:
    empty = MachineSpec(
        name="still",
        states=STATES,
        initial=Door.SHUT,
        terminal=frozenset(),
        triggers=TRIGGERS,
        transitions=(),
    )
    table = empty.compile()
    oracle = Oracle(["shut", "open", "gone"], ["push", "pull", "burn"], "shut", {})
    for state, trigger in empty.pairs():
        check_pair(table, oracle, state, trigger)


def test_the_oracle_disagrees_with_a_table_that_differs_from_the_hand_written_one() -> None:
    """The oracle can fail: a spec with one edge redirected is caught on that pair."""
    wrong = MachineSpec(
        name="door",
        states=STATES,
        initial=Door.SHUT,
        terminal=frozenset({Door.GONE}),
        triggers=TRIGGERS,
        transitions=(
            Transition(Door.SHUT, Push.PUSH, Door.GONE),  # should lead to open
            Transition(Door.OPEN, Push.PULL, Door.SHUT),
            Transition(Door.SHUT, Push.BURN, Door.GONE),
            Transition(Door.OPEN, Push.BURN, Door.GONE),
        ),
    ).compile()
    with pytest.raises(AssertionError):
        check_pair(wrong, ORACLE, Door.SHUT, Push.PUSH)
    check_pair(wrong, ORACLE, Door.OPEN, Push.PULL)  # the untouched pairs still agree
