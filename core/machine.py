"""Machines declared once, as data.

A :class:`MachineSpec` lists typed states, triggers and transitions (each a
``StrEnum`` member, so a typo is a type error). From that one declaration
heirline derives :meth:`MachineSpec.compile`, a flat ``state -> trigger ->
dest`` table: the hot path the engine runs (two dict lookups per input).

Guards are not hidden in callbacks: the pure code that owns a machine first
classifies an input (for instance a socket close by its status policy) into a
fine-grained trigger, then the table says where that trigger leads. Every
(state, trigger) pair is therefore either one declared transition or an
:class:`~heirline.core.errors.InvalidTransition`.

The declaration is plain data on purpose: the tests check it against a
hand-written table and a ``transitions`` machine built from that table, and
``heirline.adapters.diagrams`` renders it with ``transitions``; the core itself
imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from heirline.core.errors import InvalidTransition

S = TypeVar("S", bound=StrEnum)
T = TypeVar("T", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class Transition(Generic[S, T]):
    """One declared edge: in ``source``, input ``trigger`` leads to ``dest``."""

    source: S
    trigger: T
    dest: S


@dataclass(frozen=True, slots=True)
class MachineSpec(Generic[S, T]):
    """The single declaration of a machine; validated on construction."""

    name: str
    states: tuple[S, ...]
    initial: S
    terminal: frozenset[S]
    triggers: tuple[T, ...]
    transitions: tuple[Transition[S, T], ...]

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
        seen: set[tuple[S, T]] = set()
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

    def compile(self) -> CompiledMachine[S, T]:
        """The flat table the engine runs."""
        table: dict[S, dict[T, S]] = {state: {} for state in self.states}
        for t in self.transitions:
            table[t.source][t.trigger] = t.dest
        return CompiledMachine(self.name, table)

    def pairs(self) -> list[tuple[S, T]]:
        """Every (state, trigger) pair, declared or not: the exhaustive test space."""
        return [(s, t) for s in self.states for t in self.triggers]


class CompiledMachine(Generic[S, T]):
    """A machine as a nested dict: ``table[state][trigger] -> dest``."""

    __slots__ = ("name", "table")

    def __init__(self, name: str, table: dict[S, dict[T, S]]) -> None:
        self.name = name
        self.table = table

    def next(self, state: S, trigger: T) -> S:
        """The destination of ``trigger`` in ``state``; raise :class:`InvalidTransition` if none."""
        try:
            return self.table[state][trigger]
        except KeyError:
            raise InvalidTransition(self.name, state, trigger) from None

    def accepts(self, state: S, trigger: T) -> bool:
        """Whether ``trigger`` is declared in ``state``."""
        return trigger in self.table.get(state, {})
