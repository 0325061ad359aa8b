"""One gateway process of a fleet, for the chaos test and for trying a fleet by hand.

``python -m heirline.adapters.fleet_worker --redis-port 6379 --channel-port 7000
--name g1 --accounts a0,a1,a2`` runs a :class:`~heirline.adapters.fleet.FleetMember`
against a Redis and a loopback channel server on 127.0.0.1. Until
``--capture-until`` (unix seconds) it captures a reply every
``--capture-every-ms`` on a random account it serves, as a bot answering its
users would. It prints one JSON object per line on stdout:

* ``{"ev": "captured", "reply": id, "account": a}`` -- once the capture is in
  Redis (then the reply outlives this process);
* ``{"ev": "acquired" | "lost" | "released" | "refused" | "outcome", "account": a,
  "detail": ...}`` -- what the member did;
* ``{"ev": "ready"}`` when it started, ``{"ev": "stopped"}`` after a SIGTERM
  handed every account over.

With ``--commands`` it also reads commands from stdin, one a line, until stdin
closes: ``capture ACCOUNT REPLY_ID`` captures that reply on the account now
(``captured``, or ``{"ev": "not-captured"}`` if the account is not served here);
``heirline demo --fleet`` drives its workers this way.

Every reply id starts with the member's owner id (``name:pid``), so ids never
repeat across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from heirline.adapters.fleet import FleetConfig, FleetMember
from heirline.adapters.fleet_store import FleetStore
from heirline.core.config import EngineConfig
from heirline.core.effects import LogLevel

__all__ = ["engine_config", "main"]


def engine_config(reply_deadline_ms: int = 60_000) -> EngineConfig:
    """The engine configuration every member of a fleet must share (the journal checks it)."""
    return EngineConfig(
        journal=True,
        external_registry=True,
        reply_deadline_ms=reply_deadline_ms,
        log_level=LogLevel.WARNING,
    )


def _say(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"ev": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


async def _capture(member: FleetMember, args: argparse.Namespace, rng: random.Random) -> None:
    count = 0
    while time.time() < args.capture_until:  # bounded by --capture-until
        await asyncio.sleep(args.capture_every_ms / 1000)
        serving = member.serving()
        if not serving:
            continue
        account = rng.choice(serving)
        reply_id = f"{member.owner}:{count}"
        count += 1
        if await member.capture(account, reply_id, f"{account}-chat@s.whatsapp.net", reply_id):
            _say("captured", reply=reply_id, account=account)


async def _commands(member: FleetMember) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():  # bounded by stdin: ends when it closes
        words = line.decode(errors="replace").split()
        if len(words) != 3 or words[0] != "capture":
            _say("bad-command", line=line.decode(errors="replace").strip())
            continue
        _, account, reply_id = words
        chat = f"{account}-chat@s.whatsapp.net"
        captured = await member.capture(account, reply_id, chat, reply_id)
        _say("captured" if captured else "not-captured", reply=reply_id, account=account)


async def _run(args: argparse.Namespace) -> int:
    owner = f"{args.name}:{os.getpid()}"
    client = aioredis.Redis(host="127.0.0.1", port=args.redis_port, socket_timeout=2.0)
    config = engine_config(args.reply_deadline_ms)
    lease = FleetConfig(
        ttl_ms=args.ttl_ms,
        renew_ms=args.ttl_ms // 3,
        scan_ms=args.scan_ms,
        max_accounts=args.max_accounts,
    )
    member = FleetMember(
        FleetStore(client, config),
        owner,
        args.accounts.split(","),
        args.channel_port,
        config,
        lease,
        seed=args.seed,
        on_event=lambda kind, account, detail: _say(kind, account=account, detail=detail),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    member.start()
    _say("ready", owner=owner)
    tasks = [asyncio.create_task(_capture(member, args, random.Random(f"{owner}:{args.seed}")))]
    if args.commands:
        tasks.append(asyncio.create_task(_commands(member)))
    await stop.wait()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await member.stop()
    await client.aclose()
    _say("stopped", owner=owner)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heirline.adapters.fleet_worker")
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--channel-port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--accounts", required=True, help="comma-separated account names")
    parser.add_argument("--ttl-ms", type=int, default=1_000)
    parser.add_argument("--scan-ms", type=int, default=100)
    parser.add_argument("--max-accounts", type=int, default=None)
    parser.add_argument("--capture-every-ms", type=int, default=20)
    parser.add_argument("--capture-until", type=float, default=0.0, help="unix seconds")
    parser.add_argument("--reply-deadline-ms", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", action="store_true", help="read commands from stdin")
    args = parser.parse_args(argv)
    if args.ttl_ms < 3 or args.capture_every_ms < 1 or args.scan_ms < 1:
        parser.error("--ttl-ms >= 3, --capture-every-ms >= 1 and --scan-ms >= 1 are required")
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
