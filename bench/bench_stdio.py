"""Round-trip throughput of ``heirline serve --stdio`` versus the in-process engine.

A recorded incident-like trace (>= 20k events: many accounts, each repeatedly
capturing and acknowledging replies, losing its socket with 408, retrying on
its timer and reopening) is replayed twice in this run: through a real server
subprocess (pipelined -- a writer thread streams batches while the answers are
read) and through ``Engine.handle`` in this process. Prints both rates and the
ratio; the goal is >= 20,000 events/s through stdio. Bounded: well under 30 s.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

from heirline.adapters.jsonio import dumps, loads
from heirline.core import events as ev
from heirline.core.effects import OpenSocket, StartTimer
from heirline.core.engine import Engine, EngineConfig
from heirline.core.timers import RetryTimer
from heirline.core.wire import decode_event, encode

GOAL = 20_000
ACCOUNTS = 200
CYCLES = 15
SEED = 7
HELLO = {"hello": {"protocol": 2, "seed": SEED, "config": {"health_timer": False}}}
BATCH = 512


def record_trace() -> list[tuple[int, ev.Event]]:
    """Drive an engine through the scenario, reacting to its effects; keep (now, event)."""
    engine = Engine(EngineConfig(health_timer=False), random=random.Random(SEED).random)
    trace: list[tuple[int, ev.Event]] = []
    now = 0

    def feed(event: ev.Event) -> list[object]:
        nonlocal now
        now += 3
        trace.append((now, event))
        return list(engine.handle(event, now))

    pn = "4915123456789@s.whatsapp.net"
    socket: dict[str, int] = {}  # account -> its open socket's attempt
    for k in range(ACCOUNTS):
        (opened,) = [e for e in feed(ev.Start(account=f"a{k}")) if isinstance(e, OpenSocket)]
        socket[f"a{k}"] = opened.attempt
        feed(ev.SocketOpened(account=f"a{k}", generation=1, attempt=opened.attempt, pn=pn))
    reply = 0
    for cycle in range(CYCLES):
        for k in range(ACCOUNTS):
            account = f"a{k}"
            for _ in range(2):
                reply += 1
                rid = f"r{reply}"
                feed(ev.ReplyCaptured(reply_id=rid, account=account, generation=1, chat="1@g.us"))
                feed(ev.ReplyReady(reply_id=rid, payload=f"reply {reply} in cycle {cycle}"))
                feed(ev.TransmitAcked(reply_id=rid, generation=1, attempt=socket[account]))
            effects = feed(
                ev.SocketClosed(account=account, generation=1, attempt=socket[account], status=408)
            )
            timer = next(
                e for e in effects if isinstance(e, StartTimer) and isinstance(e.timer, RetryTimer)
            )
            now = max(now, timer.deadline_ms)
            (opened,) = [
                e for e in feed(ev.TimerFired(timer=timer.timer)) if isinstance(e, OpenSocket)
            ]
            socket[account] = opened.attempt
            feed(ev.SocketOpened(account=account, generation=1, attempt=opened.attempt, pn=pn))
    return trace


def in_process(trace: list[tuple[int, ev.Event]]) -> tuple[float, int]:
    engine = Engine(EngineConfig(health_timer=False), random=random.Random(SEED).random)
    handle = engine.handle
    effects = 0
    start = time.perf_counter()
    for now, event in trace:
        effects += len(handle(event, now))
    return time.perf_counter() - start, effects


def through_stdio(lines: list[bytes]) -> tuple[float, int, list[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "heirline.adapters.stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(dumps(HELLO) + b"\n")
    proc.stdin.flush()
    assert b'"hello"' in proc.stdout.readline()

    def writer() -> None:
        assert proc.stdin is not None
        for i in range(0, len(lines), BATCH):
            proc.stdin.write(b"".join(lines[i : i + BATCH]))
        proc.stdin.close()

    start = time.perf_counter()
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    answers = [proc.stdout.readline() for _ in lines]
    elapsed = time.perf_counter() - start
    thread.join(timeout=10)
    end = proc.stdout.read()  # EOF shuts the engine down: its last line closes every socket
    assert end.count(b"\n") == 1, end[:200]
    assert b'"shutdown":true' in end, end[:200]
    proc.wait(timeout=10)
    errors = sum(1 for a in answers if b'"error":{' in a)
    return elapsed, errors, answers


def main() -> int:
    trace = record_trace()
    lines = [
        dumps({"id": i, "now": now, "event": encode(event)}) + b"\n"
        for i, (now, event) in enumerate(trace)
    ]
    assert all(
        decode_event(loads(line)["event"]) == trace[i][1] for i, line in enumerate(lines[:50])
    )
    n = len(trace)
    local_s, local_effects = in_process(trace)
    wire_s, errors, answers = through_stdio(lines)
    effects = sum(len(loads(a)["effects"]) for a in answers if b'"effects"' in a)
    local_rate, wire_rate = n / local_s, n / wire_s
    print(f"trace: {n} events, {ACCOUNTS} accounts, {CYCLES} cycles, {local_effects} effects")
    print(f"in-process engine : {local_rate:12,.0f} events/s ({local_s * 1000:.0f} ms)")
    print(f"stdio round trip  : {wire_rate:12,.0f} events/s ({wire_s * 1000:.0f} ms, pipelined)")
    print(f"ratio stdio / in-process: {wire_rate / local_rate:.2f}")
    ok = errors == 0 and effects == local_effects and wire_rate >= GOAL
    verdict = "ok" if ok else "BELOW GOAL" if errors == 0 else f"{errors} ERROR LINES"
    print(f"goal >= {GOAL:,} events/s through stdio: {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
