"""The reference channel's frames, defined once for the server and the client.

One JSON object per line; ``t`` names the frame (``docs/channel-server.md``).
The client (:class:`~heirline.adapters.transport.ChannelTransport`) writes
:class:`Login`, :class:`Send` and :class:`Ping`; the server
(:class:`~heirline.adapters.channel.ChannelServer`) writes :class:`Ready`,
:class:`Ack`, :class:`Error`, :class:`Closed` and :class:`Pong`. Both sides
build and read them here and nowhere else.

The server reads strictly (:func:`decode_client`: a bad frame is a
:class:`FrameError` it answers with an ``error`` frame); the client reads
liberally (:func:`decode_server`: a form that is not a string is unknown, a
status that is not an integer is none), since what it makes of a confused
server is reported to the engine, which fails closed on what it cannot match.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Final

from heirline.adapters.jsonio import dumps_line

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "MAX_FIELD",
    "Ack",
    "ClientFrame",
    "Closed",
    "Error",
    "FrameError",
    "Login",
    "Ping",
    "Pong",
    "Ready",
    "Send",
    "ServerFrame",
    "decode_client",
    "decode_server",
    "encode",
]

#: Longest message id, chat, kind and account the server accepts.
MAX_FIELD: Final = 1024
#: Largest frame (one line, newline included) either side accepts by default.
DEFAULT_MAX_LINE_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Login:
    """Client: log this connection in as ``account``; ``generation`` is its fencing token."""

    T: ClassVar[str] = "login"
    account: str
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """Client: deliver one message with a stable id; ``generation`` is its fencing token
    (absent: the login's)."""

    T: ClassVar[str] = "send"
    id: str
    chat: str
    kind: str = "text"
    payload: str = ""
    generation: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Client: are you there? (answered with :class:`Pong` unless half-open)."""

    T: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True)
class Ready:
    """Server: logged in as this identity; any form may be null (unauthenticated)."""

    T: ClassVar[str] = "ready"
    pn: str | None
    lid: str | None
    e164: str | None


@dataclass(frozen=True, slots=True)
class Ack:
    """Server: the message ``id`` is recorded (also for a repeated id)."""

    T: ClassVar[str] = "ack"
    id: str


@dataclass(frozen=True, slots=True)
class Error:
    """Server: a bad frame; ``id`` when it concerned a send with a usable id."""

    T: ClassVar[str] = "error"
    message: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Closed:
    """Server: this connection closes with ``status``; EOF follows."""

    T: ClassVar[str] = "closed"
    status: int | None


@dataclass(frozen=True, slots=True)
class Pong:
    """Server: the answer to a :class:`Ping`."""

    T: ClassVar[str] = "pong"


ClientFrame = Login | Send | Ping
ServerFrame = Ready | Ack | Error | Closed | Pong


def encode(frame: ClientFrame | ServerFrame) -> bytes:
    """One frame as a line; an error's absent ``id`` and a send's absent token are left out."""
    body: dict[str, object] = {"t": frame.T}
    for f in fields(frame):
        value = getattr(frame, f.name)
        if value is None and (
            (isinstance(frame, Error) and f.name == "id")
            or (isinstance(frame, Send) and f.name == "generation")
        ):
            continue
        body[f.name] = value
    return dumps_line(body)


class FrameError(ValueError):
    """A client frame the server cannot use; ``message_id`` is the send's id if it had one."""

    def __init__(self, message: str, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.message_id = message_id


def _short_str(value: object, minimum: int = 1) -> bool:
    return isinstance(value, str) and minimum <= len(value) <= MAX_FIELD


_CLIENT_KEYS: Final[dict[str, frozenset[str]]] = {
    frame.T: frozenset(f.name for f in fields(frame)) for frame in (Login, Send, Ping)
}


def decode_client(obj: object) -> ClientFrame:
    """The client frame ``obj`` (a decoded JSON value) is; :class:`FrameError` if none."""
    if not isinstance(obj, dict):
        raise FrameError("frame is not a JSON object")
    kind = obj.get("t")
    keys = _CLIENT_KEYS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        raise FrameError(f"unknown frame type {kind!r}")
    message_id = obj.get("id") if kind == Send.T and _short_str(obj.get("id")) else None
    unknown = sorted(str(k) for k in obj if k != "t" and k not in keys)
    if unknown:
        raise FrameError(f"{kind}: unknown field(s) {', '.join(unknown)}", message_id)
    if kind == Ping.T:
        return Ping()
    if kind == Login.T:
        account, generation = obj.get("account"), obj.get("generation")
        if not _short_str(account):
            raise FrameError("login needs a string 'account' of 1..1024 characters")
        if generation is not None and (type(generation) is not int or generation < 0):
            raise FrameError("login: 'generation' must be a non-negative integer or absent")
        return Login(str(account), generation)
    if message_id is None:
        raise FrameError("send needs a string 'id' of 1..1024 characters")
    chat, kind_, payload = obj.get("chat"), obj.get("kind", "text"), obj.get("payload", "")
    if not (_short_str(chat) and _short_str(kind_, 0) and isinstance(payload, str)):
        raise FrameError("send needs string 'chat', 'kind', 'payload'", message_id)
    generation = obj.get("generation")
    if generation is not None and (type(generation) is not int or generation < 0):
        raise FrameError("send: 'generation' must be a non-negative integer or absent", message_id)
    return Send(str(message_id), str(chat), str(kind_), payload, generation)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def decode_server(obj: dict[str, object]) -> ServerFrame | None:
    """The server frame a JSON object is, read liberally; ``None`` for an unknown type."""
    kind = obj.get("t")
    if kind == Ready.T:
        return Ready(_opt_str(obj.get("pn")), _opt_str(obj.get("lid")), _opt_str(obj.get("e164")))
    if kind == Ack.T:
        message_id = obj.get("id")
        return Ack(message_id) if isinstance(message_id, str) else Error("ack without an id")
    if kind == Error.T:
        return Error(str(obj.get("message", "error")), _opt_str(obj.get("id")))
    if kind == Closed.T:
        status = obj.get("status")
        return Closed(status if type(status) is int else None)
    if kind == Pong.T:
        return Pong()
    return None
