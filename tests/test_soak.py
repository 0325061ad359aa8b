"""Chaos soak over loopback: many accounts on the reference channel server with
seeded chaos (closes with real status codes, drops, delayed acks, relinks),
forced health restarts, and many replies through the AsyncGateway.

Everything is asserted from the server's ledger and the gateway's outcomes:
no reply reached a wrong identity, no message id was accepted twice, every reply
ended exactly once with a reason, and nothing leaked. Every loop is bounded in
count and in time. The short size runs in the default session; the long one is
marked ``soak`` (``nox -s soak``)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from rich.console import Console
from rich.progress import Progress

from heirline.adapters.aio import AsyncGateway
from heirline.adapters.channel import ChannelServer, ChaosConfig, Identity
from heirline.adapters.transport import ChannelTransport
from heirline.core.backoff import BackoffConfig
from heirline.core.engine import EngineConfig
from heirline.core.events import HealthCheck, ReplyCaptured, ReplyReady, Start
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import LifecycleConfig

STATUSES = (408, 428, 500, 503, 515, 440, 401)
OUTCOMES = frozenset({"delivered", "refused", "failed", "unknown"})
SPEED = 10.0  # engine ms per real ms: a 2 s backoff takes 0.2 s


class RecordingGateway(AsyncGateway):
    """Remembers the identity each controller's socket logged in as (test-only)."""

    opened: dict[tuple[str, int], Identity]

    def on_open(
        self, account: str, generation: int, pn: str | None, lid: str | None, e164: str | None
    ) -> None:
        self.opened[(account, generation)] = Identity(pn, lid, e164)
        super().on_open(account, generation, pn, lid, e164)


@dataclass
class SoakReport:
    accounts: int
    target: int
    replies: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    owner_starts: int = 0
    relinks: int = 0
    closes: Counter[int | None] = field(default_factory=Counter)
    wrong_identity: int = 0
    duplicates_accepted: int = 0
    resends_suppressed: int = 0
    transmissions: int = 0
    wall_s: float = 0.0

    def line(self) -> str:
        o = self.outcomes
        return (
            f"soak: {self.accounts} accounts, replies {self.replies}/{self.target}, "
            f"delivered {o['delivered']}, refused {o['refused']}, failed {o['failed']}, "
            f"unknown {o['unknown']}, restarts {self.restarts}, owner starts "
            f"{self.owner_starts}, relinks {self.relinks}, closes "
            f"{dict(sorted(self.closes.items(), key=lambda kv: kv[0] or 0))}, "
            f"transmissions {self.transmissions}, resends suppressed by the receiver "
            f"{self.resends_suppressed}, wrong-identity {self.wrong_identity}, "
            f"duplicates {self.duplicates_accepted}, wall {self.wall_s:.1f}s"
        )


def _config() -> EngineConfig:
    health = HealthConfig(
        check_interval_ms=2_000,
        startup_grace_ms=0,
        connect_grace_ms=3_000,
        cooldown_ms=0,
        max_restarts=1_000,
        window_ms=60_000,
        retry_grace_ms=None,  # forced restarts 0..2 s after a retryable close
    )
    backoff = BackoffConfig(initial_ms=500, max_ms=4_000)
    return EngineConfig(
        health=health, lifecycle=LifecycleConfig(backoff=backoff), reply_deadline_ms=40_000
    )


def _identity(i: int) -> Identity:
    return Identity(f"4915100{i:06d}@s.whatsapp.net", f"10000000{i:07d}@lid", f"+4915100{i:06d}")


async def _soak(
    accounts: int, per_account: int, seed: int, budget_s: float, progress: Progress | None
) -> SoakReport:
    started = time.monotonic()
    report = SoakReport(accounts, accounts * per_account)
    rng = random.Random(seed)
    chaos = ChaosConfig(
        seed=seed,
        close_probability=0.25,
        statuses=STATUSES,
        ack_delay_ms=(0, 40),
        drop_probability=0.05,
        relink_probability=0.03,
        send_drop_probability=0.01,
        tick_ms=20,
        max_events=max(50, accounts * 4),
        max_seconds=budget_s * 0.6,
    )
    names = [f"acct{i:03d}" for i in range(accounts)]
    server = ChannelServer(max_connections=accounts * 4 + 16)
    await server.start()
    for i, name in enumerate(names):
        identity = _identity(i)
        server.add_account(name, identity.pn, identity.lid, identity.e164)
    port = server.port
    gw = RecordingGateway(
        lambda callbacks: ChannelTransport(port, callbacks),
        _config(),
        random=random.Random(seed).random,
        speed=SPEED,
    )
    gw.opened = {}
    captured_as: dict[str, Identity] = {}
    message_of: dict[str, str] = {}
    unready: list[str] = []
    deadline = started + budget_s
    task = None if progress is None else progress.add_task("replies", total=report.target)
    try:
        await gw.start()
        for name in names:
            gw.feed(Start(account=name))
        server.start_chaos(chaos)
        remaining = dict.fromkeys(names, per_account)
        rounds = 0
        pace_s = budget_s * 0.5 / per_account  # spread the replies over the chaos window
        max_rounds = per_account * 50
        while any(remaining.values()) and rounds < max_rounds and time.monotonic() < deadline:
            rounds += 1
            for name in names:
                if not remaining[name]:
                    continue
                generation = gw.engine.current(name)
                state = None if generation is None else gw.engine.controller_state(name, generation)
                if generation is None or state in (
                    "logged_out",
                    "replaced",
                    "forbidden",
                    "retries_exhausted",
                    "stopped",
                ):
                    gw.feed(Start(account=name))  # the owner brings the account back
                    report.owner_starts += 1
                    continue
                if state != "open" or (name, generation) not in gw.opened:
                    continue
                reply = f"{name}-{per_account - remaining[name]}"
                remaining[name] -= 1
                captured_as[reply] = gw.opened[(name, generation)]
                message_of[reply] = f"3EB0{seed:04d}{len(message_of):08d}"
                gw.feed(
                    ReplyCaptured(
                        reply_id=reply,
                        account=name,
                        generation=generation,
                        chat=f"1203630{i:011d}@g.us" if (i := rng.randrange(50)) else "x@g.us",
                        kind=rng.choice(("text", "text", "media", "group_metadata")),
                        message_id=message_of[reply],
                    )
                )
                if rng.random() < 0.5:
                    gw.feed(ReplyReady(reply_id=reply, payload=f"payload {reply}"))
                else:
                    unready.append(reply)
            for reply in unready:  # made ready one round later: some wait through closes
                gw.feed(ReplyReady(reply_id=reply, payload=f"payload {reply}"))
            unready.clear()
            if rounds % 3 == 0:
                gw.feed(HealthCheck())  # forced health checks on top of the engine's timer
            if progress is not None and task is not None:
                progress.update(task, completed=len(captured_as))
            await asyncio.sleep(pace_s)
        report.replies = len(captured_as)
        wait_ms = int(max(1.0, deadline - time.monotonic() + 10) * 1000 * SPEED)
        await gw.wait_until(lambda: all(r in gw.outcomes for r in captured_as), wait_ms)
        await server.stop_chaos()
    finally:
        await gw.aclose()
        leaked_tasks = set(gw.tasks)
        await server.stop()
    others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert not leaked_tasks, f"gateway tasks leaked: {leaked_tasks}"
    assert not others, f"tasks leaked: {others}"
    assert server.connection_count() == 0, "sockets leaked on the server"

    # ------------------------------------------------------------ the ledger's verdict
    summary = server.ledger.summary()
    by_message = {m: r for r, m in message_of.items()}
    for held in summary.identities:
        for entry in server.ledger.entries(held.identity):
            owner = by_message.get(entry.message_id)
            assert owner is not None, f"unknown message {entry.message_id} in the ledger"
            if entry.identity != captured_as[owner]:
                report.wrong_identity += 1
    report.wrong_identity += len(summary.cross_identity)
    report.duplicates_accepted = sum(
        len(held.message_ids) - len(set(held.message_ids)) for held in summary.identities
    ) + len(summary.cross_identity)
    report.resends_suppressed = summary.duplicates_suppressed
    report.transmissions = len(gw.transmissions)
    report.restarts = sum(1 for e in gw.timeline if e.code == "health_restart")
    for event in server.chaos_events:
        if event.action.kind == "relink":
            report.relinks += 1
        else:
            report.closes[event.action.status] += 1
    for reply in captured_as:
        outcome = gw.outcomes.get(reply)
        assert outcome is not None, f"{reply} never ended"
        assert outcome.outcome in OUTCOMES
        assert outcome.reason, f"{reply} ended without a reason"
        report.outcomes[outcome.outcome] += 1
        holders = server.ledger.holders(message_of[reply])
        if outcome.outcome == "delivered":
            assert len(holders) == 1, f"{reply} delivered but the ledger shows {holders}"
        if outcome.outcome in ("refused", "failed"):
            assert not holders, f"{reply} {outcome.outcome} ({outcome.reason}) yet received"
    assert sum(report.outcomes.values()) == report.replies
    assert not gw.rejections, gw.rejections[:5]
    report.wall_s = time.monotonic() - started
    return report


async def _bounded(
    accounts: int, per_account: int, seed: int, budget_s: float, progress: Progress | None
) -> SoakReport:
    async with asyncio.timeout(budget_s + 60):  # no extra task: the leak check sees them all
        return await _soak(accounts, per_account, seed, budget_s, progress)


def _check(report: SoakReport) -> None:
    print(report.line())
    assert report.replies == report.target
    assert report.wrong_identity == 0
    assert report.duplicates_accepted == 0
    assert report.outcomes["delivered"] > 0
    assert sum(report.closes.values()) > 0


def test_short_chaos_soak() -> None:
    report = asyncio.run(_bounded(20, 10, seed=11, budget_s=8, progress=None))
    _check(report)
    assert report.wall_s < 15


@pytest.mark.soak
def test_long_chaos_soak() -> None:
    console = Console(stderr=True)
    with Progress(console=console, transient=False) as progress:
        report = asyncio.run(_bounded(100, 50, seed=12, budget_s=90, progress=progress))
    _check(report)
    assert report.wall_s < 180
