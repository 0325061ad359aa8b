"""A stand-in for neonize's Go library, so real ``NewAClient`` objects run without a network.

neonize's async client calls its Go core through one module global,
``neonize.aioze.client.async_gocode``: every FFI function there is a coroutine
(``asyncio.to_thread`` around the ctypes call) returning the serialized
protobuf answer. :class:`FakeGo` implements the functions the heirline adapter
reaches, the same way, so everything above it is neonize's own code: its
``connect()`` (which binds the event dispatcher and starts the run), its
ctypes event callback, ``Event.execute`` decoding the bytes into its event
classes, ``get_me()``, ``send_message()``, ``mark_read()``, ``stop()``.

A *run* is one ``Neonize()`` call, as in Go: it blocks until ``Stop``. Events
are emitted the way Go emits them: serialized, from a worker thread, through
the ctypes callback that ``connect()`` created, and only if the run subscribed
to that event code. Calls Go would crash on (``GetMe`` of a stopped client)
raise here, so a test fails instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from neonize.aioze.client import NewAClient
from neonize.events import EVENT_TO_INT
from neonize.proto.Neonize_pb2 import (
    JID,
    Device,
    SendMessageReturnFunction,
    SendResponse,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

#: The self identity the fake's device store holds (device 7 of a PN and its LID).
PN = JID(User="15550001111", Server="s.whatsapp.net", Device=7, RawAgent=0, Integrator=0)
LID = JID(User="123456789012345", Server="lid", Device=7, RawAgent=0, Integrator=0)

#: ctypes callback neonize builds for events: (uuid, address, size, code).
EventCallback = Callable[[bytes, int, int, int], None]


def complete(message: Any) -> Any:
    """Fill every unset required field with its zero value, as neonize's Go encoders do.

    neonize's protobuf schema is proto2 with required fields; its Go side sets
    every field it encodes (zero values included), so a test builds an event
    with the fields that matter and this makes it one Go could have sent.
    """
    for fd in message.DESCRIPTOR.fields:
        if fd.message_type is not None:
            if fd.is_repeated:
                for child in getattr(message, fd.name):
                    complete(child)
            elif fd.is_required or message.HasField(fd.name):
                child = getattr(message, fd.name)
                child.SetInParent()
                complete(child)
        elif fd.is_required and not message.HasField(fd.name):
            setattr(message, fd.name, fd.default_value)
    return message


@dataclass(eq=False)
class FakeRun:
    """One ``Neonize()`` call: alive until stopped or ended."""

    uuid: bytes
    event_cb: EventCallback
    subscribed: frozenset[int]
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    error: str = ""

    @property
    def alive(self) -> bool:
        return not self.stopped.is_set()

    async def emit(self, message: object) -> bool:
        """Deliver one event as Go does; ``False`` if the run did not subscribe to it."""
        code = EVENT_TO_INT[type(message)]
        if code not in self.subscribed:
            return False
        data = complete(message).SerializeToString()
        buf = ctypes.create_string_buffer(data, max(len(data), 1))
        await asyncio.to_thread(self.event_cb, self.uuid, ctypes.addressof(buf), len(data), code)
        return True

    def end(self, error: str = "") -> None:
        """The Go call returns by itself (``error``: what it returned)."""
        self.error = error
        self.stopped.set()


class FakeGo:
    """The FFI functions of ``async_gocode`` the adapter uses, in memory."""

    def __init__(self, me: Device | None = None) -> None:
        self.me: Device = complete(
            me if me is not None else Device(JID=PN, LID=LID, PushName="test")
        )
        self.runs: list[FakeRun] = []
        self.live: dict[bytes, FakeRun] = {}
        self.sent: list[tuple[bytes, JID, WAMessage]] = []
        self.read: list[tuple[bytes, list[str], JID, JID, bytes]] = []
        self.calls: list[str] = []
        #: Outcomes of the next sends: an error string (whatsmeow's) instead of an ack.
        self.send_errors: deque[str] = deque()
        #: While set, sends wait (in flight) until it is cleared or the client disconnects.
        self.hold_sends = False
        #: ``Stop`` does not end the run (a Go call that hangs).
        self.stop_hangs = False
        #: ``Disconnect`` fails the sends waiting for their ack (whatsmeow does).
        self.disconnect_releases = True
        self._released = asyncio.Event()
        self._ids = itertools.count(1)

    def client(self, name: str) -> NewAClient:
        """A real ``NewAClient`` wired to this fake (neonize reads the global at construction)."""
        import neonize.aioze.client as aioze_client

        saved = aioze_client.async_gocode
        aioze_client.async_gocode = self  # type: ignore[assignment]
        try:
            return NewAClient(name)
        finally:
            aioze_client.async_gocode = saved

    def run(self, index: int = -1) -> FakeRun:
        return self.runs[index]

    def release_sends(self) -> None:
        """Let every send waiting in ``hold_sends`` return (as failed after I/O)."""
        self._released.set()

    # ------------------------------------------------------------ FFI

    async def Neonize(
        self,
        name: bytes,
        uuid: bytes,
        jid: bytes,
        jid_size: int,
        new_device: int,
        log_level: bytes,
        qr_cb: object,
        login_cb: object,
        event_cb: EventCallback,
        log_cb: object,
        subscribers: object,
        n_subscribers: int,
        device_props: bytes,
        n_device_props: int,
        pair_phone: bytes,
        n_pair_phone: int,
        proxy: object,
    ) -> bytes:
        self.calls.append("Neonize")
        subscribed = frozenset(bytes(subscribers)[:n_subscribers])  # type: ignore[call-overload]
        run = FakeRun(uuid, event_cb, subscribed)
        self.runs.append(run)
        self.live[uuid] = run
        await run.stopped.wait()
        if self.live.get(uuid) is run:
            del self.live[uuid]
        return run.error.encode()

    async def Stop(self, uuid: bytes) -> bytes:
        self.calls.append("Stop")
        run = self.live.pop(uuid, None)
        if self.disconnect_releases:
            self._released.set()
        if run is not None and not self.stop_hangs:
            run.stopped.set()
        return b""

    async def Disconnect(self, uuid: bytes) -> int:
        self.calls.append("Disconnect")
        if self.disconnect_releases:
            self._released.set()  # whatsmeow fails the sends waiting for their ack
        return 0

    async def GetMe(self, uuid: bytes) -> bytes:
        self.calls.append("GetMe")
        if uuid not in self.live:
            raise RuntimeError("GetMe on a stopped client: the Go library would panic here")
        return bytes(self.me.SerializeToString())

    async def SendMessage(
        self, uuid: bytes, to: bytes, to_size: int, message: bytes, message_size: int
    ) -> bytes:
        self.calls.append("SendMessage")
        if uuid not in self.live:
            return _answer(Error="client is nil")
        self.sent.append((uuid, JID.FromString(to), WAMessage.FromString(message)))
        if self.hold_sends:
            self._released.clear()
            await self._released.wait()
            return _answer(Error="websocket disconnected before message send returned response")
        if self.send_errors:
            return _answer(Error=self.send_errors.popleft())
        response = SendResponse(ID=f"3EB0{next(self._ids):016X}", Timestamp=1_700_000_000)
        return _answer(SendResponse=response)

    async def MarkRead(
        self,
        uuid: bytes,
        ids: bytes,
        timestamp: int,
        chat: bytes,
        chat_size: int,
        sender: bytes,
        sender_size: int,
        receipt: bytes,
    ) -> bytes:
        self.calls.append("MarkRead")
        self.read.append(
            (uuid, ids.decode().split(" "), JID.FromString(chat), JID.FromString(sender), receipt)
        )
        return b""

    def __getattr__(self, name: str) -> object:
        raise AttributeError(
            f"FakeGo has no {name}: the adapter reached a neonize call it should not"
        )


def _answer(**fields: Any) -> bytes:
    """A ``SendMessageReturnFunction`` as the Go side returns it."""
    return bytes(complete(SendMessageReturnFunction(**fields)).SerializeToString())
