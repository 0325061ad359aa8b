"""The receiver's side of a channel: self identities, and what each identity received.

An :class:`Identity` is a self identity as a channel shows it at login (PN JID,
LID, E.164; any may be missing). The :class:`Ledger` records every message an
identity received, first copy only (a repeated message id is counted as
suppressed), and tells which identities hold a message id: the ground truth a
run is judged by. The reference server and the fake channel share it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Identity", "IdentityLedger", "Ledger", "LedgerEntry", "LedgerSummary"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A self identity as the channel shows it; any form may be missing (unauthenticated)."""

    pn: str | None = None
    lid: str | None = None
    e164: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.pn is not None or self.lid is not None or self.e164 is not None

    def has_form(self, value: str) -> bool:
        """True if ``value`` is this identity's PN JID, LID or E.164."""
        return value in (self.pn, self.lid, self.e164)

    def __str__(self) -> str:
        forms = [f for f in (self.pn, self.lid, self.e164) if f is not None]
        return " / ".join(forms) if forms else "(unauthenticated)"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One message an identity received (first copy only)."""

    message_id: str
    identity: Identity
    account: str
    chat: str
    kind: str
    payload: str


@dataclass(frozen=True, slots=True)
class IdentityLedger:
    """What one identity received: message ids in arrival order, and repeats suppressed."""

    identity: Identity
    message_ids: tuple[str, ...]
    duplicates_suppressed: int


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """The whole ledger at one moment.

    ``cross_identity`` lists message ids that more than one identity received:
    for heirline that is always a bug (a reply went out through the wrong
    identity, or was replayed through a relinked one).
    """

    identities: tuple[IdentityLedger, ...]
    total: int
    duplicates_suppressed: int
    cross_identity: tuple[str, ...]


class Ledger:
    """Per-identity record of received messages, deduplicated by message id."""

    def __init__(self) -> None:
        self._entries: dict[Identity, dict[str, LedgerEntry]] = {}
        self._duplicates: dict[Identity, int] = {}
        self._holders: dict[str, list[Identity]] = {}

    def record(
        self, identity: Identity, account: str, message_id: str, chat: str, kind: str, payload: str
    ) -> bool:
        """Record a message; ``False`` (counted as suppressed) if that identity already has it."""
        seen = self._entries.setdefault(identity, {})
        if message_id in seen:
            self._duplicates[identity] = self._duplicates.get(identity, 0) + 1
            return False
        seen[message_id] = LedgerEntry(message_id, identity, account, chat, kind, payload)
        self._holders.setdefault(message_id, []).append(identity)
        return True

    def _matching(self, identity: Identity | str) -> list[Identity]:
        if isinstance(identity, Identity):
            return [identity] if identity in self._entries else []
        return [known for known in self._entries if known.has_form(identity)]

    def entries(self, identity: Identity | str) -> tuple[LedgerEntry, ...]:
        """Entries of ``identity`` (or of every identity having that PN/LID/E.164 form)."""
        return tuple(e for i in self._matching(identity) for e in self._entries[i].values())

    def received(self, identity: Identity | str) -> tuple[str, ...]:
        """Message ids ``identity`` received, in arrival order (see :meth:`entries`)."""
        return tuple(entry.message_id for entry in self.entries(identity))

    def holders(self, message_id: str) -> tuple[Identity, ...]:
        """Every identity that received ``message_id``."""
        return tuple(self._holders.get(message_id, ()))

    @property
    def total(self) -> int:
        return sum(len(seen) for seen in self._entries.values())

    @property
    def duplicates_suppressed(self) -> int:
        return sum(self._duplicates.values())

    def summary(self) -> LedgerSummary:
        identities = tuple(
            IdentityLedger(identity, tuple(seen), self._duplicates.get(identity, 0))
            for identity, seen in self._entries.items()
        )
        cross = tuple(mid for mid, holders in self._holders.items() if len(holders) > 1)
        return LedgerSummary(identities, self.total, self.duplicates_suppressed, cross)
