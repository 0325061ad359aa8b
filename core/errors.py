"""The exception types of the core.

Every error the core raises derives from :class:`HeirlineError`, so an embedder
can catch one type at its boundary. Each subclass names one kind of mistake.
"""

from __future__ import annotations


class HeirlineError(Exception):
    """Base class of every error raised by heirline.

    ``code`` is the stable snake_case name the engine answers with when this
    error refuses an input (a ``Rejected`` effect); ``docs/protocol.md`` lists them.
    """

    code: str = "rejected"


class JidError(HeirlineError, ValueError):
    """A JID (or E.164 number) is malformed, or is not usable where it was given."""

    code = "bad_identity"


class MappingConflictError(HeirlineError, ValueError):
    """Two PN<->LID pairs contradict each other (one LID claimed by two numbers, or the reverse)."""

    code = "mapping_conflict"


class ConfigError(HeirlineError, ValueError):
    """A policy or engine configuration value is out of range or inconsistent."""

    code = "bad_config"


class InvalidTransition(HeirlineError):
    """An input arrived in a state of a machine that does not accept it.

    The machine is left exactly as it was. ``machine``, ``state`` and ``trigger``
    say which machine, in which state, rejected which input.
    """

    code = "invalid_transition"

    def __init__(self, machine: str, state: str, trigger: str) -> None:
        state, trigger = str(state), str(trigger)  # a StrEnum member reads as its value
        super().__init__(f"{machine}: input {trigger!r} is not accepted in state {state!r}")
        self.machine = machine
        self.state = state
        self.trigger = trigger


class WireError(HeirlineError, ValueError):
    """A JSON message does not describe a valid event or effect; the message says which field."""

    code = "bad_event"


class Rejection(HeirlineError):
    """The engine refuses one input before changing anything.

    ``Engine.handle`` never raises it: it answers with a ``Rejected`` effect carrying
    :attr:`code`, a stable snake_case name (listed in ``docs/protocol.md``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # an instance attribute: each rejection names its own code


class ValidationError(HeirlineError, ValueError):
    """A JSON (or TOML) document does not have the shape it must have.

    ``problem`` says what is wrong; ``path`` is where, from the document's root
    (field names and array indexes), and ``where`` renders it (``steps[3].account``).
    The path grows as the error travels out of nested values.
    """

    code = "bad_input"

    def __init__(self, problem: str, path: list[str | int] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str | int] = [] if path is None else path

    @property
    def where(self) -> str:
        """The path as text: names joined by dots, indexes in brackets."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def __str__(self) -> str:
        where = self.where
        return f"{where}: {self.problem}" if where else self.problem
