"""The registry: which controller generation currently speaks for each account.

A pure, in-memory data structure that its owner (the engine) mutates in place.
Every call answers with a :class:`RegistryChange` -- the *grant* for the
engine's *request* -- so the engine can react (wake waiting replies, log) and
so a later shared store (Redis with leases) can answer the same request with
the same shape. The in-memory registry grants at once.

Rules (see ``docs/health.md``):

* generations are issued per account by :meth:`Registry.next_generation`
  (1, 2, 3, ...) and never reused, not even after an unregister;
* :meth:`Registry.register` replaces the current generation and reports it as
  ``predecessor``; a generation that was never issued, or that is not newer
  than every generation registered before for that account, is IGNORED with a
  reason (generations never come back, so an old controller that registers
  late cannot take the account back from its successor);
* :meth:`Registry.unregister` removes a generation only while it is still the
  current one; a late unregister of A after B registered is IGNORED and never
  removes B.

The registry never raises for an out-of-order request: those are ordinary races
between controllers, not programming errors, and the IGNORED change carries the
reason the engine logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ChangeKind(StrEnum):
    """What a registry request did."""

    REGISTERED = "registered"
    UNREGISTERED = "unregistered"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """The answer to one register/unregister request.

    ``generation`` is the generation the request named. ``predecessor`` is the
    generation a REGISTERED change replaced (``None`` when the account had none).
    ``reason`` says why a change was IGNORED (empty otherwise).
    """

    kind: ChangeKind
    account: str
    generation: int
    predecessor: int | None = None
    reason: str = ""


class Registry:
    """account -> current controller generation; mutated in place by its owner."""

    __slots__ = ("_current", "_issued", "_registered_high")

    def __init__(self) -> None:
        self._issued: dict[str, int] = {}
        self._registered_high: dict[str, int] = {}
        self._current: dict[str, int] = {}

    def next_generation(self, account: str) -> int:
        """Issue the next generation for ``account`` (1, 2, 3, ...); never reused."""
        generation = self._issued.get(account, 0) + 1
        self._issued[account] = generation
        return generation

    def register(self, account: str, generation: int) -> RegistryChange:
        """Make ``generation`` the current controller of ``account``, replacing any other.

        IGNORED (nothing changes) when ``generation`` was never issued, or is not
        newer than the newest generation ever registered for ``account``.
        """
        issued = self._issued.get(account, 0)
        if not 1 <= generation <= issued:
            return RegistryChange(
                ChangeKind.IGNORED,
                account,
                generation,
                reason=f"never issued: highest issued generation is {issued}",
            )
        high = self._registered_high.get(account, 0)
        if generation <= high:
            current = self._current.get(account)
            if generation == current:
                reason = "already current"
            else:
                reason = f"superseded: generation {high} was already registered"
            return RegistryChange(ChangeKind.IGNORED, account, generation, reason=reason)
        predecessor = self._current.get(account)
        self._current[account] = generation
        self._registered_high[account] = generation
        return RegistryChange(ChangeKind.REGISTERED, account, generation, predecessor=predecessor)

    def unregister(self, account: str, generation: int) -> RegistryChange:
        """Remove ``generation`` only if it is still the current controller of ``account``."""
        current = self._current.get(account)
        if current is None:
            return RegistryChange(
                ChangeKind.IGNORED,
                account,
                generation,
                reason="not registered: account has no current generation",
            )
        if generation != current:
            word = "stale" if generation < current else "not registered"
            return RegistryChange(
                ChangeKind.IGNORED,
                account,
                generation,
                reason=f"{word}: current is generation {current}",
            )
        del self._current[account]
        return RegistryChange(ChangeKind.UNREGISTERED, account, generation)

    def current(self, account: str) -> int | None:
        """The current generation of ``account``, or ``None`` when none is registered."""
        return self._current.get(account)

    def accounts(self) -> tuple[str, ...]:
        """Accounts that have a current generation, sorted (stable across runs)."""
        return tuple(sorted(self._current))
