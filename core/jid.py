"""WhatsApp JIDs and E.164 numbers: parsing, formatting, normalization.

Grammar (Baileys' ``jidDecode``): ``user[_agent][:device]@server``.

* ``server`` is one of :data:`SERVERS`, compared case-insensitively and stored
  lower-case; the legacy ``c.us`` is the same server as ``s.whatsapp.net``
  (:attr:`Jid.normalized` maps it).
* ``agent`` and ``device`` are non-negative decimal numbers without leading
  zeros; they name one device of an account and are dropped for identity.
* Phone-number (``s.whatsapp.net``, ``c.us``, ``hosted``) and LID (``lid``,
  ``hosted.lid``) users are ASCII digits; group, broadcast and newsletter users
  are letters, digits, ``-`` and ``.``.
* Whitespace, empty parts and unknown servers are errors: a bad JID raises
  :class:`~heirline.core.errors.JidError` naming what is wrong, it never turns
  silently into "no identity".

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from heirline.core.errors import JidError

PN_SERVER: Final = "s.whatsapp.net"
LEGACY_PN_SERVER: Final = "c.us"
LID_SERVER: Final = "lid"
HOSTED_SERVER: Final = "hosted"
HOSTED_LID_SERVER: Final = "hosted.lid"
GROUP_SERVER: Final = "g.us"
BROADCAST_SERVER: Final = "broadcast"
NEWSLETTER_SERVER: Final = "newsletter"

#: Servers whose users are phone numbers.
PN_SERVERS: Final = frozenset({PN_SERVER, LEGACY_PN_SERVER, HOSTED_SERVER})
#: Servers whose users are LIDs (linked identities).
LID_SERVERS: Final = frozenset({LID_SERVER, HOSTED_LID_SERVER})
#: Every server heirline accepts.
SERVERS: Final = PN_SERVERS | LID_SERVERS | {GROUP_SERVER, BROADCAST_SERVER, NEWSLETTER_SERVER}

_DIGITS: Final = re.compile(r"[0-9]+")
_NUMBER: Final = re.compile(r"0|[1-9][0-9]{0,9}")
_OTHER_USER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_E164_DIGITS: Final = re.compile(r"[1-9][0-9]{6,14}")


def _check_user(user: str, server: str) -> None:
    if not user:
        raise JidError(f"empty user part in JID on server {server!r}")
    if server in PN_SERVERS or server in LID_SERVERS:
        if not _DIGITS.fullmatch(user):
            raise JidError(f"user {user!r} on server {server!r} must be ASCII digits only")
    elif not _OTHER_USER.fullmatch(user):
        raise JidError(f"user {user!r} on server {server!r} has characters a JID user cannot have")


#: Each server name as the one shared string every parsed JID refers to.
_CANONICAL: Final = {server: server for server in SERVERS}


def _check_server(server: str) -> str:
    if not server:
        raise JidError("empty server part in JID")
    canonical = _CANONICAL.get(server) or _CANONICAL.get(server.lower())
    if canonical is None:
        raise JidError(f"unknown JID server {server!r} (known: {', '.join(sorted(SERVERS))})")
    return canonical


def _check_number(value: int | None, what: str) -> None:
    if value is not None and not 0 <= value <= 9_999_999_999:
        raise JidError(f"{what} {value} is out of range 0..9999999999")


@dataclass(frozen=True, slots=True)
class Jid:
    """A parsed JID; constructing one validates it, so every ``Jid`` is well formed.

    ``server`` is stored lower-case (``c.us`` stays ``c.us`` until
    :attr:`normalized`); a bad part raises :class:`JidError`.
    """

    user: str
    server: str
    agent: int | None = None
    device: int | None = None

    def __post_init__(self) -> None:
        server = _check_server(self.server)
        object.__setattr__(self, "server", server)
        _check_user(self.user, server)
        _check_number(self.agent, "agent")
        _check_number(self.device, "device")

    def __str__(self) -> str:
        """Format back to ``user[_agent][:device]@server`` (``parse_jid`` inverts it)."""
        agent = "" if self.agent is None else f"_{self.agent}"
        device = "" if self.device is None else f":{self.device}"
        return f"{self.user}{agent}{device}@{self.server}"

    @classmethod
    def trusted(cls, user: str, server: str) -> Jid:
        """A normalized JID from parts already checked (the parser's fast path): no validation.

        ``server`` must be one of :data:`SERVERS` as spelled there.
        """
        jid = object.__new__(cls)
        object.__setattr__(jid, "user", user)
        object.__setattr__(jid, "server", _CANONICAL[server])
        object.__setattr__(jid, "agent", None)
        object.__setattr__(jid, "device", None)
        return jid

    @property
    def normalized(self) -> Jid:
        """The account this JID names: agent and device dropped, ``c.us`` -> ``s.whatsapp.net``."""
        server = PN_SERVER if self.server == LEGACY_PN_SERVER else self.server
        return Jid(self.user, server)

    @property
    def is_pn(self) -> bool:
        """True for the phone-number domain (``s.whatsapp.net``, ``c.us``, ``hosted``)."""
        return self.server in PN_SERVERS

    @property
    def is_lid(self) -> bool:
        """True for the LID domain (``lid``, ``hosted.lid``)."""
        return self.server in LID_SERVERS


def _parse_number(text: str, what: str, whole: str) -> int:
    if not text:
        raise JidError(f"empty {what} in JID {whole!r}")
    if not _NUMBER.fullmatch(text):
        raise JidError(
            f"{what} {text!r} in JID {whole!r} must be a decimal number "
            "(ASCII digits, no leading zeros, at most 10 digits)"
        )
    return int(text)


def parse_jid(text: str) -> Jid:
    """Parse ``user[_agent][:device]@server`` into a :class:`Jid`; JidError says what is wrong."""
    if not text:
        raise JidError("empty JID")
    if any(ch.isspace() for ch in text):
        raise JidError(f"JID {text!r} contains whitespace")
    if text.count("@") != 1:
        raise JidError(f"JID {text!r} must contain exactly one '@'")
    head, server = text.split("@")
    server = _check_server(server)
    if head.count(":") > 1:
        raise JidError(f"JID {text!r} has more than one ':' device separator")
    head, colon, device_text = head.partition(":")
    device = _parse_number(device_text, "device", text) if colon else None
    if head.count("_") > 1:
        raise JidError(f"JID {text!r} has more than one '_' agent separator")
    head, underscore, agent_text = head.partition("_")
    agent = _parse_number(agent_text, "agent", text) if underscore else None
    return Jid(head, server, agent, device)


def parse_e164(text: str) -> str:
    """Validate an E.164 number and return it as ``+<digits>`` (a leading ``+`` is optional).

    7 to 15 ASCII digits, first digit not 0; nothing else (no spaces or dashes).
    """
    digits = text[1:] if text.startswith("+") else text
    if not _E164_DIGITS.fullmatch(digits):
        raise JidError(f"E.164 number {text!r} must be '+' and 7-15 ASCII digits, the first not 0")
    return f"+{digits}"


def e164_from_pn(jid: Jid) -> str:
    """The E.164 number of a phone-number JID (``+`` and its user); JidError if it has none."""
    if not jid.is_pn:
        raise JidError(f"{jid} is not a phone-number JID, it has no E.164 number")
    return parse_e164(jid.user)
