"""Machine declarations are validated, compiled, and agree with ``transitions``."""

from __future__ import annotations

import pytest
from transitions import MachineError

from heirline.core.errors import InvalidTransition
from heirline.core.machine import MachineSpec, Transition

SPEC = MachineSpec(
    name="door",
    states=("shut", "open", "gone"),
    initial="shut",
    terminal=frozenset({"gone"}),
    triggers=("push", "pull", "burn"),
    transitions=(
        Transition("shut", "push", "open"),
        Transition("open", "pull", "shut"),
        Transition("shut", "burn", "gone"),
        Transition("open", "burn", "gone"),
    ),
)


def test_compiled_table_and_transitions_oracle_agree_on_every_pair() -> None:
    table = SPEC.compile()
    for state, trigger in SPEC.pairs():
        oracle = SPEC.oracle(state)
        try:
            oracle.trigger(trigger)
            expected: str | None = str(oracle.state)
        except MachineError:
            expected = None
        if expected is None:
            with pytest.raises(InvalidTransition) as caught:
                table.next(state, trigger)
            assert (caught.value.machine, caught.value.state, caught.value.trigger) == (
                "door",
                state,
                trigger,
            )
            assert not table.accepts(state, trigger)
        else:
            assert table.next(state, trigger) == expected
            assert table.accepts(state, trigger)


def test_invalid_transition_message_names_machine_state_and_input() -> None:
    with pytest.raises(
        InvalidTransition, match=r"door: input 'pull' is not accepted in state 'shut'"
    ):
        SPEC.compile().next("shut", "pull")


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"initial": "nowhere"}, "initial state 'nowhere' is not declared"),
        ({"terminal": frozenset({"x"})}, "terminal state 'x' is not declared"),
        ({"states": ("shut", "shut", "open", "gone")}, "duplicate state names"),
        ({"triggers": ("push", "push", "pull", "burn")}, "duplicate trigger names"),
        (
            {"transitions": (Transition("shut", "kick", "open"),)},
            "trigger 'kick' is not declared",
        ),
        (
            {"transitions": (Transition("shut", "push", "attic"),)},
            "dest 'attic' is not a declared state",
        ),
        (
            {"transitions": (Transition("gone", "push", "open"),)},
            "terminal state 'gone' has an outgoing transition",
        ),
        (
            {"transitions": (Transition("shut", "push", "open"),) * 2},
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
    with pytest.raises(ValueError, match="ill-formed") as caught:
        MachineSpec(**fields)  # type: ignore[arg-type]
    assert complaint in str(caught.value)


def test_mermaid_rendering_lists_every_transition() -> None:
    text = SPEC.mermaid()
    assert text.startswith("---\ndoor\n---\nstateDiagram-v2")
    for t in SPEC.transitions:
        assert f"{t.source} --> {t.dest}: {t.trigger}" in text
    assert "[*] --> shut" in text
