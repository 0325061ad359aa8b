"""What the journal costs per event: ``Engine.handle`` + the SQLite write, against ``handle`` alone.

A world of N accounts is started and connected, then a stream of reply steps
is recorded (for each reply: capture, ready -> transmit, ack -> delivered;
between them, frames of activity on the sockets, which change nothing
durable). The same stream is replayed, each on a fresh engine in the same
state:

* ``handle`` alone (``EngineConfig(journal=False)``): the in-memory engine;
* ``handle`` + ``take_changes()`` (``journal=True``, nothing written): what
  tracking the changes costs the engine;
* ``handle`` + ``take_changes()`` + ``SqliteJournal.write`` at
  ``durability="process"`` (WAL, ``synchronous=NORMAL``) and ``"power"``
  (``synchronous=FULL``: an fsync per step that changed something).

Bytes: the journal's JSON records per event, and what SQLite appends to its
write-ahead log per event (whole pages; measured with automatic checkpoints
off for the run). Every time is the minimum over repeats (power: fewer
events, each waits for the disk). The journal file is in the system's temp
directory (``HEIRLINE_BENCH_DIR`` to put it elsewhere, e.g. on the disk a
gateway would use).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from heirline.adapters.journal import SqliteJournal
from heirline.core.effects import LogLevel, Rejected
from heirline.core.engine import Engine, EngineConfig
from heirline.core.events import (
    Activity,
    Event,
    ReplyCaptured,
    ReplyReady,
    SocketOpened,
    Start,
    TransmitAcked,
)
from heirline.core.journal import Changes, to_json

SEED = 7
REPEATS = 3
CONFIG = EngineConfig(health_timer=False, log_level=LogLevel.WARNING)
CONFIG_TEXT = "EngineConfig(health_timer=False, log_level=LogLevel.WARNING)"
JOURNALED = EngineConfig(health_timer=False, log_level=LogLevel.WARNING, journal=True)
#: Reply steps per measured replay (power: each durable step waits for an fsync).
REPLIES = {"memory": 2_000, "process": 2_000, "power": 200}
FRAMES_PER_REPLY = 2
PAYLOAD = "a reply of a realistic length, about sixty bytes, say"


def pn(i: int) -> str:
    return f"49151{i:08d}@s.whatsapp.net"


def setup(n: int, config: EngineConfig) -> Engine:
    """N accounts, each started and connected at its first socket."""
    engine = Engine(config, random=random.Random(SEED).random)
    for i in range(n):
        for event in (
            Start(account=f"a{i}"),
            SocketOpened(account=f"a{i}", generation=1, attempt=1, pn=pn(i)),
        ):
            effects = engine.handle(event, 0)
            assert not any(isinstance(e, Rejected) for e in effects), effects
    return engine


def stream(n: int, replies: int) -> list[tuple[Event, int]]:
    """Reply steps spread over the accounts, with frames between them."""
    rng = random.Random(SEED)
    out: list[tuple[Event, int]] = []
    for r in range(replies):
        account = f"a{rng.randrange(n)}"
        rid = f"r{r}"
        now = r + 1
        out.append((ReplyCaptured(reply_id=rid, account=account, generation=1, chat="c@g.us"), now))
        for _ in range(FRAMES_PER_REPLY):
            other = f"a{rng.randrange(n)}"
            out.append((Activity(account=other, generation=1, attempt=1), now))
        out.append((ReplyReady(reply_id=rid, payload=PAYLOAD), now))
        out.append((TransmitAcked(reply_id=rid, generation=1, attempt=1), now))
    return out


@dataclass(frozen=True, slots=True)
class Run:
    ns_per_event: float
    record_bytes: float = 0.0
    wal_bytes: float = 0.0
    writes: int = 0


def _record_bytes(changes: Changes) -> int:
    records = [*changes.accounts, *changes.replies, *changes.ended]
    return sum(len(json.dumps(to_json(r))) for r in records) + 40 * len(changes.mapping)


def replay(n: int, replies: int, mode: str, directory: Path) -> Run:
    """One timed replay of the stream in ``mode``: memory, tracking, process or power."""
    events = stream(n, replies)
    engine = setup(n, CONFIG if mode == "memory" else JOURNALED)
    journal: SqliteJournal | None = None
    path = directory / f"bench-{mode}-{n}.sqlite"
    for old in directory.glob(f"{path.name}*"):
        old.unlink()
    if mode in ("process", "power"):
        journal = SqliteJournal(path, JOURNALED, durability=mode)
        journal.write(engine.take_changes())  # the world as it stands: not timed
        journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        journal._db.execute("PRAGMA wal_autocheckpoint=0")  # the WAL's growth is the bytes
    elif mode == "tracking":
        engine.take_changes()
    handle = engine.handle
    take: Callable[[], Changes] | None = None if mode == "memory" else engine.take_changes
    record_bytes = 0
    started = time.perf_counter_ns()
    if journal is not None:
        assert take is not None
        write = journal.write
        for event, now in events:
            handle(event, now)
            write(take())
    elif take is not None:
        for event, now in events:
            handle(event, now)
            take()
    else:
        for event, now in events:
            handle(event, now)
    elapsed = time.perf_counter_ns() - started
    wal = 0
    writes = 0
    if journal is not None:
        wal = Path(f"{path}-wal").stat().st_size
        writes = journal.writes - 1
        journal.close()
        for old in directory.glob(f"{path.name}*"):
            old.unlink()
    if mode == "tracking":  # the JSON a journal would write, measured outside the timing
        check = setup(n, JOURNALED)
        check.take_changes()
        for event, now in events:
            effects = check.handle(event, now)
            assert not any(isinstance(e, Rejected) for e in effects), (event, effects)
            record_bytes += _record_bytes(check.take_changes())
    return Run(elapsed / len(events), record_bytes / len(events), wal / len(events), writes)


def measure(n: int, directory: Path) -> dict[str, Run]:
    out: dict[str, Run] = {}
    for mode in ("memory", "tracking", "process", "power"):
        replies = REPLIES.get(mode, REPLIES["memory"])
        runs = [replay(n, replies, mode, directory) for _ in range(REPEATS)]
        best = min(runs, key=lambda r: r.ns_per_event)
        out[mode] = Run(best.ns_per_event, runs[0].record_bytes, runs[0].wal_bytes, best.writes)
    return out


def _time(ns: float) -> str:
    return f"{ns / 1000:.1f} µs" if ns < 1_000_000 else f"{ns / 1_000_000:.2f} ms"


def report(accounts: list[int]) -> list[str]:
    """Measure at each scale (at most 100,000 accounts); print and return the markdown section."""
    base = os.environ.get("HEIRLINE_BENCH_DIR")
    lines = [
        "## The journal: `Engine.handle` + the SQLite write",
        "",
        __doc__.strip().split("\n\n")[1].replace("\n", " "),
        "",
        f"Engine settings: `{CONFIG_TEXT}` (plus `journal=True` for the journaled rows). "
        f"Stream: per reply, capture, {FRAMES_PER_REPLY} activity frames, ready, ack "
        f"({2 + FRAMES_PER_REPLY + 1} events, 3 of them durable changes).",
        "",
        "| accounts | mode | per event | x `handle` alone | JSON records / event "
        "| WAL bytes / event |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        for n in sorted({min(a, 100_000) for a in accounts}):
            print(f"  ... {n:,} accounts", file=sys.stderr, flush=True)
            runs = measure(n, Path(tmp))
            memory = runs["memory"].ns_per_event
            names = {
                "memory": "`handle` alone (in memory)",
                "tracking": "`handle` + `take_changes()`",
                "process": '+ write, `durability="process"`',
                "power": '+ write, `durability="power"`',
            }
            for mode, run in runs.items():
                record = f"{runs['tracking'].record_bytes:.0f} B" if mode != "memory" else "-"
                wal = f"{run.wal_bytes:,.0f} B" if run.wal_bytes else "-"
                lines.append(
                    f"| {n:,} | {names[mode]} | {_time(run.ns_per_event)} | "
                    f"{run.ns_per_event / memory:.1f}x | {record} | {wal} |"
                )
    lines += [
        "",
        "The write is one SQLite transaction per step that changed something durable "
        "(activity frames write nothing); its cost does not grow with the number of "
        "accounts. `process` survives the process being killed; `power` also a power "
        "loss, at the price of waiting for the disk on every durable step "
        "(docs/durability.md).",
        "",
    ]
    print("\n".join(lines))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    accounts = [int(a) for a in args] or [1_000]
    report(accounts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
