"""An independent reference for heirline's machines, for the tests only.

A machine's expected behaviour is written out by hand in its test module, pair
by pair: ``{(state, trigger): dest}`` for every accepted input, every other
pair rejected. :class:`Oracle` turns that hand-written table into a
``transitions.Machine`` (``auto_transitions=False``, invalid triggers raise),
so the compiled table the engine runs is checked against two things that do
not come from the spec's own ``Transition`` tuples: the table as written, and
a third-party implementation of what that table means.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import pytest
from transitions import Machine, MachineError

from heirline.core.errors import InvalidTransition
from heirline.core.machine import CompiledMachine

S = TypeVar("S", bound=StrEnum)
T = TypeVar("T", bound=StrEnum)

#: A hand-written machine: ``(state, trigger) -> dest`` for every accepted pair.
Expected = Mapping[tuple[str, str], str]


class Oracle:
    """A ``transitions`` machine built from a hand-written expected table."""

    def __init__(
        self, states: Iterable[str], triggers: Iterable[str], initial: str, expected: Expected
    ) -> None:
        self.states = tuple(str(s) for s in states)
        self.triggers = tuple(str(t) for t in triggers)
        self.initial = str(initial)
        self.expected = {(str(s), str(t)): str(d) for (s, t), d in expected.items()}
        known_states, known_triggers = set(self.states), set(self.triggers)
        for (source, trigger), dest in self.expected.items():
            # A typo in the hand-written table must fail loudly, not shrink the oracle.
            assert {source, dest} <= known_states, f"unknown state in {(source, trigger, dest)}"
            assert trigger in known_triggers, f"unknown trigger in {(source, trigger, dest)}"
        assert self.initial in known_states

    def machine(self, state: str | None = None) -> Machine:
        """A fresh ``transitions`` machine in ``state`` (the initial state by default)."""
        return Machine(
            states=list(self.states),
            transitions=[
                {"trigger": trigger, "source": source, "dest": dest}
                for (source, trigger), dest in self.expected.items()
            ],
            initial=self.initial if state is None else str(state),
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )

    def step(self, state: str, trigger: str) -> str | None:
        """Where ``trigger`` leads from ``state`` per ``transitions`` (``None``: rejected)."""
        return fire(self.machine(state), trigger)

    def pairs(self) -> list[tuple[str, str]]:
        """Every (state, trigger) pair."""
        return [(s, t) for s in self.states for t in self.triggers]


def fire(machine: Machine, trigger: str) -> str | None:
    """Fire ``trigger`` on a ``transitions`` machine: the new state, or ``None`` if rejected.

    A rejection leaves the machine in the state it was in.
    """
    before = str(machine.state)
    if str(trigger) not in machine.events:
        return None  # a trigger the hand-written table never accepts anywhere
    try:
        machine.trigger(str(trigger))
    except MachineError:
        assert str(machine.state) == before
        return None
    return str(machine.state)


def check_pair(table: CompiledMachine[S, T], oracle: Oracle, state: S, trigger: T) -> None:
    """The compiled ``table``, the hand-written table and the oracle agree on one pair.

    Rejected pairs raise :class:`InvalidTransition` naming the machine, the state
    and the trigger, and ``accepts`` says no.
    """
    expected = oracle.expected.get((str(state), str(trigger)))
    assert oracle.step(state, trigger) == expected
    if expected is None:
        with pytest.raises(InvalidTransition) as caught:
            table.next(state, trigger)
        assert (caught.value.machine, caught.value.state, caught.value.trigger) == (
            table.name,
            str(state),
            str(trigger),
        )
        assert not table.accepts(state, trigger)
    else:
        assert table.next(state, trigger) == expected
        assert table.accepts(state, trigger)


def state_assignments(path: Path) -> set[str]:
    """Where a Python module assigns an attribute named ``state``: ``Class.method`` names.

    Plain, annotated, augmented and unpacking assignments count, and so do
    ``setattr(x, "state", ...)`` and ``object.__setattr__(x, "state", ...)``.
    """
    found: set[str] = set()

    def targets(node: ast.expr) -> Iterator[ast.expr]:
        if isinstance(node, ast.Tuple | ast.List):
            for element in node.elts:
                yield from targets(element)
        elif isinstance(node, ast.Starred):
            yield from targets(node.value)
        else:
            yield node

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            scope = (*scope, node.name)
        assigned: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            assigned = [t for target in node.targets for t in targets(target)]
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            assigned = list(targets(node.target))
        for target in assigned:
            if isinstance(target, ast.Attribute) and target.attr == "state":
                found.add(".".join(scope) or "<module>")
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            args = node.args
            if (
                name in ("setattr", "object.__setattr__")
                and len(args) >= 2
                and isinstance(args[1], ast.Constant)
                and args[1].value == "state"
            ):
                found.add(".".join(scope) or "<module>")
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(path.read_text(encoding="utf-8")), ())
    return found
