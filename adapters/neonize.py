"""heirline on neonize: a :class:`~heirline.adapters.transport.Transport` over whatsmeow clients.

neonize is the Python binding of whatsmeow (Go); its async client,
``neonize.aioze.client.NewAClient``, runs whatsmeow inside the process and
reports what happens as protobuf events (``ConnectedEv``, ``MessageEv``, ...).
:class:`NeonizeTransport` turns those events into heirline facts and the
engine's ``OpenSocket`` / ``CloseSocket`` / ``Transmit`` effects into client
calls; :func:`neonize_gateway` builds an :class:`~heirline.adapters.aio.AsyncGateway`
around it, so the engine, its timers and shutdown come from the asyncio runtime.
Install with ``pip install 'heirline[neonize]'``; ``docs/neonize.md`` has a
runnable program.

One socket per attempt
----------------------
whatsmeow's client object survives reconnects and reconnects by itself; heirline
decides every reconnect (backoff, 12 retries, 440/401 never, health restarts).
So one heirline socket is one neonize *run*: ``OpenSocket(attempt)`` calls
``client.connect()``, which builds a fresh whatsmeow client from the account's
device store and connects it; ``CloseSocket`` (and any close the channel
reports) ends the run with ``client.disconnect()`` and ``client.stop()``, which
also cancels whatsmeow's own pending reconnect. The next attempt is a new run.
Each run gets its own neonize event dispatcher, installed for the ``connect()``
call only (neonize binds it then), so every event names the run, and thus the
attempt, that produced it: an event of an older attempt is reported with that
older attempt and the engine treats it as late, whatever order the threads
delivered it in. Reconnects whatsmeow makes *without* an event stay inside the
run (its keepalive's forced reconnect, the restart after pairing): a second
``ConnectedEv`` on an open attempt is a frame, not a new socket, unless
whatsmeow's store then shows another identity: the attempt closes with ``515
RESTART_REQUIRED`` (the engine reconnects at once), so no reconnect hides an
identity change from the guard.

What maps to what (``Status`` is :class:`heirline.core.policy.Status`)
---------------------------------------------------------------------
* ``ConnectedEv`` -> ``SocketOpened`` with ``client.get_me()``'s ``JID`` as
  ``pn`` and ``LID`` as ``lid`` (whatsmeow's store; the device part is kept, the
  engine drops it). whatsmeow may deliver a run's first messages before its
  ``ConnectedEv`` (offline messages race the login's last round trip); they are
  held and handled right after the open, so a reply is never captured before
  its socket shows who it is.
* ``DisconnectedEv`` -> ``SocketClosed(408 CONNECTION_LOST)``: whatsmeow emits it
  only for a connection it did not expect to lose (never for our own
  ``stop()``), which is Baileys' ``connectionLost``; the engine retries after its
  backoff. After a ``StreamErrorEv`` on the same run the close is
  ``500 BAD_SESSION`` instead ("bad session or stream error"), also a retry.
* ``LoggedOutEv`` -> ``SocketClosed(401 LOGGED_OUT)``; whatsmeow has deleted the
  session. When its reason is ``MAIN_DEVICE_GONE`` (WhatsApp's 403 "locked") or
  ``UNKNOWN_LOGOUT`` (406 "banned"): ``403 FORBIDDEN``. Both are terminal.
* ``StreamReplacedEv`` -> ``SocketClosed(440 CONNECTION_REPLACED)``: another
  client took the session; terminal, never reconnected (whatsmeow agrees: it
  does not reconnect either).
* ``TemporaryBanEv`` -> ``403 FORBIDDEN`` (the account is barred; whatsmeow does
  not reconnect). ``ClientOutdatedEv`` -> ``405`` (whatsmeow's number; an unknown
  status to the default policy, so retried with backoff until exhausted).
  ``ConnectFailureEv`` -> whatsmeow's reason number (400, 409, 500, 501, 503,
  ...; none if neonize gave no reason): whatsmeow sends it only for failures it
  will not retry.
* A terminal verdict (401, 403, 440) that arrives after its attempt already
  closed (it raced our ``stop()``) is not lost: the account's next ``open``
  reports it as that attempt's close without connecting, so the engine stops
  instead of pairing a deleted session anew or fighting the replacement.
* ``PairStatusEv``: ``SUCCESS`` is a frame. After pairing, WhatsApp asks for a
  restart (Baileys surfaces that as a 515 close); whatsmeow performs it inside
  the same run and then emits ``ConnectedEv``, so reporting a 515 would only
  make the engine tear down the connection whatsmeow is already rebuilding.
  ``ERROR`` closes the attempt with no status (the login failed; retried).
* ``KeepAliveTimeoutEv`` -> nothing the engine counts as activity: the socket
  is going silent and must look silent. whatsmeow pings every 20-30 s; when its
  pings have failed for ``KeepAliveMaxFailTime`` (3 min, before the engine's
  5 min watchdog) whatsmeow drops the connection and reconnects on its own,
  silently. At that point the adapter reports ``WatchdogSilence`` (whatsmeow
  has decided), the engine closes the attempt with ``499 WATCHDOG`` and
  reconnects by its own rules. Before that, the engine's watchdog decides.
* ``KeepAliveRestoredEv`` and every other event received -> ``Activity(FRAME)``.
* Liveness between events: whatsmeow answers its keepalive pings silently (no
  event for a success), so an idle but healthy connection shows nothing at
  all. While an attempt is open and no keepalive failure is outstanding, the
  adapter reports ``Activity(FRAME)`` every ``keepalive_probe_s`` seconds on the
  pings' behalf; the first ``KeepAliveTimeoutEv`` stops that until a
  ``KeepAliveRestoredEv`` (``None`` turns the probe off).
* ``MessageEv`` -> ``Activity(INBOUND)``, then the host's ``on_message`` hook
  decides: it returns ``None`` (no reply) or one or more :class:`ReplyRequest`,
  each captured at once (``ReplyCaptured``: reply id
  ``<account>/<chat>/<message id>/<n>``, so a redelivered message is a duplicate
  the engine refuses) and made ready when its payload is (``ReplyReady``).
* ``Transmit`` -> the sender registered for its kind, on the attempt's run:
  ``text`` sends a plain conversation message, ``read_receipt`` marks messages
  read (:func:`read_receipt` builds the payload); ``media`` and
  ``group_metadata`` need a host sender (``senders=``), else they fail with
  ``io_started=False``: "not supported by this adapter". A send returns when
  the server acknowledged it (``TransmitAcked``) or raised (``TransmitFailed``,
  ``io_started=True`` once the call was made, except whatsmeow's errors that
  come before the message is written: not connected, not logged in).

The message id
--------------
neonize's ``send_message`` cannot choose the message id (its Go side drops
whatsmeow's ``SendRequestExtra.ID``; whatsmeow generates one). A resend of a
reply whose I/O started would reach the receiver as a second message, so a
gateway over this adapter must not resend ``text`` or ``media``:
:func:`neonize_config` sets ``resendable_kinds`` to :data:`RESENDABLE_KINDS`
(read receipts and group lookups, which repeat harmlessly), and
:func:`neonize_gateway` refuses a config that would resend more. Such a reply
ends ``unknown`` instead. The WhatsApp id each send got is logged.

Limits of neonize this adapter lives with (see ``docs/neonize.md``): neonize
dispatches the events of every client to the first event loop that connected
one (process-wide), so the gateway must run on that loop (``open`` fails an
attempt otherwise); neonize keeps its Go clients in an unsynchronized map, so
the adapter never lets a ``stop()`` overlap another call on the same client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

try:
    import neonize.aioze.events as _neonize_events
    from neonize.aioze.client import NewAClient
    from neonize.aioze.events import (
        ClientOutdatedEv,
        ConnectedEv,
        ConnectFailureEv,
        DisconnectedEv,
        KeepAliveRestoredEv,
        KeepAliveTimeoutEv,
        LoggedOutEv,
        MessageEv,
        PairStatusEv,
        ReceiptEv,
        StreamErrorEv,
        StreamReplacedEv,
        TemporaryBanEv,
    )
    from neonize.aioze.events import Event as NeonizeEvents
    from neonize.events import EVENT_TO_INT
    from neonize.proto.Neonize_pb2 import (
        JID,
        ConnectFailureReason,
        OfflineSyncCompleted,
        OfflineSyncPreview,
        PairStatus,
        UndecryptableMessage,
    )
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
    from neonize.utils.enum import ReceiptType
    from neonize.utils.message import extract_text
except ImportError as _missing:  # pragma: no cover - only without the extra
    raise ImportError(
        "heirline.adapters.neonize needs neonize (the Python binding of whatsmeow): "
        f"pip install 'heirline[neonize]' ({_missing})"
    ) from _missing

from heirline.adapters.aio import AsyncGateway, TransportFactory
from heirline.adapters.jsonio import JsonError, dumps, loads
from heirline.adapters.transport import ChannelTransport, Transport, TransportCallbacks
from heirline.core.delivery import ReplyState
from heirline.core.engine import Engine, EngineConfig
from heirline.core.errors import JidError
from heirline.core.events import (
    Activity,
    ActivityKind,
    Event,
    ReplyCaptured,
    ReplyReady,
    WatchdogSilence,
)
from heirline.core.jid import LEGACY_PN_SERVER, PN_SERVER, parse_jid
from heirline.core.policy import Status

__all__ = [
    "DEFAULT_CLOSE_GRACE_S",
    "RESENDABLE_KINDS",
    "SUBSCRIBED_EVENTS",
    "WHATSMEOW_KEEPALIVE_MAX_FAIL_S",
    "InboundMessage",
    "MessageHook",
    "NeonizeHost",
    "NeonizeTransport",
    "PayloadError",
    "ReplyRequest",
    "Sender",
    "chat_jid",
    "check_config",
    "format_jid",
    "neonize_config",
    "neonize_gateway",
    "read_receipt",
    "send_read_receipt",
    "send_text",
    "transport_factory",
]

_log = logging.getLogger(__name__)
_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: whatsmeow's ``KeepAliveMaxFailTime``: keepalives failing this long (seconds) make whatsmeow
#: drop the connection and reconnect by itself; the adapter reports ``WatchdogSilence`` then.
WHATSMEOW_KEEPALIVE_MAX_FAIL_S: Final = 180.0
#: How long (seconds) ending a run waits for calls in flight and for the run to return.
DEFAULT_CLOSE_GRACE_S: Final = 5.0
#: Kinds whose resend is harmless without a chosen message id (see the module docstring).
RESENDABLE_KINDS: Final = frozenset({"read_receipt", "group_metadata"})
#: The neonize events every run subscribes to (the host's own handlers add theirs).
SUBSCRIBED_EVENTS: Final[tuple[type[object], ...]] = (
    PairStatusEv,
    ConnectedEv,
    KeepAliveTimeoutEv,
    KeepAliveRestoredEv,
    LoggedOutEv,
    StreamReplacedEv,
    TemporaryBanEv,
    ConnectFailureEv,
    ClientOutdatedEv,
    StreamErrorEv,
    DisconnectedEv,
    MessageEv,
    ReceiptEv,
    OfflineSyncPreview,
    OfflineSyncCompleted,
    UndecryptableMessage,
)
#: whatsmeow's status number for each neonize ``ConnectFailureReason``.
_FAILURE_STATUS: Final[Mapping[int, int]] = {
    ConnectFailureReason.GENERIC: 400,
    ConnectFailureReason.LOGGED_OUT: Status.LOGGED_OUT,
    ConnectFailureReason.TEMP_BANNED: 402,
    ConnectFailureReason.MAIN_DEVICE_GONE: 403,
    ConnectFailureReason.CLIENT_OUTDATED: 405,
    ConnectFailureReason.UNKNOWN_LOGOUT: 406,
    ConnectFailureReason.BAD_USER_AGENT: 409,
    ConnectFailureReason.INTERNAL_SERVER_ERROR: 500,
    ConnectFailureReason.EXPERIMENTAL: 501,
    ConnectFailureReason.SERVICE_UNAVAILABLE: 503,
}
#: ``LoggedOutEv`` reasons that mean the account is barred, not merely unlinked.
_BARRED: Final = frozenset(
    {ConnectFailureReason.MAIN_DEVICE_GONE, ConnectFailureReason.UNKNOWN_LOGOUT}
)
#: whatsmeow's ClientOutdated connect failure.
_CLIENT_OUTDATED: Final = 405
#: Closes whose news must reach the engine even when they arrive after the attempt closed.
_TERMINAL: Final = frozenset({Status.LOGGED_OUT, Status.FORBIDDEN, Status.CONNECTION_REPLACED})
#: whatsmeow errors returned before the message frame is written (``ErrNotConnected``,
#: ``ErrNotLoggedIn``, ``ErrClientIsNil``): nothing left the process.
_BEFORE_IO: Final = (
    "websocket not connected",
    "the store doesn't contain a device JID",
    "client is nil",
)


# --------------------------------------------------------------------------- host surface


@runtime_checkable
class NeonizeHost(TransportCallbacks, Protocol):
    """What the transport reports to: the gateway (``GatewayBase``) that feeds the engine."""

    engine: Engine

    def feed(self, event: Event) -> None:
        """Report one fact to the engine."""

    def now_ms(self) -> int:
        """Engine time now (ms)."""

    def note(
        self, message: str, *, account: str | None = None, generation: int | None = None
    ) -> None:
        """Add an adapter note to the gateway's timeline."""


class PayloadError(ValueError):
    """A sender cannot send this payload; raised before any I/O (``io_started=False``)."""


#: Sends one payload to a chat through the client; returns the WhatsApp message id if any.
#: Raise :class:`PayloadError` for a payload it cannot send (nothing was sent).
Sender = Callable[[NewAClient, JID, str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a run received, as the ``on_message`` hook sees it.

    ``chat`` and ``sender`` are JID strings (``user[:device]@server``); ``text``
    is the message's text or caption ("" if it has none); ``event`` is neonize's
    ``MessageEv`` with everything else.
    """

    account: str
    generation: int
    attempt: int
    chat: str
    sender: str
    message_id: str
    from_me: bool
    is_group: bool
    text: str
    event: MessageEv


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """The host wants a reply to an inbound message.

    ``payload`` is the content, or an async callable producing it (the reply is
    captured at once and made ready when the payload is; if the callable
    raises, nothing is sent and the reply ends at its deadline). ``kind`` is the
    operation (``text``, ``read_receipt``, ...); ``chat`` defaults to the
    message's chat; ``deadline_ms`` is relative to the capture (``None``: the
    engine's default).
    """

    payload: str | Callable[[], Awaitable[str]] = ""
    kind: str = "text"
    chat: str | None = None
    deadline_ms: int | None = None

    def __post_init__(self) -> None:
        if self.deadline_ms is not None and self.deadline_ms < 1:
            raise ValueError(f"ReplyRequest.deadline_ms must be >= 1, got {self.deadline_ms}")


#: Decides whether an inbound message wants replies: ``None``, one request, or several.
MessageHook = Callable[[InboundMessage], ReplyRequest | Sequence[ReplyRequest] | None]


# --------------------------------------------------------------------------- JIDs and payloads


def format_jid(jid: JID) -> str | None:
    """A neonize ``JID`` as ``user[_agent][:device]@server``; ``None`` for an empty one."""
    if jid.IsEmpty or not jid.User or not jid.Server:
        return None
    agent = f"_{jid.RawAgent}" if jid.RawAgent else ""
    device = f":{jid.Device}" if jid.Device else ""
    return f"{jid.User}{agent}{device}@{jid.Server}"


def chat_jid(text: str) -> JID:
    """The neonize ``JID`` for a chat string; ``c.us`` becomes ``s.whatsapp.net``.

    Raises :class:`~heirline.core.errors.JidError` naming what is wrong.
    """
    jid = parse_jid(text)
    server = PN_SERVER if jid.server == LEGACY_PN_SERVER else jid.server
    return JID(
        User=jid.user,
        Server=server,
        RawAgent=jid.agent or 0,
        Device=jid.device or 0,
        Integrator=0,
        IsEmpty=False,
    )


def read_receipt(message: InboundMessage) -> ReplyRequest:
    """A ``read_receipt`` reply that marks ``message`` read (its payload names id and sender)."""
    payload = dumps({"ids": [message.message_id], "sender": message.sender}).decode()
    return ReplyRequest(payload=payload, kind="read_receipt")


async def send_text(client: NewAClient, to: JID, payload: str) -> str | None:
    """The ``text`` sender: a plain conversation message (no mention parsing, no preview)."""
    if not payload:
        raise PayloadError("empty text: WhatsApp shows no empty message")
    response = await client.send_message(to, WAMessage(conversation=payload))
    return response.ID or None


async def send_read_receipt(client: NewAClient, to: JID, payload: str) -> str | None:
    """The ``read_receipt`` sender; payload ``{"ids": [...], "sender": jid}`` (see read_receipt)."""
    try:
        data = loads(payload)
    except JsonError as exc:
        raise PayloadError(f"read_receipt payload is not JSON: {exc}") from exc
    ids = data.get("ids") if isinstance(data, dict) else None
    sender = data.get("sender") if isinstance(data, dict) else None
    if (
        not isinstance(ids, list)
        or not ids
        or not all(isinstance(i, str) and i for i in ids)
        or not isinstance(sender, str)
    ):
        raise PayloadError(
            'read_receipt payload must be {"ids": [non-empty strings], "sender": "<jid>"}'
        )
    try:
        sender_jid = chat_jid(sender)
    except JidError as exc:
        raise PayloadError(f"read_receipt sender: {exc}") from exc
    await client.mark_read(*ids, chat=to, sender=sender_jid, receipt=ReceiptType.READ)
    return None


#: The kinds this adapter sends by itself.
_DEFAULT_SENDERS: Final[Mapping[str, Sender]] = {
    "text": send_text,
    "read_receipt": send_read_receipt,
}


async def _stop(client: NewAClient) -> None:
    stop: Callable[[], Awaitable[object]] = client.stop  # neonize leaves it unannotated
    await stop()


def _before_io(exc: BaseException) -> bool:
    if isinstance(exc, PayloadError):
        return True
    text = str(exc)
    return any(marker in text for marker in _BEFORE_IO)


# --------------------------------------------------------------------------- engine config


def neonize_config(base: EngineConfig | None = None) -> EngineConfig:
    """``base`` (default: the defaults) with only :data:`RESENDABLE_KINDS` resendable."""
    config = base if base is not None else EngineConfig()
    return dataclasses.replace(config, resendable_kinds=config.resendable_kinds & RESENDABLE_KINDS)


def check_config(config: EngineConfig) -> None:
    """Raise ``ValueError`` if ``config`` would resend a kind neonize cannot send idempotently."""
    unsafe = config.resendable_kinds - RESENDABLE_KINDS
    if unsafe:
        raise ValueError(
            f"EngineConfig.resendable_kinds includes {sorted(unsafe)}, but neonize cannot send "
            "with a chosen message id: a resend after I/O started would show the reply twice. "
            "Use heirline.adapters.neonize.neonize_config(config)."
        )


# --------------------------------------------------------------------------- the transport


@dataclass(eq=False, slots=True)
class _Account:
    name: str
    client: NewAClient
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The latest socket opened on this client (a finished one stays until the next open).
    socket: _Socket | None = None
    #: The neonize run of the latest ``connect()``.
    run: asyncio.Future[object] | None = None
    #: A terminal close that arrived after its attempt closed: the next open reports it.
    verdict: tuple[int, str] | None = None


@dataclass(eq=False, slots=True)
class _Socket:
    account: _Account
    generation: int
    attempt: int
    #: Serializes this run's events, in the order neonize dispatched them.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    run: asyncio.Future[object] | None = None
    is_open: bool = False
    ending: bool = False
    end_status: int | None = None
    finished: bool = False
    keepalive_failing: bool = False
    watchdog_reported: bool = False
    stream_error: str | None = None
    #: ``(pn, lid)`` reported at the open.
    identity: tuple[str | None, str | None] | None = None
    #: Messages that arrived before the open (reported right after it).
    held: list[MessageEv] = field(default_factory=list)
    probe: asyncio.Task[None] | None = None
    #: Client calls in flight on this run; ``stop()`` waits for them (the Go map is shared).
    calls: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once the close was reported.
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Sends waiting for their outcome: message id -> count.
    pending: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def name(self) -> str:
        return f"{self.account.name}#{self.attempt}"

    def over(self) -> bool:
        """Whether the run is ending (a call, so no narrowing of ``ending`` outlives an await)."""
        return self.ending


class _Closing(Exception):
    """The run is ending: no new call may start on it."""


class NeonizeTransport:
    """:class:`~heirline.adapters.transport.Transport` over neonize async clients, one per account.

    ``clients`` maps each account to its ``NewAClient`` (register your own
    neonize event handlers on it before the first connect: the adapter chains
    them after its own). ``host`` is the gateway. See the module docstring for
    what each event becomes. Usually built by :func:`neonize_gateway`.
    """

    def __init__(
        self,
        clients: Mapping[str, NewAClient],
        host: NeonizeHost,
        *,
        on_message: MessageHook | None = None,
        senders: Mapping[str, Sender] | None = None,
        keepalive_probe_s: float | int | None = 30.0,
        close_grace_s: float | int = DEFAULT_CLOSE_GRACE_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not clients:
            raise ValueError("clients is empty: map each account to its neonize NewAClient")
        seen: dict[int, str] = {}
        for account, client in clients.items():
            other = seen.setdefault(id(client), account)
            if other != account:
                raise ValueError(
                    f"accounts {other!r} and {account!r} share one client; "
                    "each account needs its own NewAClient (its own device store)"
                )
        if keepalive_probe_s is not None and not keepalive_probe_s > 0:
            raise ValueError(f"keepalive_probe_s must be > 0 or None, got {keepalive_probe_s}")
        if not close_grace_s > 0:
            raise ValueError(f"close_grace_s must be > 0, got {close_grace_s}")
        self._accounts = {account: _Account(account, client) for account, client in clients.items()}
        self._host = host
        self._on_message = on_message
        self._senders: dict[str, Sender] = {**_DEFAULT_SENDERS, **(senders or {})}
        self._probe_s = keepalive_probe_s
        self._grace = close_grace_s
        self._wall = wall_clock
        self._sockets: dict[tuple[str, int], _Socket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Events processed so far (every run, every kind): for tests and monitoring.
        self.handled = 0

    # ------------------------------------------------------------ Transport

    async def open(self, account: str, generation: int, attempt: int) -> None:
        if self._closed:
            raise RuntimeError("transport is closed")
        key = (account, attempt)
        if key in self._sockets:
            raise ValueError(f"socket {account}#{attempt} is already open or opening")
        acct = self._accounts.get(account)
        if acct is None:
            self._say(f"no neonize client for account {account!r}", account, generation, "error")
            self._host.on_close(account, generation, attempt, None)
            return
        sock = _Socket(acct, generation, attempt)
        self._sockets[key] = sock
        async with acct.lock:
            if sock.ending:  # closed while it waited for the client
                self._finish(sock, sock.end_status)
                return
            problem = await self._clear_for(acct)
            if problem is not None:
                status, why = problem
                self._say(f"attempt {attempt} not connected: {why}", account, generation, "error")
                self._finish(sock, status)
                return
            acct.socket = sock
            await self._connect(sock)

    async def send(
        self,
        account: str,
        generation: int,
        attempt: int,
        message_id: str,
        chat: str,
        kind: str,
        payload: str,
    ) -> None:
        sock = self._sockets.get((account, attempt))

        def failed(io_started: bool, error: str) -> None:
            self._host.on_send_failed(account, generation, attempt, message_id, io_started, error)

        if sock is None or not sock.is_open or sock.ending:
            failed(False, f"connection closed ({Status.CONNECTION_CLOSED}): no open socket")
            return
        sender = self._senders.get(kind)
        if sender is None:
            failed(
                False,
                f"kind {kind!r} is not supported by this adapter "
                f"(it sends {', '.join(sorted(self._senders))}; pass senders= for more)",
            )
            return
        try:
            to = chat_jid(chat)
        except JidError as exc:
            failed(False, f"bad chat JID: {exc}")
            return
        sock.pending[message_id] = sock.pending.get(message_id, 0) + 1
        io_started = True
        error = ""
        whatsapp_id: str | None = None
        try:
            with self._call(sock):
                whatsapp_id = await sender(sock.account.client, to, payload)
        except _Closing:
            io_started, error = False, "socket is closing"
        except Exception as exc:
            io_started = not _before_io(exc)
            error = f"send failed: {exc}"
        if sock.finished:  # the close already failed every pending send
            _log.info("outcome of %s on %s after its close dropped", message_id, sock.name)
            return
        self._unpend(sock, message_id)
        if error:
            failed(io_started, error)
            return
        _log.info("sent %s on %s as WhatsApp message %s", message_id, sock.name, whatsapp_id)
        self._host.on_ack(account, generation, attempt, message_id)

    async def close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        sock = self._sockets.get((account, attempt))
        if sock is not None and not sock.finished:
            await self._end(sock, status)

    async def aclose(self) -> None:
        """End every run (each reports ``on_close(None)``), then every task of the transport.

        A run already ending (a close in progress) is waited for, not cut short.
        """
        self._closed = True
        for sock in list(self._sockets.values()):
            await self._end(sock, None)
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._grace)

    def is_open(self, account: str, attempt: int) -> bool:
        """True while that attempt's run is logged in and not ending."""
        sock = self._sockets.get((account, attempt))
        return sock is not None and sock.is_open and not sock.ending

    # ------------------------------------------------------------ runs

    async def _clear_for(self, acct: _Account) -> tuple[int | None, str] | None:
        """Make the client ready for a new run (holding its lock); why not, if it cannot be."""
        prev = acct.socket
        if prev is not None and not prev.finished:
            # Only if the engine opened a new attempt without closing the last one.
            if not prev.ending:
                prev.ending, prev.end_status = True, None
            await self._shut_run(prev)
            self._finish(prev, prev.end_status)
        if acct.run is not None and not acct.run.done():
            return None, (
                "the previous neonize run of this client has not ended "
                f"within {self._grace:g} s; connecting again would replace callbacks it still uses"
            )
        loop = _neonize_events.event_global_loop
        if loop is not None and loop is not asyncio.get_running_loop():
            return None, (
                "neonize dispatches events to another event loop "
                "(neonize.aioze.events.event_global_loop, set by the first client that connected); "
                "run the gateway on that loop"
            )
        if acct.verdict is not None:
            status, why = acct.verdict
            acct.verdict = None
            return status, why
        return None

    async def _connect(self, sock: _Socket) -> None:
        acct = sock.account
        client = acct.client
        events = self._dispatcher(sock)
        host_events = client.event
        client.event = events  # neonize binds the dispatcher while connect() runs
        try:
            run = await client.connect()
        except Exception as exc:
            self._say(
                f"connect() of attempt {sock.attempt} failed: {exc!r}",
                acct.name,
                sock.generation,
                "error",
            )
            self._finish(sock, None)
            return
        finally:
            client.event = host_events
        if not isinstance(run, asyncio.Future):
            self._say(
                f"connect() returned {type(run).__name__}, not its run task",
                acct.name,
                sock.generation,
                "error",
            )
            self._finish(sock, None)
            return
        sock.run = acct.run = run
        run.add_done_callback(lambda done: self._run_ended(sock, done))

    def _dispatcher(self, sock: _Socket) -> NeonizeEvents:
        """A neonize event dispatcher for one run: every event is handled for ``sock``."""
        client = sock.account.client
        host_handlers = dict(client.event.list_func)
        events = NeonizeEvents(client)
        codes = {EVENT_TO_INT[kind] for kind in SUBSCRIBED_EVENTS} | set(host_handlers)
        for code in sorted(codes):
            events.list_func[code] = self._handler(sock, host_handlers.get(code))
        return events

    def _handler(
        self, sock: _Socket, chained: Callable[[NewAClient, object], Awaitable[None]] | None
    ) -> Callable[[object, object], Coroutine[Any, Any, None]]:
        async def handle(client: object, message: object) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                async with sock.lock:
                    await self._process(sock, message)
            except Exception:
                _log.exception("handling %s on %s failed", type(message).__name__, sock.name)
            finally:
                self.handled += 1
                if task is not None:
                    self._tasks.discard(task)
            if chained is not None:
                try:
                    await chained(sock.account.client, message)
                except Exception:
                    _log.exception("host handler for %s raised", type(message).__name__)

        return handle

    def _run_ended(self, sock: _Socket, run: asyncio.Future[object]) -> None:
        error = None if run.cancelled() else run.exception()
        if error is not None:
            _log.warning("neonize run of %s ended: %r", sock.name, error)
        if not sock.ending and not sock.finished:
            why = f": {error}" if error is not None else ""
            self._say(
                f"the neonize run of attempt {sock.attempt} ended{why}",
                sock.account.name,
                sock.generation,
            )
            self._spawn(self._end(sock, None))

    async def _end(self, sock: _Socket, status: int | None) -> None:
        """End ``sock``'s run and report its close with ``status``; returns once it is closed.

        The first caller's status wins; a later caller waits for that close (bounded).
        """
        if sock.ending:  # finished sockets are ending too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sock.closed.wait(), 3 * self._grace)
            return
        sock.ending, sock.end_status = True, status
        self._stop_probe(sock)
        async with sock.account.lock:
            if sock.finished:
                return
            await self._shut_run(sock)
            self._finish(sock, sock.end_status)

    async def _shut_run(self, sock: _Socket) -> None:
        """Disconnect, let calls in flight return, stop the run and wait for it (bounded)."""
        client = sock.account.client
        run = sock.run
        if run is not None and not run.done():
            try:  # whatsmeow fails sends waiting for their ack at once: they return
                await client.disconnect()
            except Exception as exc:
                _log.warning("disconnect of %s failed: %r", sock.name, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sock.idle.wait(), self._grace)
        if sock.calls:
            _log.warning("%s: %d client calls still in flight at stop", sock.name, sock.calls)
        if run is None or run.done():
            return
        try:
            await _stop(client)
        except Exception as exc:
            _log.warning("stop of %s failed: %r", sock.name, exc)
        await asyncio.wait({run}, timeout=self._grace)
        if not run.done():
            _log.warning("neonize run of %s did not end within %g s", sock.name, self._grace)

    def _finish(self, sock: _Socket, status: int | None) -> None:
        if sock.finished:
            return
        sock.finished = sock.ending = True
        sock.is_open = False
        self._stop_probe(sock)
        key = (sock.account.name, sock.attempt)
        if self._sockets.get(key) is sock:
            del self._sockets[key]
        acct, gen, attempt = sock.account.name, sock.generation, sock.attempt
        sock.closed.set()
        self._host.on_close(acct, gen, attempt, status)
        pending, sock.pending = sock.pending, {}
        for message_id, count in pending.items():
            for _ in range(count):
                self._host.on_send_failed(
                    acct, gen, attempt, message_id, True,
                    f"connection closed (status {status}) before the ack",
                )  # fmt: skip
        held, sock.held = sock.held, []
        for message in held:  # it never opened: no activity, but the messages were received
            self._inbound(sock, message, False)

    # ------------------------------------------------------------ events

    async def _process(self, sock: _Socket, message: object) -> None:
        status: int | None
        if isinstance(message, ConnectedEv):
            await self._connected(sock)
        elif isinstance(message, MessageEv):
            if not sock.is_open and not sock.ending:
                sock.held.append(message)
            else:
                self._inbound(sock, message, sock.identity is not None)
        elif isinstance(message, KeepAliveTimeoutEv):
            self._keepalive_timeout(sock, message)
        elif isinstance(message, KeepAliveRestoredEv):
            sock.keepalive_failing = sock.watchdog_reported = False
            self._frame(sock)
        elif isinstance(message, DisconnectedEv):
            status = Status.BAD_SESSION if sock.stream_error is not None else Status.CONNECTION_LOST
            await self._closed_by_channel(sock, status, "disconnected")
        elif isinstance(message, LoggedOutEv):
            status = Status.FORBIDDEN if message.Reason in _BARRED else Status.LOGGED_OUT
            reason = ConnectFailureReason.Name(message.Reason)
            await self._closed_by_channel(sock, status, f"logged out (reason {reason})")
        elif isinstance(message, StreamReplacedEv):
            await self._closed_by_channel(sock, Status.CONNECTION_REPLACED, "stream replaced")
        elif isinstance(message, TemporaryBanEv):
            await self._closed_by_channel(
                sock, Status.FORBIDDEN, f"temporarily banned for {message.Expire} s"
            )
        elif isinstance(message, ClientOutdatedEv):
            await self._closed_by_channel(sock, _CLIENT_OUTDATED, "client outdated")
        elif isinstance(message, ConnectFailureEv):
            status = _FAILURE_STATUS.get(message.Reason)
            await self._closed_by_channel(sock, status, f"connect failure: {message.Message}")
        elif isinstance(message, StreamErrorEv):
            sock.stream_error = message.Code
            self._say(
                f"stream error {message.Code!r} on attempt {sock.attempt}",
                sock.account.name,
                sock.generation,
            )
            self._frame(sock)
        elif isinstance(message, PairStatusEv):
            if message.Status == PairStatus.ERROR:
                self._say(
                    f"pairing failed: {message.Error}",
                    sock.account.name,
                    sock.generation,
                    "warning",
                )
                await self._end(sock, None)
            else:
                self._say(f"paired as {format_jid(message.ID)}", sock.account.name, sock.generation)
                self._frame(sock)
        else:
            self._frame(sock)

    async def _connected(self, sock: _Socket) -> None:
        acct = sock.account
        if sock.ending:
            self._say(
                f"whatsmeow connected attempt {sock.attempt} after it was closed: ignored",
                acct.name,
                sock.generation,
            )
            return
        identity = await self._identity(sock)
        if identity is None or sock.over():
            return
        if sock.is_open:  # whatsmeow reconnected by itself, inside this run
            sock.keepalive_failing = sock.watchdog_reported = False
            if identity != sock.identity:
                # A reconnect must not hide an identity change from the guard: restart.
                self._say(
                    f"whatsmeow reconnected attempt {sock.attempt} as {identity}, "
                    f"not {sock.identity}: restart",
                    acct.name,
                    sock.generation,
                    "warning",
                )
                await self._end(sock, Status.RESTART_REQUIRED)
                return
            self._say(
                f"whatsmeow reconnected attempt {sock.attempt} by itself",
                acct.name,
                sock.generation,
            )
            self._frame(sock)
            return
        sock.identity = identity
        sock.is_open = True
        sock.keepalive_failing = False
        self._host.on_open(acct.name, sock.generation, sock.attempt, *identity, None)
        if self._probe_s is not None:
            sock.probe = self._spawn(
                self._probe(sock, self._probe_s), f"heirline-neonize-probe-{sock.name}"
            )
        held, sock.held = sock.held, []
        for message in held:
            self._inbound(sock, message, True)

    async def _identity(self, sock: _Socket) -> tuple[str | None, str | None] | None:
        """The run's self identity ``(pn, lid)`` from whatsmeow's store; ``None``: the run ended."""
        acct = sock.account
        try:
            with self._call(sock):
                me = await acct.client.get_me()
        except _Closing:
            return None
        except Exception as exc:
            self._say(
                f"get_me() failed on attempt {sock.attempt}: {exc!r}",
                acct.name,
                sock.generation,
                "error",
            )
            await self._end(sock, None)
            return None
        pn = format_jid(me.JID) if me.HasField("JID") else None
        lid = format_jid(me.LID) if me.HasField("LID") else None
        return pn, lid

    async def _closed_by_channel(self, sock: _Socket, status: int | None, what: str) -> None:
        acct = sock.account
        if not sock.ending:
            self._say(f"{what} on attempt {sock.attempt}", acct.name, sock.generation)
            await self._end(sock, status)
            return
        if status in _TERMINAL and acct.socket is sock:
            # It raced our own stop; the engine must still hear it: at the next open.
            acct.verdict = (status, f"{what} after attempt {sock.attempt} closed")
            self._say(
                f"{what} after attempt {sock.attempt} closed: kept for the next open",
                acct.name,
                sock.generation,
                "warning",
            )
        else:
            self._say(
                f"{what} after attempt {sock.attempt} closed: ignored", acct.name, sock.generation
            )

    def _keepalive_timeout(self, sock: _Socket, message: KeepAliveTimeoutEv) -> None:
        sock.keepalive_failing = True
        silent_s = self._wall() - message.LastSuccess
        if (
            sock.is_open
            and not sock.ending
            and not sock.watchdog_reported
            and silent_s > WHATSMEOW_KEEPALIVE_MAX_FAIL_S
        ):
            sock.watchdog_reported = True
            self._host.feed(
                WatchdogSilence(
                    account=sock.account.name,
                    generation=sock.generation,
                    attempt=sock.attempt,
                    silent_ms=int(silent_s * 1000),
                )
            )

    def _frame(self, sock: _Socket) -> None:
        if sock.identity is not None:  # it was opened (a later frame is late, and says so)
            self._host.on_activity(sock.account.name, sock.generation, sock.attempt)

    async def _probe(self, sock: _Socket, every: float | int) -> None:
        while True:
            await asyncio.sleep(every)
            if not sock.is_open or sock.ending:
                return
            if not sock.keepalive_failing:
                self._host.on_activity(sock.account.name, sock.generation, sock.attempt)

    def _stop_probe(self, sock: _Socket) -> None:
        if sock.probe is not None:
            sock.probe.cancel()
            sock.probe = None

    # ------------------------------------------------------------ inbound messages

    def _inbound(self, sock: _Socket, message: MessageEv, opened: bool) -> None:
        acct = sock.account
        if opened:
            self._host.feed(
                Activity(
                    account=acct.name,
                    generation=sock.generation,
                    attempt=sock.attempt,
                    kind=ActivityKind.INBOUND,
                )
            )
        if self._on_message is None:
            return
        source = message.Info.MessageSource
        chat = format_jid(source.Chat)
        if chat is None:
            _log.warning("message %s on %s has no chat: no reply", message.Info.ID, sock.name)
            return
        inbound = InboundMessage(
            account=acct.name,
            generation=sock.generation,
            attempt=sock.attempt,
            chat=chat,
            sender=format_jid(source.Sender) or chat,
            message_id=message.Info.ID,
            from_me=source.IsFromMe,
            is_group=source.IsGroup,
            text=extract_text(message.Message),
            event=message,
        )
        try:
            wanted: object = self._on_message(inbound)
        except Exception:
            _log.exception("on_message raised for %s: no reply", inbound.message_id)
            return
        requests: tuple[object, ...]
        if wanted is None or isinstance(wanted, ReplyRequest):
            requests = () if wanted is None else (wanted,)
        elif isinstance(wanted, Sequence) and not isinstance(wanted, str):
            requests = tuple(wanted)
        else:
            requests = (wanted,)
        for index, request in enumerate(requests):
            if not isinstance(request, ReplyRequest):
                _log.error("on_message returned %r, not a ReplyRequest: ignored", request)
                continue
            self._capture(inbound, request, f"{acct.name}/{chat}/{inbound.message_id}/{index}")

    def _capture(self, inbound: InboundMessage, request: ReplyRequest, reply_id: str) -> None:
        engine = self._host.engine
        if engine.shut_down:
            return
        if engine.reply_state(reply_id) is not None:
            self._say(
                f"reply {reply_id} exists: message redelivered, not captured again",
                inbound.account,
                inbound.generation,
            )
            return
        deadline = (
            None if request.deadline_ms is None else self._host.now_ms() + request.deadline_ms
        )
        self._host.feed(
            ReplyCaptured(
                reply_id=reply_id,
                account=inbound.account,
                generation=inbound.generation,
                chat=request.chat or inbound.chat,
                kind=request.kind,
                deadline_ms=deadline,
            )
        )
        if engine.reply_state(reply_id) is not ReplyState.PENDING:
            return  # refused (the gateway's rejections say why)
        if isinstance(request.payload, str):
            self._host.feed(ReplyReady(reply_id=reply_id, payload=request.payload))
        else:
            self._spawn(self._produce(reply_id, request.payload))

    async def _produce(self, reply_id: str, produce: Callable[[], Awaitable[str]]) -> None:
        try:
            payload: object = await produce()
        except Exception:
            _log.exception("payload of reply %s failed: nothing is sent", reply_id)
            return
        if not isinstance(payload, str):
            _log.error(
                "payload of reply %s is %s, not str: nothing is sent",
                reply_id,
                type(payload).__name__,
            )
            return
        engine = self._host.engine
        if not engine.shut_down and engine.reply_state(reply_id) is ReplyState.PENDING:
            self._host.feed(ReplyReady(reply_id=reply_id, payload=payload))

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _call(self, sock: _Socket) -> Iterator[None]:
        """Count a client call on ``sock``'s run; refuse it once the run is ending."""
        if sock.ending:
            raise _Closing
        sock.calls += 1
        sock.idle.clear()
        try:
            yield
        finally:
            sock.calls -= 1
            if sock.calls == 0:
                sock.idle.set()

    def _unpend(self, sock: _Socket, message_id: str) -> None:
        count = sock.pending.get(message_id, 0)
        if count <= 1:
            sock.pending.pop(message_id, None)
        else:
            sock.pending[message_id] = count - 1

    def _spawn(
        self, coro: Coroutine[Any, Any, None], name: str | None = None
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _say(self, message: str, account: str, generation: int | None, level: str = "info") -> None:
        _log.log(_LEVELS.get(level, logging.INFO), "%s: %s", account, message)
        self._host.note(f"neonize: {message}", account=account, generation=generation)


# --------------------------------------------------------------------------- building a gateway


def transport_factory(
    clients: Mapping[str, NewAClient],
    *,
    on_message: MessageHook | None = None,
    senders: Mapping[str, Sender] | None = None,
    keepalive_probe_s: float | int | None = 30.0,
    close_grace_s: float | int = DEFAULT_CLOSE_GRACE_S,
    wall_clock: Callable[[], float] = time.time,
) -> TransportFactory:
    """A factory for ``AsyncGateway(...)``: builds a :class:`NeonizeTransport` for the gateway."""

    def build(callbacks: TransportCallbacks) -> Transport:
        if not isinstance(callbacks, NeonizeHost):
            raise TypeError(
                "NeonizeTransport needs a gateway that feeds events (a GatewayBase such as "
                f"AsyncGateway), got {type(callbacks).__name__}"
            )
        check_config(callbacks.engine.config)
        return NeonizeTransport(
            clients,
            callbacks,
            on_message=on_message,
            senders=senders,
            keepalive_probe_s=keepalive_probe_s,
            close_grace_s=close_grace_s,
            wall_clock=wall_clock,
        )

    return build


def neonize_gateway(
    clients: Mapping[str, NewAClient],
    *,
    random: Callable[[], float],
    config: EngineConfig | None = None,
    on_message: MessageHook | None = None,
    senders: Mapping[str, Sender] | None = None,
    keepalive_probe_s: float | int | Literal["auto"] | None = "auto",
    close_grace_s: float | int = DEFAULT_CLOSE_GRACE_S,
    speed: float | int = 1.0,
    shutdown_timeout: float | int = 5.0,
) -> AsyncGateway:
    """An :class:`AsyncGateway` whose sockets are neonize runs of ``clients``. Use ``async with``.

    ``config`` defaults to :func:`neonize_config`; one that resends ``text`` or
    ``media`` is refused (:func:`check_config`). ``keepalive_probe_s="auto"``
    reports liveness often enough for the engine's watchdog (a third of it, at
    most 30 s). Feed ``Start(account=...)`` to bring an account up.
    """
    config = neonize_config() if config is None else config
    check_config(config)
    probe = (
        ChannelTransport.keepalive_for(config, float(speed))
        if isinstance(keepalive_probe_s, str)
        else keepalive_probe_s
    )
    factory = transport_factory(
        clients,
        on_message=on_message,
        senders=senders,
        keepalive_probe_s=probe,
        close_grace_s=close_grace_s,
    )
    return AsyncGateway(
        factory, config, random=random, speed=speed, shutdown_timeout=shutdown_timeout
    )
