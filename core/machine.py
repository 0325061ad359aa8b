"""Machines declared once, as data.

A :class:`MachineSpec` lists states, triggers and transitions. From that one
declaration heirline derives:

* :meth:`MachineSpec.compile` -- a flat ``state -> trigger -> dest`` table, the
  hot path the engine runs (two dict lookups per input);
* :meth:`MachineSpec.oracle` -- a ``transitions.Machine`` built from the same
  data (``auto_transitions=False``), used by tests as the reference oracle;
* :meth:`MachineSpec.mermaid` -- the ``stateDiagram-v2`` text checked into ``docs/``.

Guards are not hidden in callbacks: the pure code that owns a machine first
classifies an input (for instance a socket close by its status policy) into a
fine-grained trigger, then the table says where that trigger leads. Every
(state, trigger) pair is therefore either one declared transition or an
:class:`~heirline.core.errors.InvalidTransition`.
"""

from __future__ import annotations

from dataclasses import dataclass

from transitions import Machine
from transitions.extensions.diagrams import GraphMachine

from heirline.core.errors import InvalidTransition


@dataclass(frozen=True, slots=True)
class Transition:
    """One declared edge: in ``source``, input ``trigger`` leads to ``dest``."""

    source: str
    trigger: str
    dest: str


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """The single declaration of a machine; validated on construction."""

    name: str
    states: tuple[str, ...]
    initial: str
    terminal: frozenset[str]
    triggers: tuple[str, ...]
    transitions: tuple[Transition, ...]

    def __post_init__(self) -> None:
        problems: list[str] = []
        if len(set(self.states)) != len(self.states):
            problems.append("duplicate state names")
        if len(set(self.triggers)) != len(self.triggers):
            problems.append("duplicate trigger names")
        known = set(self.states)
        if self.initial not in known:
            problems.append(f"initial state {self.initial!r} is not declared")
        problems.extend(f"terminal state {s!r} is not declared" for s in self.terminal - known)
        seen: set[tuple[str, str]] = set()
        for t in self.transitions:
            for role, state in (("source", t.source), ("dest", t.dest)):
                if state not in known:
                    problems.append(f"{t}: {role} {state!r} is not a declared state")
            if t.trigger not in self.triggers:
                problems.append(f"{t}: trigger {t.trigger!r} is not declared")
            if t.source in self.terminal:
                problems.append(f"{t}: terminal state {t.source!r} has an outgoing transition")
            if (t.source, t.trigger) in seen:
                problems.append(f"{t}: ({t.source!r}, {t.trigger!r}) is declared twice")
            seen.add((t.source, t.trigger))
        if problems:
            raise ValueError(f"machine {self.name!r} is ill-formed: " + "; ".join(problems))

    def compile(self) -> CompiledMachine:
        """The flat table the engine runs."""
        table: dict[str, dict[str, str]] = {state: {} for state in self.states}
        for t in self.transitions:
            table[t.source][t.trigger] = t.dest
        return CompiledMachine(self.name, table)

    def pairs(self) -> list[tuple[str, str]]:
        """Every (state, trigger) pair, declared or not: the exhaustive test space."""
        return [(s, t) for s in self.states for t in self.triggers]

    def oracle(self, state: str | None = None) -> Machine:
        """A ``transitions.Machine`` built from this declaration (reference oracle)."""
        return Machine(
            states=list(self.states),
            transitions=[
                {"trigger": t.trigger, "source": t.source, "dest": t.dest} for t in self.transitions
            ],
            initial=self.initial if state is None else state,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )

    def mermaid(self) -> str:
        """The ``stateDiagram-v2`` rendering, via ``transitions``' mermaid GraphMachine."""
        machine = GraphMachine(
            states=list(self.states),
            transitions=[
                {"trigger": t.trigger, "source": t.source, "dest": t.dest} for t in self.transitions
            ],
            initial=self.initial,
            auto_transitions=False,
            graph_engine="mermaid",
            title=self.name,
        )
        text: str = machine.get_graph().draw(None)
        return text.rstrip() + "\n"


class CompiledMachine:
    """A machine as a nested dict: ``table[state][trigger] -> dest``."""

    __slots__ = ("name", "table")

    def __init__(self, name: str, table: dict[str, dict[str, str]]) -> None:
        self.name = name
        self.table = table

    def next(self, state: str, trigger: str) -> str:
        """The destination of ``trigger`` in ``state``; raise :class:`InvalidTransition` if none."""
        try:
            return self.table[state][trigger]
        except KeyError:
            raise InvalidTransition(self.name, state, trigger) from None

    def accepts(self, state: str, trigger: str) -> bool:
        """Whether ``trigger`` is declared in ``state``."""
        return trigger in self.table.get(state, {})
