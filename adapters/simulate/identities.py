"""Who each simulated account really is: one person number per identity, and what logins show.

The simulator's ground truth is a *person*: an integer. Person ``p`` owns the
phone number ``4915100000000 + p`` and the LID ``100000000000000 + p``; an
account is some person at each moment and becomes another one when it is
relinked. A login shows the forms the profile's ``identity`` mode says (both,
one, or PN-only and LID-only by turns), and :func:`person_of` reads the person
back from any form, so the receiver's ledger is judged against the truth, not
against what the engine believed.
"""

from __future__ import annotations

from typing import Final

from heirline.adapters.channel import Identity

__all__ = ["auth_pair", "full_identity", "person_of", "shown_identity"]

PN_BASE: Final = 4_915_100_000_000
LID_BASE: Final = 100_000_000_000_000
#: Persons are numbered 0 .. MAX_PERSONS-1 (the accounts, then one more per relink).
MAX_PERSONS: Final = 100_000_000
_PN_SERVER: Final = "@s.whatsapp.net"
_LID_SERVER: Final = "@lid"


def auth_pair(person: int) -> tuple[str, str]:
    """The PN JID and the LID of ``person`` (what its auth dir's mapping files hold)."""
    return f"{PN_BASE + person}{_PN_SERVER}", f"{LID_BASE + person}{_LID_SERVER}"


def full_identity(person: int) -> Identity:
    """``person`` with both forms."""
    pn, lid = auth_pair(person)
    return Identity(pn=pn, lid=lid)


def shown_identity(person: int, mode: str, attempt: int) -> Identity:
    """What socket ``attempt`` of an account that is ``person`` shows when it logs in."""
    pn, lid = auth_pair(person)
    if mode == "pn" or (mode == "alternate" and attempt % 2 == 1):
        return Identity(pn=pn)
    if mode == "lid" or mode == "alternate":
        return Identity(lid=lid)
    return Identity(pn=pn, lid=lid)


def person_of(identity: Identity) -> int:
    """The person a shown identity belongs to (from whichever form it has)."""
    if identity.pn is not None:
        return int(identity.pn.split("@", 1)[0]) - PN_BASE
    if identity.lid is not None:
        return int(identity.lid.split("@", 1)[0]) - LID_BASE
    raise ValueError(f"identity {identity} shows no form to tell its person by")
