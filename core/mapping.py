"""The PN<->LID mapping: which phone number and which linked identity are one user.

Baileys' auth dir holds the pairs (``lid-mapping-*.json``); a live client
learns more. :class:`LidMapping` is the immutable, validated form the public
API takes and gives; :class:`MappingTable` is the engine's own growing copy
(one pair at a time, O(1)); both answer the :class:`MappingView` questions
resolution asks. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Final, Protocol, runtime_checkable

from heirline.core.errors import JidError, MappingConflictError
from heirline.core.jid import parse_jid


def _mapping_user(text: str, role: str) -> str:
    """The user of one side of a mapping pair: a bare numeric user or a JID of the right domain."""
    if "@" in text:
        jid = parse_jid(text)
        if role == "pn" and not jid.is_pn:
            raise JidError(f"{text!r} was given as a phone number but is not a phone-number JID")
        if role == "lid" and not jid.is_lid:
            raise JidError(f"{text!r} was given as a LID but is not a LID JID")
        return jid.user
    if not (text.isascii() and text.isdigit()):
        raise JidError(f"{role} user {text!r} must be ASCII digits (or a {role} JID)")
    return text


@dataclass(frozen=True, slots=True)
class LidMapping:
    """An immutable, consistent PN-user <-> LID-user mapping (one-to-one).

    ``pairs`` holds canonical ``(pn_user, lid_user)`` pairs, sorted and without
    repeats. Constructing one accepts users or JIDs; one LID claimed by two phone
    numbers (or the reverse) raises :class:`MappingConflictError` naming both pairs.
    """

    pairs: tuple[tuple[str, str], ...] = ()
    _by_pn: Mapping[str, str] = field(init=False, repr=False, compare=False, hash=False)
    _by_lid: Mapping[str, str] = field(init=False, repr=False, compare=False, hash=False)

    EMPTY: ClassVar[LidMapping]

    def __post_init__(self) -> None:
        by_pn: dict[str, str] = {}
        by_lid: dict[str, str] = {}
        for raw_pn, raw_lid in self.pairs:
            pn, lid = _mapping_user(raw_pn, "pn"), _mapping_user(raw_lid, "lid")
            known_lid = by_pn.get(pn)
            if known_lid is not None and known_lid != lid:
                raise MappingConflictError(
                    f"pair (pn={pn}, lid={lid}) contradicts pair (pn={pn}, lid={known_lid}): "
                    f"phone number {pn} is claimed by two LIDs"
                )
            known_pn = by_lid.get(lid)
            if known_pn is not None and known_pn != pn:
                raise MappingConflictError(
                    f"pair (pn={pn}, lid={lid}) contradicts pair (pn={known_pn}, lid={lid}): "
                    f"LID {lid} is claimed by two phone numbers"
                )
            by_pn[pn] = lid
            by_lid[lid] = pn
        object.__setattr__(self, "pairs", tuple(sorted(by_pn.items())))
        object.__setattr__(self, "_by_pn", MappingProxyType(by_pn))
        object.__setattr__(self, "_by_lid", MappingProxyType(by_lid))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> LidMapping:
        """Build a mapping from ``(pn, lid)`` pairs (users or JIDs); an identical repeat is fine."""
        return cls(tuple(pairs))

    @classmethod
    def empty(cls) -> LidMapping:
        """The mapping that knows nothing (resolution then fills only E.164 <-> PN)."""
        return EMPTY_MAPPING

    def with_pair(self, pn: str, lid: str) -> LidMapping:
        """A new mapping with one more pair; same conflict rule as :meth:`from_pairs`."""
        return LidMapping((*self.pairs, (pn, lid)))

    def lid_for(self, pn_user: str) -> str | None:
        """The LID user mapped to this phone-number user, or None."""
        return self._by_pn.get(pn_user)

    def pn_for(self, lid_user: str) -> str | None:
        """The phone-number user mapped to this LID user, or None."""
        return self._by_lid.get(lid_user)

    def __len__(self) -> int:
        """The number of pairs."""
        return len(self.pairs)


#: The mapping that knows nothing.
EMPTY_MAPPING: Final = LidMapping()
LidMapping.EMPTY = EMPTY_MAPPING


@runtime_checkable
class MappingView(Protocol):
    """What resolution reads of a PN<->LID mapping: :class:`LidMapping` or :class:`MappingTable`."""

    def lid_for(self, pn_user: str) -> str | None:
        """The LID user mapped to this phone-number user, or None."""
        ...

    def pn_for(self, lid_user: str) -> str | None:
        """The phone-number user mapped to this LID user, or None."""
        ...


class MappingTable:
    """A growing PN<->LID mapping, one pair at a time, with :class:`LidMapping`'s rules.

    The engine's own copy: adding a pair costs O(1) (an immutable
    :class:`LidMapping` is rebuilt whole), and :meth:`snapshot` gives the
    immutable form, built once per change, for whoever asks.
    """

    __slots__ = ("_by_lid", "_by_pn", "_snapshot")

    def __init__(self, initial: LidMapping) -> None:
        self._by_pn: dict[str, str] = dict(initial.pairs)
        self._by_lid: dict[str, str] = {lid: pn for pn, lid in initial.pairs}
        self._snapshot: LidMapping | None = initial

    def lid_for(self, pn_user: str) -> str | None:
        """The LID user mapped to this phone-number user, or None."""
        return self._by_pn.get(pn_user)

    def pn_for(self, lid_user: str) -> str | None:
        """The phone-number user mapped to this LID user, or None."""
        return self._by_lid.get(lid_user)

    def add(self, pn: str, lid: str) -> tuple[str, str] | None:
        """Learn a pair (users or JIDs): its ``(pn_user, lid_user)``, or ``None`` if known.

        A pair that contradicts a known one raises :class:`MappingConflictError`
        naming both, and changes nothing.
        """
        pn_user, lid_user = _mapping_user(pn, "pn"), _mapping_user(lid, "lid")
        known_lid = self._by_pn.get(pn_user)
        if known_lid == lid_user:
            return None
        if known_lid is not None:
            raise MappingConflictError(
                f"pair (pn={pn_user}, lid={lid_user}) contradicts pair "
                f"(pn={pn_user}, lid={known_lid}): phone number {pn_user} is claimed by two LIDs"
            )
        known_pn = self._by_lid.get(lid_user)
        if known_pn is not None:
            raise MappingConflictError(
                f"pair (pn={pn_user}, lid={lid_user}) contradicts pair "
                f"(pn={known_pn}, lid={lid_user}): LID {lid_user} is claimed by two phone numbers"
            )
        self._by_pn[pn_user] = lid_user
        self._by_lid[lid_user] = pn_user
        self._snapshot = None
        return pn_user, lid_user

    def snapshot(self) -> LidMapping:
        """The mapping as an immutable :class:`LidMapping` (built once per change)."""
        if self._snapshot is None:
            self._snapshot = LidMapping(tuple(self._by_pn.items()))
        return self._snapshot

    def __len__(self) -> int:
        """The number of pairs."""
        return len(self._by_pn)
