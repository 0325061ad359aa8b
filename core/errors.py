"""The exception types of the core.

Every error the core raises derives from :class:`HeirlineError`, so an embedder
can catch one type at its boundary. Each subclass names one kind of mistake.
"""

from __future__ import annotations


class HeirlineError(Exception):
    """Base class of every error raised by heirline."""


class JidError(HeirlineError, ValueError):
    """A JID (or E.164 number) is malformed, or is not usable where it was given."""


class MappingConflictError(HeirlineError, ValueError):
    """Two PN<->LID pairs contradict each other (one LID claimed by two numbers, or the reverse)."""


class ConfigError(HeirlineError, ValueError):
    """A policy or engine configuration value is out of range or inconsistent."""


class InvalidTransition(HeirlineError):
    """An input arrived in a state of a machine that does not accept it.

    The machine is left exactly as it was. ``machine``, ``state`` and ``trigger``
    say which machine, in which state, rejected which input.
    """

    def __init__(self, machine: str, state: str, trigger: str) -> None:
        super().__init__(f"{machine}: input {trigger!r} is not accepted in state {state!r}")
        self.machine = machine
        self.state = state
        self.trigger = trigger


class WireError(HeirlineError, ValueError):
    """A JSON message does not describe a valid event or effect; the message says which field."""
