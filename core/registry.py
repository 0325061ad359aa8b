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


class RegistryEntry:
    """One account's registration: the rules, applied to three numbers.

    ``issued`` is the newest generation handed out, ``high`` the newest ever
    registered, ``current`` the registered one (``None``: none). The engine keeps
    one entry per account inside its own account record (a subclass), so the
    in-memory registry costs no table of its own; :class:`Registry` is the same
    rules behind a name -> entry map.
    """

    __slots__ = ("current", "high", "issued")

    def __init__(self) -> None:
        self.issued = 0
        self.high = 0
        self.current: int | None = None

    def next_generation(self) -> int:
        """Issue the next generation (1, 2, 3, ...); never reused."""
        self.issued += 1
        return self.issued

    def register(self, account: str, generation: int) -> RegistryChange:
        """Make ``generation`` current, replacing any other; IGNORED when it may not be."""
        if not 1 <= generation <= self.issued:
            return RegistryChange(
                ChangeKind.IGNORED,
                account,
                generation,
                reason=f"never issued: highest issued generation is {self.issued}",
            )
        if generation <= self.high:
            if generation == self.current:
                reason = "already current"
            else:
                reason = f"superseded: generation {self.high} was already registered"
            return RegistryChange(ChangeKind.IGNORED, account, generation, reason=reason)
        predecessor = self.current
        self.current = generation
        self.high = generation
        return RegistryChange(ChangeKind.REGISTERED, account, generation, predecessor=predecessor)

    def unregister(self, account: str, generation: int) -> RegistryChange:
        """Remove ``generation`` only if it is still current."""
        current = self.current
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
        self.current = None
        return RegistryChange(ChangeKind.UNREGISTERED, account, generation)


class Registry:
    """account -> current controller generation; mutated in place by its owner."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, RegistryEntry] = {}

    def _entry(self, account: str) -> RegistryEntry:
        entry = self._entries.get(account)
        if entry is None:
            entry = self._entries[account] = RegistryEntry()
        return entry

    def next_generation(self, account: str) -> int:
        """Issue the next generation for ``account`` (1, 2, 3, ...); never reused."""
        return self._entry(account).next_generation()

    def register(self, account: str, generation: int) -> RegistryChange:
        """Make ``generation`` the current controller of ``account``, replacing any other.

        IGNORED (nothing changes) when ``generation`` was never issued, or is not
        newer than the newest generation ever registered for ``account``.
        """
        return self._entry(account).register(account, generation)

    def unregister(self, account: str, generation: int) -> RegistryChange:
        """Remove ``generation`` only if it is still the current controller of ``account``."""
        entry = self._entries.get(account)
        if entry is None:
            return RegistryChange(
                ChangeKind.IGNORED,
                account,
                generation,
                reason="not registered: account has no current generation",
            )
        return entry.unregister(account, generation)

    def current(self, account: str) -> int | None:
        """The current generation of ``account``, or ``None`` when none is registered."""
        entry = self._entries.get(account)
        return None if entry is None else entry.current

    def accounts(self) -> tuple[str, ...]:
        """Accounts that have a current generation, sorted (stable across runs)."""
        return tuple(sorted(a for a, e in self._entries.items() if e.current is not None))
