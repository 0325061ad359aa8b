"""Breakdown: the routing decision alone, against baselines measured in this same run.

(a) a bare dict lookup (the floor); (b) one ``decide_route`` call for the
incident's case -- origin socket gone, same-identity successor open (PN-only
origin, LID-only successor, resolved through the mapping); inputs are built
once, only the call is timed; (c) an openclaw-style decision written plainly in
Python: string-set overlap of {e164, device-stripped jid, device-stripped lid}
of both identities; (d) the engine's events per second on a recorded
incident-like trace over many accounts (start, open, capture, close 408, one
health check restarting them all, successor opens, ready, ack).
Each timing is the minimum over repeats. Goal: (b) <= 30x (a).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
import timeit
from collections.abc import Callable

from heirline.core.effects import ReplyDelivered, Transmit
from heirline.core.engine import Engine, EngineConfig
from heirline.core.events import (
    Event,
    HealthCheck,
    ReplyCaptured,
    ReplyReady,
    SocketClosed,
    SocketOpened,
    Start,
    TransmitAcked,
)
from heirline.core.health import HealthConfig
from heirline.core.identity import Keys, LidMapping, SelfIdentity, compare, identity_keys, resolve
from heirline.core.routing import ControllerView, RouteKind, decide_route

REPEATS = 7
GOAL = 30.0
ACCOUNTS = 8_000  # 7 events per account + 1 health check: 56,001 events
PN = "4915123456789"
LID = "123456789012345"


def _per_call_ns(stmt: Callable[[], object], number: int, calls_per_stmt: int) -> float:
    best = min(timeit.repeat(stmt, number=number, repeat=REPEATS))
    return best / (number * calls_per_stmt) * 1e9


def _dict_lookup_ns() -> float:
    table = {1: "open", 2: "backoff", 3: "stopped"}

    def loop() -> None:
        d = table
        for _ in range(1000):
            d[1]
            d[2]
            d[3]

    return _per_call_ns(loop, 100, 3000)


def _route_inputs() -> tuple[Keys, ControllerView, ControllerView]:
    """The engine's inputs: identities resolved once, when they were recorded."""
    mapping = LidMapping.from_pairs([(PN, LID)])
    origin_keys = identity_keys(resolve(SelfIdentity.parse(pn=f"{PN}:3@s.whatsapp.net"), mapping))
    successor_keys = identity_keys(resolve(SelfIdentity.parse(lid=f"{LID}@lid"), mapping))
    origin = ControllerView(1, "stopped", False)
    successor = ControllerView(2, "open", True, successor_keys)
    route, generation = decide_route(origin_keys, origin, successor)
    if route.kind is not RouteKind.SUCCESSOR or generation != 2:
        raise AssertionError(f"expected the successor route, got {route} via {generation}")
    return origin_keys, origin, successor


def _decide_route_ns() -> float:
    keys, origin, successor = _route_inputs()
    decide = decide_route

    def loop() -> None:
        for _ in range(1000):
            decide(keys, origin, successor)

    return _per_call_ns(loop, 20, 1000)


def _compare_ns() -> float:
    """The full guard from raw identities, resolution included (done once per socket)."""
    mapping = LidMapping.from_pairs([(PN, LID)])
    original = SelfIdentity.parse(pn=f"{PN}:3@s.whatsapp.net")
    successor = SelfIdentity.parse(lid=f"{LID}@lid")

    def loop() -> None:
        for _ in range(1000):
            compare(original, successor, mapping)

    return _per_call_ns(loop, 5, 1000)


def _strip_device(jid: str | None) -> str | None:
    if not jid:
        return None
    user, _, server = jid.partition("@")
    return f"{user.split(':', 1)[0]}@{server}"


def identities_overlap(a: dict[str, str | None], b: dict[str, str | None]) -> bool:
    """openclaw's ``identitiesOverlap``: any equal string among the three forms."""
    left = {a.get("e164"), _strip_device(a.get("jid")), _strip_device(a.get("lid"))}
    right = {b.get("e164"), _strip_device(b.get("jid")), _strip_device(b.get("lid"))}
    left.discard(None)
    right.discard(None)
    return bool(left & right)


def _openclaw_ns() -> float:
    # openclaw's inputs in the same case: the origin shows e164 and its PN JID, the
    # successor its e164 (from creds) and its LID -- without e164 it never matches.
    origin = {"e164": f"+{PN}", "jid": f"{PN}:3@s.whatsapp.net", "lid": None}
    successor = {"e164": f"+{PN}", "jid": None, "lid": f"{LID}:7@lid"}
    assert identities_overlap(origin, successor)
    overlap = identities_overlap

    def loop() -> None:
        for _ in range(1000):
            overlap(origin, successor)

    return _per_call_ns(loop, 20, 1000)


def incident_trace(accounts: int) -> list[tuple[Event, int]]:
    """The incident, for every account at once: ~7 events per account plus one health check."""
    trace: list[tuple[Event, int]] = []
    names = [f"acct{i}" for i in range(accounts)]
    t = 1_000
    trace += [(Start(account=a), t) for a in names]
    t += 1_000
    trace += [
        (SocketOpened(account=a, generation=1, attempt=1, pn=f"{PN}:3@s.whatsapp.net"), t)
        for a in names
    ]
    t += 59_000
    trace += [
        (ReplyCaptured(reply_id=a, account=a, generation=1, chat="1203@g.us"), t) for a in names
    ]
    t += 108_578
    trace += [(SocketClosed(account=a, generation=1, attempt=1, status=408), t) for a in names]
    t += 114
    trace.append((HealthCheck(), t))
    t += 6_248
    trace += [(SocketOpened(account=a, generation=2, attempt=2, e164=f"+{PN}"), t) for a in names]
    t += 100
    trace += [(ReplyReady(reply_id=a, payload="hello"), t) for a in names]
    t += 100
    trace += [(TransmitAcked(reply_id=a, generation=2, attempt=2), t) for a in names]
    return trace


def _engine() -> Engine:
    config = EngineConfig(health=HealthConfig(startup_grace_ms=0, retry_grace_ms=None))
    return Engine(config, random=lambda: 0.5)


def _events_per_second(trace: list[tuple[Event, int]]) -> float:
    best = float("inf")
    for _ in range(3):
        engine = _engine()
        handle = engine.handle
        started = time.perf_counter()
        for event, now in trace:
            handle(event, now)
        best = min(best, time.perf_counter() - started)
    return len(trace) / best


def _check_trace(trace: list[tuple[Event, int]]) -> int:
    engine = _engine()
    delivered = transmits = 0
    for event, now in trace:
        for effect in engine.handle(event, now):
            delivered += isinstance(effect, ReplyDelivered)
            transmits += isinstance(effect, Transmit)
    assert delivered == transmits == ACCOUNTS, (delivered, transmits)
    return delivered


def _profile_route() -> str:
    keys, origin, successor = _route_inputs()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20_000):
        decide_route(keys, origin, successor)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    return out.getvalue()


def main() -> int:
    floor = _dict_lookup_ns()
    route = _decide_route_ns()
    openclaw = _openclaw_ns()
    full = _compare_ns()
    trace = incident_trace(ACCOUNTS)
    delivered = _check_trace(trace)
    eps = _events_per_second(trace)
    print(f"(a) bare dict lookup                      {floor:9.1f} ns")
    print(f"(b) decide_route, successor same identity {route:9.1f} ns  = {route / floor:6.1f}x (a)")
    print(
        f"(c) openclaw-style string-set overlap     {openclaw:9.1f} ns  = "
        f"{openclaw / floor:6.1f}x (a);"
        f" (b) is {route / openclaw:.1f}x (c)"
    )
    print(
        f"(b') compare() from raw identities, resolution included (once per socket open): "
        f"{full:,.0f} ns = {full / floor:.1f}x (a)"
    )
    print(
        f"(d) engine on the incident trace: {len(trace):,} events, {ACCOUNTS:,} accounts, "
        f"{delivered:,} delivered through the successor: {eps:,.0f} events/s "
        f"({1e9 / eps:,.0f} ns/event)"
    )
    ratio = route / floor
    verdict = "PASS" if ratio <= GOAL else "MISS"
    print(f"goal: routing decision <= {GOAL:.0f}x dict lookup: {ratio:.1f}x -> {verdict}")
    if verdict == "MISS":
        print("where decide_route spends its time (20,000 calls):")
        print(_profile_route())
    return 0
