"""Fleet chaos: gateway processes sharing one redis-server and one channel server.

Three (by default) ``heirline.adapters.fleet_worker`` processes serve the same
accounts through leases in Redis while replies flow; at seeded random moments
one is killed with SIGKILL (and restarted) or stopped with SIGSTOP past its
lease's TTL (and continued). Then capturing stops, the fleet settles, every
worker is stopped with SIGTERM, and the receiver's ledger and the journals in
Redis are the ground truth: every reply a worker reported captured (it was in
Redis by then) must have ended exactly once, be in the ledger under its
account's identity if it was delivered, and nothing may reach another
identity. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis_server import RedisServer

from heirline.adapters.channel import ChannelServer, Identity
from heirline.adapters.fleet_store import keys

__all__ = ["ChaosReport", "ChaosSize", "run_chaos"]


@dataclass(frozen=True, slots=True)
class ChaosSize:
    accounts: int
    seconds: float
    workers: int = 3
    ttl_ms: int = 600
    capture_every_ms: int = 25
    max_kills: int = 20
    max_stops: int = 5
    pause_s: tuple[float, float] = (0.4, 0.9)
    settle_s: float = 30.0
    #: Kill redis-server (SIGKILL) once, after the first kill, and start it again there.
    #: Give run_chaos a RedisServer with an ``aof_dir`` then: Redis keeps what it answered.
    redis_restart: bool = False


@dataclass(slots=True)
class ChaosReport:
    size: ChaosSize
    seed: int
    captured: int = 0
    states: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    open_left: int = 0
    outcomes_reported_twice: list[str] = field(default_factory=list)
    delivered_not_in_ledger: list[str] = field(default_factory=list)
    in_ledger_not_captured: int = 0
    wrong_identity: list[str] = field(default_factory=list)
    cross_identity: int = 0
    resends_deduplicated: int = 0
    fenced: int = 0
    kills: int = 0
    stops: int = 0
    redis_restarts: int = 0
    takeovers_ms: list[float] = field(default_factory=list)
    #: Accounts a killed or stopped process held that no other process took afterwards.
    never_taken: int = 0
    errors: list[str] = field(default_factory=list)
    #: Replies that ended other than delivered, with the outcome a worker reported.
    not_delivered: dict[str, str] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.takeovers_ms)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        median = statistics.median(self.takeovers_ms) if self.takeovers_ms else 0.0
        return (
            f"fleet chaos (seed {self.seed}): {self.size.workers} processes, "
            f"{self.size.accounts} accounts, {self.size.seconds:g} s; "
            f"{self.kills} SIGKILL, {self.stops} SIGSTOP past the TTL, "
            f"{self.redis_restarts} redis-server restart; "
            f"captured {self.captured}, ended {self.states}, lost {len(self.lost)}, "
            f"open left {self.open_left}, outcomes reported twice "
            f"{len(self.outcomes_reported_twice)}, wrong identity {len(self.wrong_identity)}, "
            f"cross-identity {self.cross_identity}, resends deduplicated by the receiver "
            f"{self.resends_deduplicated}, stale-token sends refused {self.fenced}; "
            f"never taken over {self.never_taken}; "
            f"takeover {len(self.takeovers_ms)}x p50 {median:.0f} ms "
            f"p99 {self.percentile(0.99):.0f} ms (TTL {self.size.ttl_ms} ms)"
        )


def identity(index: int) -> Identity:
    return Identity(
        f"1555{index:07d}@s.whatsapp.net", f"{900_000_000_000_000 + index}@lid", f"+1555{index:07d}"
    )


class _Worker:
    """One incarnation of a worker process and the lines it printed."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.held: set[str] = set()
        self.ready = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.stderr: asyncio.Task[bytes] | None = None


class _Chaos:
    def __init__(self, size: ChaosSize, seed: int, redis: RedisServer) -> None:
        self.size, self.seed, self.redis = size, seed, redis
        self.rng = random.Random(f"heirline-fleet-chaos:{seed}")
        self.accounts = [f"acct{i:03d}" for i in range(size.accounts)]
        self.workers: dict[str, _Worker] = {}
        self.dead: list[_Worker] = []
        self.captured: dict[str, str] = {}  # reply id -> account
        self.outcomes: dict[str, list[str]] = {}  # reply id -> reported outcomes
        self.acquired: list[tuple[float, str, int]] = []  # wall time, account, pid
        self.report = ChaosReport(size, seed)
        self.capture_until = 0.0
        self.port = 0

    async def spawn(self, name: str) -> None:
        size = self.size
        limit = -(-size.accounts // max(1, size.workers - 1))  # the others can cover one dead
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "heirline.adapters.fleet_worker",
            "--redis-port", str(self.redis.port), "--channel-port", str(self.port),
            "--name", name, "--accounts", ",".join(self.accounts),
            "--ttl-ms", str(size.ttl_ms), "--scan-ms", "50", "--max-accounts", str(limit),
            "--capture-every-ms", str(size.capture_every_ms),
            "--capture-until", str(self.capture_until), "--seed", str(self.seed),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = _Worker(name, process)
        worker.reader = asyncio.create_task(self._read(worker))
        assert process.stderr is not None
        worker.stderr = asyncio.create_task(process.stderr.read())
        self.workers[name] = worker

    async def _read(self, worker: _Worker) -> None:
        stream = worker.process.stdout
        assert stream is not None
        for _ in range(10_000_000):  # bounded: the process ends long before
            line = await stream.readline()
            if not line:
                return
            event = json.loads(line)
            kind, account = event["ev"], event.get("account", "")
            if kind == "ready":
                worker.ready.set()
            elif kind == "captured":
                self.captured[event["reply"]] = account
            elif kind == "outcome":
                reply_id, rest = event["detail"].split(" ", 1)
                self.outcomes.setdefault(reply_id, []).append(rest)
            elif kind == "acquired":
                worker.held.add(account)
                self.acquired.append((event["t"], account, worker.process.pid))
            elif kind in ("lost", "released"):
                worker.held.discard(account)
            elif kind == "refused":
                self.report.errors.append(f"{worker.name}: journal refused: {event['detail']}")

    async def kill(self, name: str) -> None:
        worker = self.workers.pop(name)
        held, at = set(worker.held), time.time()
        worker.process.kill()
        await worker.process.wait()
        self.dead.append(worker)
        self.report.kills += 1
        self._watch_takeover(held, at, worker.process.pid)
        await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        await self.spawn(name)

    async def stop(self, name: str) -> None:
        worker = self.workers[name]
        held, at = set(worker.held), time.time()
        worker.process.send_signal(signal.SIGSTOP)
        self.report.stops += 1
        self._watch_takeover(held, at, worker.process.pid)
        await asyncio.sleep(self.size.ttl_ms / 1000 * 1.6)
        worker.process.send_signal(signal.SIGCONT)

    def _watch_takeover(self, held: set[str], at: float, pid: int) -> None:
        self.pending.append((held, at, pid))

    pending: list[tuple[set[str], float, int]]

    def takeovers(self) -> tuple[list[float], int]:
        """Per account a dead or stopped process held: ms until another process took it;
        and how many nobody took."""
        out, never = [], 0
        for held, at, pid in self.pending:
            for account in held:
                later = [t for t, a, p in self.acquired if a == account and p != pid and t >= at]
                if later:
                    out.append((min(later) - at) * 1000)
                else:
                    never += 1
        return out, never

    async def open_replies(self, client: aioredis.Redis) -> int:
        total = 0
        for account in self.accounts:
            fields = await client.hkeys(keys(account)[2])
            total += sum(1 for f in fields if _text(f).startswith("reply:"))
        return total

    async def ended(self, client: aioredis.Redis) -> dict[str, str]:
        states: dict[str, str] = {}
        for account in self.accounts:
            for name, body in (await client.hgetall(keys(account)[2])).items():
                if _text(name).startswith("ended:"):
                    states[_text(name)[6:]] = json.loads(body)["state"]
        return states


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def run_chaos(size: ChaosSize, seed: int, redis: RedisServer) -> ChaosReport:
    chaos = _Chaos(size, seed, redis)
    chaos.pending = []
    client = aioredis.Redis(host="127.0.0.1", port=redis.port)
    await client.flushall()
    try:
        async with ChannelServer(fencing=True, max_connections=8192) as server:
            for i, account in enumerate(chaos.accounts):
                who = identity(i)
                server.add_account(account, who.pn, who.lid, who.e164)
            server.set_ack_delay(10)
            chaos.port = server.port
            chaos.capture_until = time.time() + STARTUP_S + size.seconds
            for n in range(size.workers):
                await chaos.spawn(f"g{n}")
            await _until_served(chaos)
            await _disturb(chaos)
            await _settle(chaos, client)
            await _stop_all(chaos)
            _judge(chaos, server, await chaos.ended(client))
            chaos.report.open_left = await chaos.open_replies(client)
    finally:
        for worker in [*chaos.workers.values()]:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
        await client.aclose()
    return chaos.report


#: Seconds the workers get to start and take every account before the chaos begins.
STARTUP_S = 5.0


async def _until_served(chaos: _Chaos) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_S
    while loop.time() < deadline:
        held = set().union(*(w.held for w in chaos.workers.values()))
        if len(held) == len(chaos.accounts):
            return
        await asyncio.sleep(0.05)
    chaos.report.errors.append("the workers did not take every account in time")


async def _disturb(chaos: _Chaos) -> None:
    size, rng = chaos.size, chaos.rng
    for _ in range(size.max_kills + size.max_stops + 1):  # bounded in count and in time
        await asyncio.sleep(rng.uniform(*size.pause_s))
        if time.time() >= chaos.capture_until:
            return
        # the restart comes after the first kill, while that account is moving
        if size.redis_restart and not chaos.report.redis_restarts and chaos.report.kills:
            await asyncio.to_thread(chaos.redis.restart)  # SIGKILL, then the same port
            chaos.report.redis_restarts += 1
            continue
        holders = sorted(n for n, w in chaos.workers.items() if w.held)  # idle ones: no news
        name = rng.choice(holders or sorted(chaos.workers))
        can_stop = chaos.report.stops < size.max_stops
        if chaos.report.kills < size.max_kills and (not can_stop or rng.random() < 0.75):
            await chaos.kill(name)
        elif can_stop:
            await chaos.stop(name)


async def _settle(chaos: _Chaos, client: aioredis.Redis) -> None:
    """Wait (bounded) until capturing stopped and no reply is open in any journal."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, chaos.capture_until - time.time()) + chaos.size.settle_s
    while loop.time() < deadline:
        await asyncio.sleep(0.2)
        if time.time() > chaos.capture_until + 0.5 and await chaos.open_replies(client) == 0:
            return


async def _stop_all(chaos: _Chaos) -> None:
    for worker in chaos.workers.values():
        with contextlib.suppress(TimeoutError):  # SIGTERM before its handler: exit -15
            await asyncio.wait_for(worker.ready.wait(), 10)
        worker.process.send_signal(signal.SIGTERM)
    for worker in [*chaos.workers.values(), *chaos.dead]:
        try:
            await asyncio.wait_for(worker.process.wait(), 20)
        except TimeoutError:
            worker.process.kill()
            chaos.report.errors.append(f"{worker.name} did not stop on SIGTERM")
        if worker.reader is not None:
            await asyncio.wait_for(worker.reader, 10)
        if worker.stderr is not None:
            err = (await asyncio.wait_for(worker.stderr, 10)).decode(errors="replace")
            if "Traceback" in err:
                chaos.report.errors.append(f"{worker.name}: {err[-2000:]}")
        if worker in chaos.dead:
            continue
        if worker.process.returncode != 0:
            chaos.report.errors.append(f"{worker.name} exited {worker.process.returncode}")


def _judge(chaos: _Chaos, server: ChannelServer, ended: dict[str, str]) -> None:
    report = chaos.report
    report.captured = len(chaos.captured)
    report.takeovers_ms, report.never_taken = chaos.takeovers()
    for reply_id in chaos.captured:
        state = ended.get(reply_id)
        if state is None:
            report.lost.append(reply_id)
        else:
            report.states[state] = report.states.get(state, 0) + 1
    report.not_delivered = {
        r: "; ".join(chaos.outcomes.get(r, [state]))
        for r, state in ended.items()
        if state != "delivered"
    }
    report.outcomes_reported_twice = [r for r, o in chaos.outcomes.items() if len(o) > 1]
    index = {account: i for i, account in enumerate(chaos.accounts)}
    received: set[str] = set()
    summary = server.ledger.summary()
    for held in summary.identities:
        for entry in server.ledger.entries(held.identity):
            received.add(entry.message_id)
            account = chaos.captured.get(entry.message_id, entry.account)
            if entry.account != account or entry.identity != identity(index[account]):
                report.wrong_identity.append(f"{entry.message_id} -> {entry.identity}")
    # a worker killed between its capture and its report: the journal still knows the reply
    report.in_ledger_not_captured = len(received - set(chaos.captured) - set(ended))
    report.delivered_not_in_ledger = [
        r for r in chaos.captured if ended.get(r) == "delivered" and r not in received
    ]
    report.cross_identity = len(summary.cross_identity)
    report.resends_deduplicated = summary.duplicates_suppressed
    report.fenced = len(server.fenced)
