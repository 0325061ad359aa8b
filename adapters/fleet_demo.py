"""``heirline demo --fleet``: an account moves to another gateway process, on a real Redis.

The demo starts its own ``redis-server`` (a free 127.0.0.1 port, persistence
off), the loopback channel server with fencing on, and two gateway processes
(``python -m heirline.adapters.fleet_worker``). Process g1 holds both accounts
and captures one reply on each: alice's goes out on a line that has gone silent
(no ack), bob's waits for a socket after a 408 close. g1 is killed with SIGKILL;
bob's phone is relinked to another WhatsApp identity meanwhile. After the lease
TTL g2 takes both accounts over and starts successor generations: alice's reply
goes out through the same-identity successor, bob's is refused with the reason.

The channel server's ledger is the ground truth: the exit status is 0 only if
alice's identity received her reply exactly once, through g2's generation, and
neither of bob's identities received anything; 1 if a promise failed; 2 if the
demo could not run (no ``redis-server``, no ``redis`` package).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from heirline.adapters import redis_server
from heirline.adapters.channel import ChannelServer

__all__ = ["TTL_MS", "run_fleet_demo"]

#: The lease TTL of the demo's processes: the takeover waits this out.
TTL_MS = 1_000
ALICE = ("15550001111@s.whatsapp.net", "111222333444555@lid", "+15550001111")
BOB = ("15550002222@s.whatsapp.net", "222333444555666@lid", "+15550002222")
BOB_RELINKED = ("15559998888@s.whatsapp.net", "999888777666555@lid", "+15559998888")
WIDTH = 80
#: Every wait of the demo is bounded by this (seconds).
STEP_TIMEOUT = 20.0


class DemoFailed(Exception):
    """A step of the demo did not happen in time (its message says which)."""


@dataclass(slots=True)
class Worker:
    """One gateway process and the JSON events it printed, in order."""

    name: str
    process: asyncio.subprocess.Process
    events: list[dict[str, object]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def find(self, ev: str, account: str | None = None) -> dict[str, object] | None:
        for event in self.events:
            if event.get("ev") == ev and (account is None or event.get("account") == account):
                return event
        return None

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()


class Timeline:
    """Prints ``  1.23s  what happened`` lines, wrapped to 80 columns."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        stamp = f"{time.monotonic() - self.t0:6.2f}s  "
        lines = textwrap.wrap(text, WIDTH, initial_indent=stamp, subsequent_indent=" " * len(stamp))
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


async def _until(what: str, predicate: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # bounded by the deadline
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _read(worker: Worker) -> None:
    process = worker.process
    assert process.stdout is not None
    assert process.stderr is not None

    async def out() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():  # until the process exits
            with contextlib.suppress(ValueError):
                worker.events.append(json.loads(line))

    async def err() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():  # until the process exits
            worker.stderr.append(line.decode(errors="replace").rstrip())

    await asyncio.gather(out(), err())


async def _spawn(
    name: str, redis_port: int, channel_port: int, procs: list[asyncio.subprocess.Process]
) -> Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heirline.adapters.fleet_worker",
        "--redis-port", str(redis_port), "--channel-port", str(channel_port),
        "--name", name, "--accounts", "alice,bob", "--ttl-ms", str(TTL_MS),
        "--scan-ms", "100", "--commands",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    procs.append(process)
    return Worker(name, process)


async def _story(redis_port: int, out: TextIO, procs: list[asyncio.subprocess.Process]) -> int:
    """The demo; whatever ends it (a failure, Ctrl-C), its workers are killed and reaped
    while the event loop still runs (their pipes close with it)."""
    readers: list[asyncio.Task[None]] = []
    try:
        return await _play(redis_port, out, procs, readers)
    finally:
        for process in procs:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for process in procs:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), STEP_TIMEOUT)
        for reader in readers:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(reader, STEP_TIMEOUT)


async def _play(
    redis_port: int,
    out: TextIO,
    procs: list[asyncio.subprocess.Process],
    readers: list[asyncio.Task[None]],
) -> int:
    tl = Timeline(out)
    async with ChannelServer(fencing=True) as server:
        server.add_account("alice", *ALICE)
        server.add_account("bob", *BOB)
        tl.say(
            f"redis-server on 127.0.0.1:{redis_port} (persistence off); channel server on "
            f":{server.port}, fencing on; lease TTL {TTL_MS} ms"
        )
        g1 = await _spawn("g1", redis_port, server.port, procs)
        readers.append(asyncio.create_task(_read(g1)))
        await _until(
            "g1 to hold both accounts",
            lambda: server.connection_count("alice") == 1 and server.connection_count("bob") == 1,
        )
        tl.say(f"g1 (pid {g1.process.pid}) holds alice and bob, logged in as generation 1")
        g2 = await _spawn("g2", redis_port, server.port, procs)
        readers.append(asyncio.create_task(_read(g2)))
        await _until("g2 to start", lambda: g2.find("ready") is not None)
        tl.say(f"g2 (pid {g2.process.pid}) is up; both leases are g1's, it waits")

        server.half_open("alice")
        await g1.command("capture alice alice-1")
        await _until("g1 to capture alice-1", lambda: g1.find("captured", "alice") is not None)
        tl.say("alice's line goes silent; g1 captures alice-1, sends it: no ack")
        server.close_account("bob", 408)
        await asyncio.sleep(0.2)  # g1 sees the close; its reconnect waits ~2 s (backoff)
        await g1.command("capture bob bob-1")
        await _until("g1 to capture bob-1", lambda: g1.find("captured", "bob") is not None)
        tl.say("bob's socket closes (408); g1 captures bob-1: it waits for a socket")
        await asyncio.sleep(0.1)  # alice-1 leaves g1 (into the silent line)
        g1.process.kill()
        killed = time.time()
        await g1.process.wait()
        tl.say("SIGKILL g1: two replies captured in Redis, neither delivered")
        server.relink("bob", *BOB_RELINKED)
        tl.say(f"bob's phone is relinked: bob is now {BOB_RELINKED[2]}")

        for account in ("alice", "bob"):
            await _until(f"g2 to take {account} over", functools.partial(_acquired, g2, account))
        for account in ("alice", "bob"):
            event = g2.find("acquired", account)
            assert event is not None
            after = float(str(event["t"])) - killed  # both clocks of this machine
            tl.say(f"g2 takes {account} over {after:.2f} s after the kill ({event['detail']})")
        for reply in ("alice-1", "bob-1"):
            await _until(f"the outcome of {reply}", functools.partial(_has_outcome, g2, reply))
            tl.say(f"g2: {_outcome(g2, reply)}")

        g2.process.send_signal(signal.SIGTERM)
        await _until("g2 to stop", lambda: g2.find("stopped") is not None)
        alice_got = server.ledger.received(ALICE[0])
        bob_got = server.ledger.received(BOB[0]) + server.ledger.received(BOB_RELINKED[0])
        alice_ok = (
            alice_got == ("alice-1",)
            and server.sends_by_token.get(("alice", 1)) is None  # nothing of g1's arrived
            and "via successor" in str(_outcome(g2, "alice-1"))
        )
        bob_ok = bob_got == () and str(_outcome(g2, "bob-1")).startswith("bob-1 refused")
        out.write("\nthe channel's ledger:\n")
        out.write(f"  alice {ALICE[2]} received {list(alice_got)} {_mark(alice_ok)}\n")
        out.write(f"  bob (either identity) received {list(bob_got)} {_mark(bob_ok)}\n")
    if alice_ok and bob_ok:
        out.write("both promises held: one copy to the right identity, none to the wrong one\n")
        return 0
    out.write("a promise did not hold\n")
    return 1


def _acquired(worker: Worker, account: str) -> bool:
    return worker.find("acquired", account) is not None


def _has_outcome(worker: Worker, reply: str) -> bool:
    return _outcome(worker, reply) is not None


def _outcome(worker: Worker, reply: str) -> str | None:
    for event in worker.events:
        detail = str(event.get("detail", ""))
        if event.get("ev") == "outcome" and detail.startswith(f"{reply} "):
            return detail
    return None


def _mark(ok: bool) -> str:
    return "ok" if ok else "WRONG"


def run_fleet_demo(*, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the fleet demo; 0 if both promises held, 1 if not, 2 if it could not run."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        import redis  # noqa: F401  (the workers need it)
    except ImportError:
        print(
            "heirline demo --fleet: the redis package is missing: pip install 'heirline[fleet]'",
            file=err,
        )
        return 2
    binary = redis_server.redis_binary()
    if binary is None:
        print(
            "heirline demo --fleet: redis-server is not on PATH; install it: "
            "apt-get install redis-server",
            file=err,
        )
        return 2
    server = redis_server.RedisServer(binary)
    procs: list[asyncio.subprocess.Process] = []
    try:
        server.start()
        return asyncio.run(_story(server.port, out, procs))
    except (DemoFailed, RuntimeError) as exc:
        print(f"heirline demo --fleet: {exc}", file=err)
        return 1
    finally:  # also on Ctrl-C: no process of the demo outlives it
        for process in procs:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
        server.stop()
