"""The loopback reference channel server: the upstream service, as far as heirline cares.

A real TCP server on 127.0.0.1 (asyncio streams) speaking newline-delimited
JSON frames. Accounts have a self identity (PN JID, LID, E.164); a connection
logs in as an account and is then bound to the identity the account had at
that moment. Messages are acknowledged by id, repeated ids are deduplicated
per identity, and a :class:`Ledger` keeps what every identity received. Tests
and the demo drive the server from Python (:meth:`ChannelServer.close_account`,
:meth:`ChannelServer.relink`, ...) and optionally let seeded chaos close, drop
and relink connections. Every loop is bounded in count and time. The identities and
the ledger live in :mod:`heirline.adapters.ledger` (re-exported here).

The wire protocol is documented in ``docs/channel-server.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from heirline.adapters import frames
from heirline.adapters.jsonio import JsonError, loads
from heirline.adapters.ledger import Identity, IdentityLedger, Ledger, LedgerEntry, LedgerSummary

__all__ = [
    "DEFAULT_CHAOS_STATUSES",
    "ChannelServer",
    "Fenced",
    "ChaosAction",
    "ChaosConfig",
    "ChaosDecider",
    "ChaosEvent",
    "Identity",
    "IdentityLedger",
    "Ledger",
    "LedgerEntry",
    "LedgerSummary",
    "SendChaos",
    "ServerRecord",
]

_log = logging.getLogger(__name__)

#: The Baileys close codes chaos picks from (connectionLost, connectionClosed,
#: badSession, unavailableService, restartRequired, connectionReplaced, loggedOut).
DEFAULT_CHAOS_STATUSES: tuple[int, ...] = (408, 428, 500, 503, 515, 440, 401)
_STATUS_LOGGED_OUT = 401
_STATUS_REPLACED = 440


# --------------------------------------------------------------------------- chaos


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosConfig:
    """Seeded chaos. Per tick, one of close / drop / relink (or nothing) by probability;
    per send, an ack delay from ``ack_delay_ms`` and a drop after recording with
    ``send_drop_probability``. Chaos stops after ``max_events`` actions or
    ``max_seconds``, whichever comes first.
    """

    seed: int = 0
    close_probability: float | int = 0.1
    statuses: tuple[int, ...] = DEFAULT_CHAOS_STATUSES
    ack_delay_ms: tuple[int, int] = (0, 0)
    drop_probability: float | int = 0.0
    relink_probability: float | int = 0.0
    send_drop_probability: float | int = 0.0
    tick_ms: int = 50
    max_events: int = 100
    max_seconds: float | int = 10.0

    def __post_init__(self) -> None:
        probabilities = (
            self.close_probability,
            self.drop_probability,
            self.relink_probability,
            self.send_drop_probability,
        )
        if any(not 0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError("chaos probabilities must be within [0, 1]")
        if self.close_probability + self.drop_probability + self.relink_probability > 1.0:
            raise ValueError("close + drop + relink probabilities must not exceed 1")
        if not self.statuses:
            raise ValueError("chaos needs at least one close status")
        low, high = self.ack_delay_ms
        if not 0 <= low <= high:
            raise ValueError(f"ack_delay_ms must be 0 <= low <= high, got {self.ack_delay_ms}")
        if self.tick_ms < 1 or self.max_events < 0 or not self.max_seconds > 0:
            raise ValueError("tick_ms >= 1, max_events >= 0 and max_seconds > 0 are required")


@dataclass(frozen=True, slots=True)
class ChaosAction:
    """One decision of the chaos loop (``identity`` is the relink target)."""

    kind: Literal["close", "drop", "relink"]
    account: str
    status: int | None = None
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class SendChaos:
    """The chaos decision for one received message."""

    ack_delay_ms: int
    drop: bool


@dataclass(frozen=True, slots=True)
class ChaosEvent:
    """A chaos action carried out: when (ms since start) and on how many connections."""

    at_ms: int
    action: ChaosAction
    connections: int


class ChaosDecider:
    """The decisions of seeded chaos, separate from timing (so they can be tested alone).

    Tick decisions and send decisions draw from two independent generators
    derived from the seed, so one sequence does not depend on how the other
    interleaves with it in real time.
    """

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self._tick_rng = random.Random(f"heirline-chaos:{config.seed}:tick")
        self._send_rng = random.Random(f"heirline-chaos:{config.seed}:send")
        self.events = 0

    @property
    def exhausted(self) -> bool:
        return self.events >= self.config.max_events

    def tick(self, accounts: Sequence[str]) -> ChaosAction | None:
        """Decide what happens now to one of ``accounts`` (pass them in a stable order)."""
        if self.exhausted:
            return None
        cfg = self.config
        roll = self._tick_rng.random()
        if not accounts:
            return None
        account = accounts[self._tick_rng.randrange(len(accounts))]
        action: ChaosAction | None
        if roll < cfg.close_probability:
            action = ChaosAction("close", account, self._tick_rng.choice(cfg.statuses))
        elif roll < cfg.close_probability + cfg.drop_probability:
            action = ChaosAction("drop", account)
        elif roll < cfg.close_probability + cfg.drop_probability + cfg.relink_probability:
            number = self._tick_rng.randrange(10**9, 10**10)
            lid = self._tick_rng.randrange(10**14, 10**15)
            target = Identity(f"1{number}@s.whatsapp.net", f"{lid}@lid", f"+1{number}")
            action = ChaosAction("relink", account, _STATUS_LOGGED_OUT, target)
        else:
            action = None
        if action is not None:
            self.events += 1
        return action

    def on_send(self) -> SendChaos:
        """Decide the ack delay and whether to drop the connection after recording."""
        low, high = self.config.ack_delay_ms
        delay = self._send_rng.randint(low, high)
        drop = self._send_rng.random() < self.config.send_drop_probability
        if self.exhausted:
            return SendChaos(0, False)
        if drop:
            self.events += 1
        return SendChaos(delay, drop)


# --------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """One thing the server saw or did (ms since start), for timelines and debugging."""

    at_ms: int
    kind: str
    account: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Fenced:
    """A login or send the server refused because its fencing token was stale.

    ``token`` is the generation it carried, ``newest`` the newest the server had
    seen for the account; ``message_id`` is ``None`` for a login.
    """

    account: str
    token: int
    newest: int
    message_id: str | None


@dataclass(slots=True)
class _Account:
    name: str
    identity: Identity
    logged_out: bool = False
    ack_delay_ms: int | None = None
    fence: int = 0  # the newest fencing token (generation) seen for the account
    connections: set[_Connection] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class _Connection:
    cid: int
    writer: asyncio.StreamWriter
    task: asyncio.Task[Any] | None
    account: str | None = None
    identity: Identity | None = None
    token: int | None = None  # the generation the connection logged in with
    closed: bool = False
    silent: bool = False  # half-open: nothing it sends arrives, nothing is answered
    closed_event: asyncio.Event = field(default_factory=asyncio.Event)
    acks: set[asyncio.Task[None]] = field(default_factory=set)  # delayed acks on their way


class ChannelServer:
    """The reference channel server. ``async with ChannelServer() as server: server.port``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_line_bytes: int = frames.DEFAULT_MAX_LINE_BYTES,
        max_connections: int = 1024,
        replace_on_login: bool = False,
        write_timeout: float | int = 5.0,
        chaos: ChaosConfig | None = None,
        record_limit: int = 10_000,
        fencing: bool = False,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the reference server listens on loopback only, not {host}")
        self._host = host
        self._requested_port = port
        self._max_line_bytes = max_line_bytes
        self._max_connections = max_connections
        self._replace_on_login = replace_on_login
        self._fencing = fencing
        self._write_timeout = write_timeout
        self._initial_chaos = chaos
        self._server: asyncio.base_events.Server | None = None
        self._accounts: dict[str, _Account] = {}
        self._connections: dict[int, _Connection] = {}
        self._ids = itertools.count(1)
        self._ack_delay_ms = 0
        self._chaos: ChaosDecider | None = None
        self._chaos_task: asyncio.Task[None] | None = None
        self._chaos_deadline = 0.0
        self._chaos_events: list[ChaosEvent] = []
        self._started_at = 0.0
        self._stopping = False
        self.records: deque[ServerRecord] = deque(maxlen=record_limit)
        self.ledger = Ledger()
        #: With ``fencing``: every login and send refused for a stale token, in order.
        self.fenced: list[Fenced] = []
        #: Sends recorded in the ledger, by ``(account, token)`` (``token`` None: it had none).
        self.sends_by_token: dict[tuple[str, int | None], int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ChannelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> int:
        """Listen and return the bound port (a free one when ``port`` was 0)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        self._stopping = False
        self._server = await asyncio.start_server(
            self._handle, self._host, self._requested_port, limit=self._max_line_bytes
        )
        self._record("start", None, f"listening on {self._host}:{self.port}")
        if self._initial_chaos is not None:
            self.start_chaos(self._initial_chaos)
        return self.port

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop listening, close every connection, cancel and await every task."""
        self._stopping = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.stop_chaos()
        tasks = []
        for conn in list(self._connections.values()):
            # Closing wakes the handler (EOF, or an ack delay cut short); it then returns.
            self._close_connection(conn, None)
            if conn.task is not None and conn.task is not asyncio.current_task():
                tasks.append(conn.task)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self._write_timeout)
            for task in stuck:  # pragma: no cover - a handler ignored its closed connection
                task.cancel()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), self._write_timeout)
        self._record("stop", None, "stopped")

    # ------------------------------------------------------------------ accounts

    def add_account(
        self, account: str, pn: str | None = None, lid: str | None = None, e164: str | None = None
    ) -> Identity:
        """Register (or re-register) ``account``, logged in as this identity."""
        identity = Identity(pn, lid, e164)
        existing = self._accounts.get(account)
        if existing is None:
            self._accounts[account] = _Account(account, identity)
        else:
            existing.identity = identity
            existing.logged_out = False
        self._record("account", account, str(identity))
        return identity

    def identity_of(self, account: str) -> Identity | None:
        """The identity a login of ``account`` gets now (``None``: unknown or logged out)."""
        acct = self._accounts.get(account)
        return None if acct is None or acct.logged_out else acct.identity

    def connection_count(self, account: str | None = None) -> int:
        """Live logged-in connections of ``account`` (all connections when ``None``)."""
        if account is None:
            return sum(1 for c in self._connections.values() if not c.closed)
        acct = self._accounts.get(account)
        return 0 if acct is None else sum(1 for c in acct.connections if not c.closed)

    def close_account(self, account: str, status: int | None) -> int:
        """Close the account's live connections with ``status`` (``None``: drop, EOF only)."""
        acct = self._account(account)
        closed = 0
        for conn in list(acct.connections):
            closed += self._close_connection(conn, status)
        self._record("close", account, f"status {status} on {closed} connection(s)")
        return closed

    def half_open(self, account: str) -> int:
        """The account's live connections go half-open: still connected, but nothing the
        client sends arrives and nothing comes back (no pong, no ack, no close). Only the
        client's watchdog can tell. Returns how many connections went silent."""
        acct = self._account(account)
        silent = [c for c in acct.connections if not c.closed]
        for conn in silent:
            conn.silent = True
        self._record("half_open", account, f"{len(silent)} connection(s) silent")
        return len(silent)

    def drop_account(self, account: str) -> int:
        """Drop the account's connections without a status (the client just sees EOF)."""
        return self.close_account(account, None)

    def logout(self, account: str, status: int | None = _STATUS_LOGGED_OUT) -> int:
        """Log the account out: connections close with ``status``; logins then get 401."""
        acct = self._account(account)
        acct.logged_out = True
        return self.close_account(account, status)

    def relink(
        self,
        account: str,
        pn: str | None,
        lid: str | None,
        e164: str | None,
        status: int | None = _STATUS_LOGGED_OUT,
    ) -> int:
        """The account now logs in as another identity; live connections close with ``status``."""
        acct = self._account(account)
        acct.identity = Identity(pn, lid, e164)
        acct.logged_out = False
        self._record("relink", account, str(acct.identity))
        return self.close_account(account, status)

    def set_ack_delay(self, delay_ms: int, account: str | None = None) -> None:
        """Delay acks by ``delay_ms`` (for one account, or the default for all)."""
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        if account is None:
            self._ack_delay_ms = delay_ms
        else:
            self._account(account).ack_delay_ms = delay_ms

    def _account(self, account: str) -> _Account:
        try:
            return self._accounts[account]
        except KeyError:
            raise KeyError(f"unknown account {account!r}") from None

    # ------------------------------------------------------------------ chaos

    def start_chaos(self, config: ChaosConfig) -> None:
        """Start the seeded chaos loop; it stops by itself (``max_events`` / ``max_seconds``)."""
        if self._chaos_task is not None and not self._chaos_task.done():
            raise RuntimeError("chaos is already running")
        loop = asyncio.get_running_loop()
        self._chaos = ChaosDecider(config)
        self._chaos_deadline = loop.time() + config.max_seconds
        self._chaos_task = loop.create_task(self._chaos_loop(self._chaos), name="heirline-chaos")

    @property
    def chaos_events(self) -> tuple[ChaosEvent, ...]:
        return tuple(self._chaos_events)

    @property
    def chaos_running(self) -> bool:
        return self._chaos_task is not None and not self._chaos_task.done()

    async def wait_chaos(self, timeout: float | int) -> tuple[ChaosEvent, ...]:
        """Wait (at most ``timeout`` s) for the chaos loop to stop by itself."""
        task = self._chaos_task
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        return self.chaos_events

    async def stop_chaos(self) -> None:
        task, self._chaos_task = self._chaos_task, None
        self._chaos = None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this caller is being cancelled too: pass it on

    def _chaos_active(self) -> ChaosDecider | None:
        decider = self._chaos
        if decider is None or decider.exhausted:
            return None
        if asyncio.get_running_loop().time() >= self._chaos_deadline:
            return None
        return decider

    async def _chaos_loop(self, decider: ChaosDecider) -> None:
        loop = asyncio.get_running_loop()
        tick = decider.config.tick_ms / 1000
        max_ticks = int(decider.config.max_seconds / tick) + 1
        for _ in range(max_ticks):
            remaining = self._chaos_deadline - loop.time()
            if decider.exhausted or remaining <= 0:
                break
            await asyncio.sleep(min(tick, remaining))
            if loop.time() >= self._chaos_deadline:
                break
            connected = sorted(a.name for a in self._accounts.values() if a.connections)
            action = decider.tick(connected)
            if action is not None:
                self._apply_chaos(action)
        self._record("chaos", None, f"stopped after {decider.events} event(s)")

    def _apply_chaos(self, action: ChaosAction) -> None:
        if action.kind == "relink":
            assert action.identity is not None
            target = action.identity
            count = self.relink(action.account, target.pn, target.lid, target.e164, action.status)
        else:
            count = self.close_account(action.account, action.status)
        self._chaos_events.append(ChaosEvent(self._now_ms(), action, count))

    # ------------------------------------------------------------------ connections

    def _now_ms(self) -> int:
        return round((asyncio.get_running_loop().time() - self._started_at) * 1000)

    def _record(self, kind: str, account: str | None, detail: str) -> None:
        try:
            at_ms = self._now_ms()
        except RuntimeError:  # called outside the event loop (setup code): not timestamped
            at_ms = 0
        self.records.append(ServerRecord(at_ms, kind, account, detail))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(next(self._ids), writer, asyncio.current_task())
        if self._stopping or len(self._connections) >= self._max_connections:
            writer.write(frames.encode(frames.Error("server busy")))
            writer.close()
            return
        self._connections[conn.cid] = conn
        try:
            await self._serve(conn, reader)
        except (OSError, TimeoutError) as exc:
            _log.info("connection %s ended: %r", conn.cid, exc)
        finally:
            self._close_connection(conn, None)
            if conn.acks:  # woken by the close: they end at once, writing nothing
                await asyncio.wait(set(conn.acks), timeout=self._write_timeout)
            self._connections.pop(conn.cid, None)

    async def _serve(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        # Bounded by the connection's life: each turn consumes one line or ends the loop.
        while not conn.closed:
            try:
                line = await reader.readline()
            except ValueError:
                await self._send_error(conn, f"line longer than {self._max_line_bytes} bytes")
                self._close_connection(conn, None)
                return
            if not line or conn.closed:
                return
            if not line.strip() or conn.silent:
                continue  # a half-open connection: what the client sends never arrives
            try:
                frame = frames.decode_client(loads(line))
            except JsonError:
                await self._send_error(conn, "frame is not JSON")
                continue
            except frames.FrameError as exc:
                await self._send_error(conn, exc.message, exc.message_id)
                continue
            if isinstance(frame, frames.Login):
                await self._on_login(conn, frame)
            elif isinstance(frame, frames.Send):
                await self._on_send(conn, frame)
            else:
                await self._write(conn, frames.Pong())

    async def _on_login(self, conn: _Connection, frame: frames.Login) -> None:
        name = frame.account
        if conn.account is not None:
            await self._send_error(conn, "already logged in")
            return
        acct = self._accounts.get(name)
        if acct is None or acct.logged_out:
            self._record("login", name, "refused: unknown or logged out")
            self._close_connection(conn, _STATUS_LOGGED_OUT)
            return
        token = frame.generation
        if token is not None and self._stale(acct, token, None):
            await self._send_error(
                conn, f"stale fencing token: generation {token} < newest {acct.fence}"
            )
            self._close_connection(conn, _STATUS_REPLACED)
            return
        conn.token = token
        if self._replace_on_login:
            for other in list(acct.connections):
                self._close_connection(other, _STATUS_REPLACED)
        conn.account = name
        conn.identity = acct.identity
        acct.connections.add(conn)
        self._record("login", name, f"connection {conn.cid} as {acct.identity}")
        identity = acct.identity
        await self._write(conn, frames.Ready(identity.pn, identity.lid, identity.e164))

    async def _on_send(self, conn: _Connection, frame: frames.Send) -> None:
        message_id, chat, kind, payload = frame.id, frame.chat, frame.kind, frame.payload
        identity = conn.identity
        if conn.account is None or identity is None:
            await self._send_error(conn, "send before login", message_id)
            return
        if not identity.authenticated:
            await self._send_error(conn, "not authenticated", message_id)
            return
        token = frame.generation if frame.generation is not None else conn.token
        acct = self._accounts.get(conn.account)
        if acct is not None and token is not None and self._stale(acct, token, message_id):
            await self._send_error(
                conn,
                f"stale fencing token: generation {token} < newest {acct.fence}",
                message_id,
            )
            return
        key = (conn.account, token)
        self.sends_by_token[key] = self.sends_by_token.get(key, 0) + 1
        decider = self._chaos_active()
        chaos = decider.on_send() if decider is not None else SendChaos(0, False)
        fresh = self.ledger.record(identity, conn.account, message_id, chat, kind, payload)
        self._record(
            "send", conn.account, f"{message_id} -> {identity} ({'new' if fresh else 'dup'})"
        )
        if chaos.drop:
            count = self._close_connection(conn, None)
            action = ChaosAction("drop", conn.account)
            self._chaos_events.append(ChaosEvent(self._now_ms(), action, count))
            return
        base = (
            self._ack_delay_ms if acct is None or acct.ack_delay_ms is None else acct.ack_delay_ms
        )
        delay = max(base, chaos.ack_delay_ms)
        if not delay:
            await self._write(conn, frames.Ack(message_id))
            return
        # A delayed ack does not hold up the connection: later frames (pings, sends) are
        # read and answered meanwhile, and a client that hangs up is noticed at once.
        task = asyncio.get_running_loop().create_task(
            self._ack_later(conn, message_id, delay), name=f"heirline-ack-{conn.cid}"
        )
        conn.acks.add(task)
        task.add_done_callback(conn.acks.discard)

    def _stale(self, acct: _Account, token: int, message_id: str | None) -> bool:
        """With fencing: whether ``token`` is older than the account's newest (then refused);
        a newer one becomes the newest. Without fencing nothing is stale."""
        if not self._fencing:
            return False
        if token < acct.fence:
            self.fenced.append(Fenced(acct.name, token, acct.fence, message_id))
            what = "login" if message_id is None else f"send {message_id}"
            self._record("fenced", acct.name, f"{what}: generation {token} < {acct.fence}")
            return True
        acct.fence = token
        return False

    async def _ack_later(self, conn: _Connection, message_id: str, delay_ms: int) -> None:
        """Ack after ``delay_ms``, cut short (and unwritten) when the connection closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.closed_event.wait(), delay_ms / 1000)
        await self._write(conn, frames.Ack(message_id))

    async def _send_error(
        self, conn: _Connection, message: str, message_id: str | None = None
    ) -> None:
        self._record("error", conn.account, message)
        await self._write(conn, frames.Error(message, message_id))

    async def _write(self, conn: _Connection, frame: frames.ServerFrame) -> None:
        if conn.closed or conn.silent or conn.writer.is_closing():
            return
        conn.writer.write(frames.encode(frame))
        try:
            await asyncio.wait_for(conn.writer.drain(), self._write_timeout)
        except (OSError, TimeoutError):
            self._close_connection(conn, None)

    def _close_connection(self, conn: _Connection, status: int | None) -> int:
        """Send ``closed`` (when ``status`` is given) and close; 1 if it was live, else 0."""
        if conn.closed:
            return 0
        conn.closed = True
        conn.closed_event.set()
        if conn.account is not None:
            acct = self._accounts.get(conn.account)
            if acct is not None:
                acct.connections.discard(conn)
        if not conn.writer.is_closing():
            if status is not None:
                conn.writer.write(frames.encode(frames.Closed(status)))
            conn.writer.close()
        return 1
