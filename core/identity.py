"""Self identities, the PN<->LID mapping, and the identity-overlap guard.

A controller's *self identity* is what its socket is logged in as: a
phone-number JID (``pn``), a linked identity (``lid``) and an E.164 number, any
of which may be missing. Before a reply captured by one controller may travel
through its successor, :func:`compare` decides whether both are the same
account and returns a :class:`Verdict` with a reason; only
:attr:`VerdictKind.SAME` permits the handoff.

Forms are compared on their *user* part within their domain: ``s.whatsapp.net``,
``c.us`` and ``hosted`` are all the phone-number domain, ``lid`` and
``hosted.lid`` the LID domain (see ``docs/identity.md``). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Generic, Literal, TypeVar

from heirline.core.errors import JidError
from heirline.core.jid import (
    HOSTED_LID_SERVER,
    HOSTED_SERVER,
    LEGACY_PN_SERVER,
    LID_SERVER,
    PN_SERVER,
    Jid,
    e164_from_pn,
    parse_e164,
    parse_jid,
)
from heirline.core.mapping import (
    EMPTY_MAPPING,
    LidMapping,
    MappingTable,
    MappingView,
)

__all__ = [
    "EMPTY_MAPPING",
    "FORMS",
    "NO_KEYS",
    "UNAUTHENTICATED",
    "VERDICTS",
    "KeyIndex",
    "Keys",
    "LidMapping",
    "MappingTable",
    "MappingView",
    "SelfIdentity",
    "Verdict",
    "VerdictKind",
    "compare",
    "identity_keys",
    "judge",
    "resolve",
    "verdict_index",
]

#: The identity forms, in the order verdicts list them.
FORMS: Final = ("pn", "lid", "e164")


def _self_jid(jid: Jid, role: str) -> Jid:
    """Check that ``jid`` may be the ``role`` ("pn" or "lid") of a self identity; normalize it."""
    if not (jid.is_pn or jid.is_lid):
        raise JidError(f"{jid} is a {jid.server} JID; it is never a self identity")
    if role == "pn" and jid.is_lid:
        raise JidError(f"{jid} is a LID, but was given as the phone-number JID")
    if role == "lid" and jid.is_pn:
        raise JidError(f"{jid} is a phone-number JID, but was given as the LID")
    return jid.normalized


def _e164_or_none(pn: Jid) -> str | None:
    try:
        return e164_from_pn(pn)
    except JidError:
        return None


@dataclass(frozen=True, slots=True)
class SelfIdentity:
    """What a socket is logged in as; any form may be missing.

    Constructing one validates it: ``pn`` must be a phone-number JID, ``lid`` a
    LID (both are stored normalized: device and agent dropped, ``c.us`` ->
    ``s.whatsapp.net``), ``e164`` a valid E.164 number that agrees with ``pn``.
    Violations raise :class:`JidError`.
    """

    pn: Jid | None = None
    lid: Jid | None = None
    e164: str | None = None

    def __post_init__(self) -> None:
        if self.pn is not None:
            object.__setattr__(self, "pn", _self_jid(self.pn, "pn"))
        if self.lid is not None:
            object.__setattr__(self, "lid", _self_jid(self.lid, "lid"))
        if self.e164 is not None:
            e164 = parse_e164(self.e164)
            object.__setattr__(self, "e164", e164)
            if self.pn is not None and _e164_or_none(self.pn) != e164:
                raise JidError(f"E.164 {e164} does not match the phone-number JID {self.pn}")

    @property
    def authenticated(self) -> bool:
        """True when at least one form is present (the socket is logged in as someone)."""
        return self.pn is not None or self.lid is not None or self.e164 is not None

    @classmethod
    def parse(
        cls, pn: str | None = None, lid: str | None = None, e164: str | None = None
    ) -> SelfIdentity:
        """Build a self identity from the strings a channel shows; None means "absent".

        An empty or malformed string is an error, never "absent". The JIDs a
        socket shows every time (``<digits>[:<device>]@s.whatsapp.net``,
        ``<digits>@lid``, ...) take a fast path with the same result; anything
        else goes through the full parser and its precise error messages.
        """
        if e164 is None:
            pn_jid = _fast(_FAST_PN, pn)
            lid_jid = _fast(_FAST_LID, lid)
            if pn_jid is not False and lid_jid is not False:
                identity = object.__new__(cls)
                object.__setattr__(identity, "pn", pn_jid)
                object.__setattr__(identity, "lid", lid_jid)
                object.__setattr__(identity, "e164", None)
                return identity
        return cls(
            pn=None if pn is None else parse_jid(pn),
            lid=None if lid is None else parse_jid(lid),
            e164=e164,
        )

    def describe(self) -> str:
        """A short human form for logs, e.g. ``pn=4915...@s.whatsapp.net lid=123@lid``."""
        parts = [f"{name}={value}" for name, value in self._forms() if value is not None]
        return " ".join(parts) if parts else "unauthenticated"

    def _forms(self) -> tuple[tuple[str, Jid | str | None], ...]:
        return (("pn", self.pn), ("lid", self.lid), ("e164", self.e164))

    def _keys(self) -> dict[str, str]:
        """Comparison key of each present form: the user part for JIDs, the number for E.164."""
        keys: dict[str, str] = {}
        if self.pn is not None:
            keys["pn"] = self.pn.user
        if self.lid is not None:
            keys["lid"] = self.lid.user
        if self.e164 is not None:
            keys["e164"] = self.e164
        return keys


#: The identity of a socket that is not logged in.
UNAUTHENTICATED: Final = SelfIdentity()

# The self-identity JIDs a socket shows, as the full parser would accept and normalize them:
# digits, an optional agent and device (dropped), a phone-number or LID server in lower case.
_NUMBER_PART = r"(?:_(?:0|[1-9][0-9]{0,9}))?(?::(?:0|[1-9][0-9]{0,9}))?"
_FAST_PN: Final = re.compile(r"([0-9]+)" + _NUMBER_PART + r"@(s\.whatsapp\.net|c\.us|hosted)")
_FAST_LID: Final = re.compile(r"([0-9]+)" + _NUMBER_PART + r"@(lid|hosted\.lid)")


def _fast(pattern: re.Pattern[str], text: str | None) -> Jid | Literal[False] | None:
    """The normalized JID ``text`` names, ``None`` if absent, ``False``: not the plain shape."""
    if text is None:
        return None
    match = pattern.fullmatch(text)
    if match is None:
        return False
    server = match[2]
    return Jid.trusted(match[1], PN_SERVER if server == LEGACY_PN_SERVER else server)


def resolve(identity: SelfIdentity, mapping: MappingView) -> SelfIdentity:
    """Fill the missing forms of ``identity``: E.164 -> PN, PN -> LID, LID -> PN, PN -> E.164.

    Only missing forms are filled, never overwritten, so a contradiction between
    the identity and the mapping stays visible to :func:`compare`. Idempotent.
    """
    pn, lid, e164 = identity.pn, identity.lid, identity.e164
    if pn is None and e164 is not None:
        pn = Jid(e164[1:], PN_SERVER)
    if lid is None and pn is not None:
        lid_user = mapping.lid_for(pn.user)
        if lid_user is not None:
            lid = Jid(lid_user, HOSTED_LID_SERVER if pn.server == HOSTED_SERVER else LID_SERVER)
    if pn is None and lid is not None:
        pn_user = mapping.pn_for(lid.user)
        if pn_user is not None:
            pn = Jid(pn_user, HOSTED_SERVER if lid.server == HOSTED_LID_SERVER else PN_SERVER)
    if e164 is None and pn is not None:
        e164 = _e164_or_none(pn)
    if (pn, lid, e164) == (identity.pn, identity.lid, identity.e164):
        return identity
    return SelfIdentity(pn, lid, e164)


class VerdictKind(StrEnum):
    """The four outcomes of the identity-overlap guard."""

    SAME = "same"
    DIFFERENT = "different"
    CONFLICTING = "conflicting"
    NOT_COMPARABLE = "not_comparable"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's answer with its evidence: which forms matched, which contradicted, and why."""

    kind: VerdictKind
    matched: tuple[str, ...]
    contradicted: tuple[str, ...]
    reason: str

    @property
    def permits_handoff(self) -> bool:
        """Only a "same" verdict lets a successor carry the original's reply."""
        return self.kind is VerdictKind.SAME


def _joined(forms: Iterable[str]) -> str:
    return ", ".join(forms)


#: The comparison keys of a *resolved* identity: (pn user, lid user, E.164 digits), any ``None``.
Keys = tuple[str | None, str | None, str | None]

#: The keys of an identity with no form at all.
NO_KEYS: Final[Keys] = (None, None, None)


def identity_keys(identity: SelfIdentity) -> Keys:
    """The comparison key of each form of ``identity`` (resolve it first).

    JIDs compare on their user part within their domain, E.164 on the number's digits.
    """
    pn, lid, e164 = identity.pn, identity.lid, identity.e164
    if e164 is not None:
        # The number without its "+". A validated identity's E.164 agrees with its PN, so
        # with a PN present it is the PN's user: one shared string, not one more per account.
        e164 = pn.user if pn is not None else e164[1:]
    return (None if pn is None else pn.user, None if lid is None else lid.user, e164)


# One cell per form: whether it is on neither side, one side, or both (equal / unequal).
_NEITHER, _LEFT, _RIGHT, _EQUAL, _UNEQUAL = range(5)


def _verdict_for(cells: tuple[int, int, int]) -> Verdict:
    """The verdict (with its reason) for one combination of cells: the guard's rules."""
    left = [form for form, c in zip(FORMS, cells, strict=True) if c in (_LEFT, _EQUAL, _UNEQUAL)]
    right = [form for form, c in zip(FORMS, cells, strict=True) if c in (_RIGHT, _EQUAL, _UNEQUAL)]
    unauthenticated = [
        side for side, forms in (("original", left), ("successor", right)) if not forms
    ]
    if unauthenticated:
        who = " and ".join(unauthenticated)
        verb = "is" if len(unauthenticated) == 1 else "are"
        return Verdict(
            VerdictKind.NOT_COMPARABLE, (), (), f"not comparable: {who} {verb} unauthenticated"
        )
    matched = tuple(form for form, c in zip(FORMS, cells, strict=True) if c == _EQUAL)
    contradicted = tuple(form for form, c in zip(FORMS, cells, strict=True) if c == _UNEQUAL)
    if matched and contradicted:
        return Verdict(
            VerdictKind.CONFLICTING,
            matched,
            contradicted,
            f"conflicting identity: {_joined(matched)} matched but {_joined(contradicted)} "
            "contradicted (corrupt or spoofed state; fail closed)",
        )
    if matched:
        return Verdict(VerdictKind.SAME, matched, (), f"same identity: {_joined(matched)} matched")
    if contradicted:
        return Verdict(
            VerdictKind.DIFFERENT,
            (),
            contradicted,
            f"different identity: {_joined(contradicted)} differ (relinked to another account?)",
        )
    return Verdict(
        VerdictKind.NOT_COMPARABLE,
        (),
        (),
        f"not comparable: no form present on both sides (original has {_joined(left)}; "
        f"successor has {_joined(right)})",
    )


#: Every possible verdict, built once: index ``25 * pn_cell + 5 * lid_cell + e164_cell``.
VERDICTS: Final = tuple(
    _verdict_for((a, b, c)) for a in range(5) for b in range(5) for c in range(5)
)


def judge(original: Keys, successor: Keys) -> Verdict:
    """:func:`compare` on keys that are already resolved: the routing hot path."""
    return VERDICTS[verdict_index(original, successor)]


def verdict_index(original: Keys, successor: Keys) -> int:
    """The index of the verdict in :data:`VERDICTS`; allocates nothing.

    Each form's cell is written out inline (neither / left only / right only /
    equal / unequal) because a helper call per form would double the cost.
    """
    p, n, e = original
    q, m, f = successor
    return (
        25
        * (
            (_NEITHER if q is None else _RIGHT)
            if p is None
            else (_LEFT if q is None else _EQUAL if p == q else _UNEQUAL)
        )
        + 5
        * (
            (_NEITHER if m is None else _RIGHT)
            if n is None
            else (_LEFT if m is None else _EQUAL if n == m else _UNEQUAL)
        )
        + (
            (_NEITHER if f is None else _RIGHT)
            if e is None
            else (_LEFT if f is None else _EQUAL if e == f else _UNEQUAL)
        )
    )


def compare(
    original: SelfIdentity, successor: SelfIdentity, mapping: LidMapping = EMPTY_MAPPING
) -> Verdict:
    """Decide whether ``successor`` is the same account as ``original``.

    Both sides are first resolved through ``mapping``; then each form present on
    both sides is either matched (equal user / number) or contradicted:

    * same: at least one matched, none contradicted;
    * different: some contradicted, none matched (relinked to another number);
    * conflicting: some matched and some contradicted (fail closed);
    * not comparable: a side is unauthenticated, or no form is present on both.

    Symmetric in kind, matched and contradicted (the reason names the sides).
    """
    return judge(
        identity_keys(resolve(original, mapping)), identity_keys(resolve(successor, mapping))
    )


H = TypeVar("H", bound=Hashable)


class KeyIndex(Generic[H]):
    """Who holds an identity that one more PN<->LID pair could complete.

    Resolution only fills a missing form, so a pair can change the keys of an
    identity only if it has a phone number but no LID (indexed by the number) or
    a LID but no number (indexed by the LID). A mapping fact then re-resolves
    exactly the holders it concerns, however many identities are complete.
    One holder per user is the common case and is stored as itself; more share
    a dict.
    """

    __slots__ = ("_by_lid", "_by_pn")

    def __init__(self) -> None:
        self._by_pn: dict[str, H | dict[H, None]] = {}
        self._by_lid: dict[str, H | dict[H, None]] = {}

    def _slot(self, keys: Keys) -> tuple[dict[str, H | dict[H, None]], str] | None:
        pn, lid, _ = keys
        if pn is not None and lid is None:
            return self._by_pn, pn
        if lid is not None and pn is None:
            return self._by_lid, lid
        return None

    def add(self, holder: H, keys: Keys) -> None:
        """Index ``holder`` under ``keys`` if a pair could complete them."""
        slot = self._slot(keys)
        if slot is None:
            return
        table, user = slot
        held = table.get(user)
        if held is None:
            table[user] = holder
        elif isinstance(held, dict):
            held[holder] = None
        elif held is not holder:
            table[user] = {held: None, holder: None}

    def remove(self, holder: H, keys: Keys) -> None:
        """Forget ``holder`` as indexed under ``keys``."""
        slot = self._slot(keys)
        if slot is None:
            return
        table, user = slot
        held = table.get(user)
        if held is holder:
            del table[user]
        elif isinstance(held, dict):
            held.pop(holder, None)
            if len(held) == 1:
                table[user] = next(iter(held))

    def touched(self, pn_user: str, lid_user: str) -> list[H]:
        """The holders the pair ``(pn_user, lid_user)`` may complete."""
        out: list[H] = []
        for table, user in ((self._by_pn, pn_user), (self._by_lid, lid_user)):
            held = table.get(user)
            if isinstance(held, dict):
                out.extend(held)
            elif held is not None:
                out.append(held)
        return out
