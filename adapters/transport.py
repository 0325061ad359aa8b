"""The socket surface heirline needs from a chat client, and its loopback implementation.

A :class:`Transport` is what a real client library implements (Baileys through
the Node binding, a Python WhatsApp library) and what the runtime adapter
drives: it turns the engine's ``OpenSocket`` / ``CloseSocket`` / ``Transmit``
effects into :meth:`Transport.open`, :meth:`Transport.close` and
:meth:`Transport.send`, and turns the :class:`TransportCallbacks` back into
``SocketOpened`` / ``SocketClosed`` / ``Activity`` / ``TransmitAcked`` /
``TransmitFailed`` events. No decision lives here.

Contract (every implementation):

* A socket is named by ``(account, attempt)``: the engine's attempt number is
  unique within the account. Sockets are single-use, as in Baileys: once
  closed one never reopens; a controller generation opens a new one for every
  connect and retry. Every callback echoes ``generation`` and ``attempt``.
* Every frame received on an open socket (a keepalive answer, an ack, any
  server frame) is reported with ``on_activity`` -- that is what the engine's
  watchdog runs on; a socket that shows nothing for too long is closed by the
  engine with status 499.
* ``open`` only starts connecting. Exactly one of these follows: ``on_open``
  (then, later, exactly one ``on_close``), or ``on_close`` directly (the
  connection or login failed).
* ``send`` never raises for channel trouble. Every call ends in exactly one
  ``on_ack`` or ``on_send_failed``. ``io_started`` is ``False`` only when no
  byte of the message left the process (socket unknown, not open, closed);
  once the frame may have been written it is ``True``, because the receiver
  may or may not have it.
* ``close`` closes the socket and reports ``on_close`` with the status it was
  given (as Baileys' ``sock.end(error)`` surfaces that error's status code in
  ``connection.update``); sends still waiting for their ack fail with
  ``io_started=True``.

Callbacks are plain synchronous methods, called on the event loop thread.

:class:`ChannelTransport` implements the contract over TCP against the
reference server in :mod:`heirline.adapters.channel`: one TCP connection per
socket, newline-delimited JSON frames (see ``docs/channel-server.md``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from heirline.adapters import frames
from heirline.adapters.jsonio import JsonError, loads
from heirline.core.engine import EngineConfig
from heirline.core.policy import Status

__all__ = [
    "DEFAULT_KEEPALIVE_S",
    "DEFAULT_MAX_LINE_BYTES",
    "STATUS_CONNECTION_CLOSED",
    "STATUS_TIMED_OUT",
    "ChannelTransport",
    "Transport",
    "TransportCallbacks",
]

_log = logging.getLogger(__name__)

#: Largest frame (one line, newline included) either side accepts.
DEFAULT_MAX_LINE_BYTES: Final = frames.DEFAULT_MAX_LINE_BYTES
#: Baileys ``DisconnectReason.timedOut``: reported when connecting or logging in times out.
STATUS_TIMED_OUT = Status.CONNECTION_LOST
#: Baileys ``DisconnectReason.connectionClosed``: the status a send on a closed socket carries.
STATUS_CONNECTION_CLOSED = Status.CONNECTION_CLOSED
#: The longest interval between keepalive pings (seconds); Baileys pings every 30 s.
DEFAULT_KEEPALIVE_S = 30.0
_PING: Final = frames.encode(frames.Ping())


@runtime_checkable
class TransportCallbacks(Protocol):
    """What a :class:`Transport` reports. Called synchronously on the event loop."""

    def on_open(
        self,
        account: str,
        generation: int,
        attempt: int,
        pn: str | None,
        lid: str | None,
        e164: str | None,
    ) -> None:
        """The socket is open and logged in as this self identity (any form may be missing)."""

    def on_close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        """The socket is closed for good, with the channel's status code if it gave one."""

    def on_activity(self, account: str, generation: int, attempt: int) -> None:
        """A frame arrived on the open socket: it is alive."""

    def on_ack(self, account: str, generation: int, attempt: int, message_id: str) -> None:
        """The channel acknowledged ``message_id`` sent through this socket."""

    def on_send_failed(
        self,
        account: str,
        generation: int,
        attempt: int,
        message_id: str,
        io_started: bool,
        error: str,
    ) -> None:
        """The send of ``message_id`` did not complete (``io_started``: it may have arrived)."""


@runtime_checkable
class Transport(Protocol):
    """The socket operations heirline needs; outcomes arrive through :class:`TransportCallbacks`."""

    async def open(self, account: str, generation: int, attempt: int) -> None:
        """Start connecting socket ``attempt`` for controller ``generation`` of ``account``."""

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
        """Send one message with a stable id; never raises for channel trouble."""

    async def close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        """Close the socket, reporting ``status`` through ``on_close``."""


@dataclass(slots=True, eq=False)
class _Socket:
    account: str
    generation: int
    attempt: int
    task: asyncio.Task[None] | None = None
    keepalive: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    is_open: bool = False
    finished: bool = False
    close_requested: bool = False
    close_status: int | None = None
    pending: dict[str, int] = field(default_factory=dict)


class ChannelTransport:
    """:class:`Transport` over TCP to a :class:`~heirline.adapters.channel.ChannelServer`.

    One TCP connection per ``(account, attempt)``. While a socket is open it
    pings the server every ``keepalive_s`` seconds (``None``: never), and every
    frame that comes back is reported as activity. Use ``async with`` (or
    :meth:`aclose`) so that no connection or task outlives the transport.
    """

    def __init__(
        self,
        port: int,
        callbacks: TransportCallbacks,
        *,
        host: str = "127.0.0.1",
        connect_timeout: float | int = 5.0,
        login_timeout: float | int = 5.0,
        write_timeout: float | int = 5.0,
        keepalive_s: float | int | None = DEFAULT_KEEPALIVE_S,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if keepalive_s is not None and not keepalive_s > 0:
            raise ValueError(f"keepalive_s must be > 0 or None, got {keepalive_s}")
        self._host = host
        self._port = port
        self._callbacks = callbacks
        self._connect_timeout = connect_timeout
        self._login_timeout = login_timeout
        self._write_timeout = write_timeout
        self._keepalive_s = keepalive_s
        self._max_line_bytes = max_line_bytes
        self._sockets: dict[tuple[str, int], _Socket] = {}
        self._closed = False

    @staticmethod
    def keepalive_for(config: EngineConfig | None, speed: float | int) -> float:
        """A ping interval (real seconds) that keeps an engine's watchdog fed at ``speed``.

        A third of the watchdog's silence limit in real time, at most
        :data:`DEFAULT_KEEPALIVE_S`: three pings may be lost before the watchdog fires.
        """
        if not 0 < speed < math.inf:
            raise ValueError(f"speed must be a finite number > 0, got {speed}")
        watchdog_ms = (config or EngineConfig()).lifecycle.watchdog_ms
        if watchdog_ms is None:
            return DEFAULT_KEEPALIVE_S
        return min(DEFAULT_KEEPALIVE_S, watchdog_ms / 1000 / speed / 3)

    async def __aenter__(self) -> ChannelTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def sockets(self) -> tuple[tuple[str, int], ...]:
        """Every socket ``(account, attempt)`` connecting or open, sorted."""
        return tuple(sorted(self._sockets))

    def is_open(self, account: str, attempt: int) -> bool:
        """True while that socket is logged in and not closed."""
        sock = self._sockets.get((account, attempt))
        return sock is not None and sock.is_open and not sock.finished

    async def open(self, account: str, generation: int, attempt: int) -> None:
        key = (account, attempt)
        if self._closed:
            raise RuntimeError("transport is closed")
        if key in self._sockets:
            raise ValueError(f"socket {account}#{attempt} is already open or opening")
        sock = _Socket(account, generation, attempt)
        self._sockets[key] = sock
        sock.task = asyncio.get_running_loop().create_task(
            self._run(sock), name=f"heirline-transport-{account}#{attempt}"
        )

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
        writer = None if sock is None else sock.writer
        if sock is None or writer is None or not sock.is_open or sock.finished:
            why = "no open socket"
        elif writer.is_closing():
            why = "socket is closing"
        else:
            why = ""
        if why:  # nothing was written: the caller may safely try elsewhere
            error = f"connection closed ({STATUS_CONNECTION_CLOSED}): {why}"
            self._safe_call(
                "on_send_failed", account, generation, attempt, message_id, False, error
            )
            return
        assert sock is not None
        assert writer is not None
        # the generation is the fencing token (docs/fleet.md)
        frame = frames.Send(message_id, chat, kind, payload, generation)
        sock.pending[message_id] = sock.pending.get(message_id, 0) + 1
        try:
            writer.write(frames.encode(frame))
            await asyncio.wait_for(writer.drain(), self._write_timeout)
        except (OSError, TimeoutError) as exc:
            self._fail_one(sock, message_id, f"write failed: {exc!r}")
            writer.close()

    async def close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        sock = self._sockets.get((account, attempt))
        if sock is None or sock.finished:
            return
        sock.close_requested = True
        sock.close_status = status
        if sock.writer is not None:
            sock.writer.close()
        elif sock.task is not None:
            sock.task.cancel()
        await self._await_socket(sock)
        if not sock.finished:  # the task was cancelled before it ever ran
            self._finish(sock, status)

    async def aclose(self) -> None:
        """Close every socket (each reports ``on_close(None)``) and wait for their tasks."""
        self._closed = True
        for sock in list(self._sockets.values()):
            await self.close(sock.account, sock.generation, sock.attempt, None)

    async def _await_socket(self, sock: _Socket) -> None:
        task = sock.task
        if task is None or task is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self._connect_timeout)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            # The socket's task was cancelled: its close is done. If *we* are being
            # cancelled (Ctrl-C), that must go on up, or the run carries on regardless.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        if not task.done():  # pragma: no cover - the socket task ignored its close
            task.cancel()

    async def _run(self, sock: _Socket) -> None:
        status: int | None = None
        try:
            status = await self._connect_and_serve(sock)
        except asyncio.CancelledError:
            if not sock.close_requested:
                raise
        finally:
            if sock.close_requested:
                status = sock.close_status
            self._finish(sock, status)

    async def _connect_and_serve(self, sock: _Socket) -> int | None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, limit=self._max_line_bytes),
                self._connect_timeout,
            )
        except TimeoutError:
            return STATUS_TIMED_OUT
        except OSError as exc:
            _log.info("connect %s#%s failed: %r", sock.account, sock.attempt, exc)
            return None
        sock.writer = writer
        if sock.close_requested:  # pragma: no cover - close() raced the connect
            return sock.close_status
        login = frames.Login(sock.account, sock.generation)
        try:
            writer.write(frames.encode(login))
            first = await asyncio.wait_for(self._read_frame(reader), self._login_timeout)
        except TimeoutError:
            return STATUS_TIMED_OUT
        except OSError:
            return None
        if first is None:
            return None
        ready = frames.decode_server(first)
        if not isinstance(ready, frames.Ready):
            return ready.status if isinstance(ready, frames.Closed) else None
        sock.is_open = True
        self._safe_call(
            "on_open", sock.account, sock.generation, sock.attempt, ready.pn, ready.lid, ready.e164
        )
        if self._keepalive_s is not None:
            sock.keepalive = asyncio.get_running_loop().create_task(
                self._ping(sock, writer, self._keepalive_s),
                name=f"heirline-keepalive-{sock.account}#{sock.attempt}",
            )
        return await self._serve(sock, reader)

    async def _ping(self, sock: _Socket, writer: asyncio.StreamWriter, every: float) -> None:
        """Ping the server while the socket is open; a write that fails ends the pings."""
        while sock.is_open and not sock.finished and not writer.is_closing():
            await asyncio.sleep(every)
            if not sock.is_open or sock.finished or writer.is_closing():
                return
            try:
                writer.write(_PING)
                await asyncio.wait_for(writer.drain(), self._write_timeout)
            except (OSError, TimeoutError):
                return

    async def _serve(self, sock: _Socket, reader: asyncio.StreamReader) -> int | None:
        while True:
            try:
                frame = await self._read_frame(reader)
            except OSError:
                return None
            if frame is None:
                return None
            got = frames.decode_server(frame)
            if isinstance(got, frames.Closed):
                return got.status
            self._safe_call("on_activity", sock.account, sock.generation, sock.attempt)
            if isinstance(got, frames.Ack):
                self._ack(sock, got.id)
            elif isinstance(got, frames.Error) and got.id is not None:
                self._fail_one(sock, got.id, f"server refused: {got.message}")
            elif isinstance(got, frames.Error):
                _log.warning("server error on %s#%s: %s", sock.account, sock.attempt, got.message)
            elif got is None:
                _log.warning(
                    "ignored frame %r on %s#%s", frame.get("t"), sock.account, sock.attempt
                )

    async def _read_frame(self, reader: asyncio.StreamReader) -> dict[str, object] | None:
        """The next JSON object frame, or ``None`` at end of stream; skips what is not one."""
        for _ in range(1_000_000):  # bounded: a frame or EOF comes long before
            try:
                line = await reader.readline()
            except ValueError:  # over the line limit: the stream cannot be resynchronised
                return None
            if not line:
                return None
            try:
                frame = loads(line)
            except JsonError:
                _log.warning("ignored non-JSON line from server")
                continue
            if isinstance(frame, dict):
                return frame
        return None  # pragma: no cover

    def _ack(self, sock: _Socket, message_id: object) -> None:
        if not isinstance(message_id, str) or sock.pending.get(message_id, 0) <= 0:
            _log.warning("unexpected ack %r on %s#%s", message_id, sock.account, sock.attempt)
            return
        self._take_pending(sock, message_id)
        self._safe_call("on_ack", sock.account, sock.generation, sock.attempt, message_id)

    def _fail_one(self, sock: _Socket, message_id: str, error: str) -> None:
        if sock.pending.get(message_id, 0) <= 0:
            return
        self._take_pending(sock, message_id)
        self._safe_call(
            "on_send_failed", sock.account, sock.generation, sock.attempt, message_id, True, error
        )

    @staticmethod
    def _take_pending(sock: _Socket, message_id: str) -> None:
        left = sock.pending[message_id] - 1
        if left:
            sock.pending[message_id] = left
        else:
            del sock.pending[message_id]

    def _finish(self, sock: _Socket, status: int | None) -> None:
        if sock.finished:  # pragma: no cover - _run finishes once
            return
        sock.finished = True
        sock.is_open = False
        if sock.keepalive is not None:
            sock.keepalive.cancel()
        if sock.writer is not None:
            sock.writer.close()
        if self._sockets.get((sock.account, sock.attempt)) is sock:
            del self._sockets[(sock.account, sock.attempt)]
        # The close first: a consumer that re-routes the failed sends below must already
        # know this socket is gone, or it would send them straight back into it.
        self._safe_call("on_close", sock.account, sock.generation, sock.attempt, status)
        pending, sock.pending = sock.pending, {}
        for message_id, count in pending.items():
            for _ in range(count):
                self._safe_call(
                    "on_send_failed",
                    sock.account,
                    sock.generation,
                    sock.attempt,
                    message_id,
                    True,
                    f"connection closed (status {status}) before the ack",
                )

    def _safe_call(self, name: str, *args: object) -> None:
        """Call one callback; a callback that raises is logged, never kills the socket task."""
        try:
            getattr(self._callbacks, name)(*args)
        except Exception:
            _log.exception("transport callback %s raised", name)
