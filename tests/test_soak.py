"""Chaos soak over loopback: many accounts on the reference channel server with
seeded chaos (closes with real status codes, drops, delayed acks, relinks),
forced health restarts, half-open connections, relinks with replies waiting, and
many replies through the AsyncGateway.

Everything is judged from the receiver's side and the test's own ground truth,
not from heirline's bookkeeping:

* the receiver counts every copy of every message id it sees and every copy it
  accepts (:class:`CountingLedger`), so a message shown twice -- accepted by two
  identities, or by one identity twice -- is counted as a duplicate and fails;
* each reply's identity is the one its socket logged in as (what the server
  said at login), and every accepted copy must be under that identity;
* every reply ends exactly once (counted from the gateway's timeline, not from
  a dict that would hide a second ending), before the shutdown, with a reason;
  a delivered reply was accepted exactly once, a refused or failed one never
  reached the receiver at all.

Relinks are made common on purpose: the test captures replies on an account and
relinks it before they are ready, so they wait and then meet another identity
(refused). Every loop is bounded in count and in time. The short size runs in
the default session; the long one is marked ``soak`` (``nox -s soak``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from rich.console import Console
from rich.progress import Progress

from heirline.adapters.aio import AsyncGateway
from heirline.adapters.channel import ChannelServer, ChaosConfig, Identity, Ledger
from heirline.adapters.transport import ChannelTransport
from heirline.core.backoff import BackoffConfig
from heirline.core.engine import EngineConfig
from heirline.core.events import HealthCheck, ReplyCaptured, ReplyReady, Start
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import LifecycleConfig

STATUSES = (408, 428, 500, 503, 515, 440, 401)
OUTCOMES = ("delivered", "refused", "failed", "unknown")
ENDINGS = frozenset(f"reply_{o}" for o in OUTCOMES)
TERMINAL = frozenset({"logged_out", "replaced", "forbidden", "exhausted", "stopped"})
SPEED = 10.0  # engine ms per real ms: the 1 s health interval takes 0.1 s


class CountingLedger(Ledger):
    """The server's ledger, plus every copy the receiver saw and accepted, per message id.

    The ledger itself deduplicates per identity; these counters do not, so a
    message accepted twice shows up here even if the ledger's own summary would
    hide it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.copies: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()

    def record(
        self, identity: Identity, account: str, message_id: str, chat: str, kind: str, payload: str
    ) -> bool:
        fresh = super().record(identity, account, message_id, chat, kind, payload)
        self.copies[message_id] += 1
        if fresh:
            self.accepted[message_id] += 1
        return fresh


class RecordingGateway(AsyncGateway):
    """Remembers the identity each socket logged in as, per generation (test-only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (account, generation) -> (attempt, identity) of the generation's latest socket.
        self.logged_in: dict[tuple[str, int], tuple[int, Identity]] = {}
        #: (account, attempt) of every socket closed with 499 (the engine's watchdog).
        self.watchdog_closed: set[tuple[str, int]] = set()

    def on_open(
        self,
        account: str,
        generation: int,
        attempt: int,
        pn: str | None,
        lid: str | None,
        e164: str | None,
    ) -> None:
        latest = self.logged_in.get((account, generation))
        if latest is None or attempt > latest[0]:
            self.logged_in[(account, generation)] = (attempt, Identity(pn, lid, e164))
        super().on_open(account, generation, attempt, pn, lid, e164)

    def on_close(self, account: str, generation: int, attempt: int, status: int | None) -> None:
        if status == 499:
            self.watchdog_closed.add((account, attempt))
        super().on_close(account, generation, attempt, status)


@dataclass(frozen=True)
class SoakSize:
    accounts: int
    per_account: int
    seed: int
    budget_s: float
    #: Chance, per reply captured, that the test relinks the account with replies waiting.
    relink_rate: float
    #: Chance, per reply captured, that the account's connection goes half-open.
    half_open_rate: float


@dataclass
class SoakReport:
    size: SoakSize
    replies: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    owner_starts: int = 0
    relinks: int = 0
    relinked_replies: int = 0
    half_opens: int = 0
    watchdog_closes: int = 0
    healthy_closed: int = 0
    closes: Counter[int | None] = field(default_factory=Counter)
    wrong_identity: int = 0
    duplicates: int = 0
    copies: int = 0
    accepted: int = 0
    suppressed: int = 0
    transmissions: int = 0
    wall_s: float = 0.0

    @property
    def target(self) -> int:
        return self.size.accounts * self.size.per_account

    def line(self) -> str:
        o = self.outcomes
        closes = dict(sorted(self.closes.items(), key=lambda kv: kv[0] or 0))
        return (
            f"soak: {self.size.accounts} accounts, replies {self.replies}/{self.target}, "
            f"delivered {o['delivered']}, refused {o['refused']}, failed {o['failed']}, "
            f"unknown {o['unknown']}, restarts {self.restarts}, relinks {self.relinks} "
            f"({self.relinked_replies} replies waiting through them), wrong identity "
            f"{self.wrong_identity}, duplicates {self.duplicates}; owner starts "
            f"{self.owner_starts}, half-open {self.half_opens} (closed by the watchdog "
            f"{self.watchdog_closes}, healthy sockets closed by it {self.healthy_closed}), "
            f"chaos closes {closes}, transmissions "
            f"{self.transmissions}, copies received {self.copies} = accepted {self.accepted} "
            f"+ suppressed {self.suppressed}, wall {self.wall_s:.1f}s"
        )


def _config() -> EngineConfig:
    health = HealthConfig(
        check_interval_ms=1_000,
        startup_grace_ms=0,
        connect_grace_ms=3_000,
        cooldown_ms=0,
        max_restarts=1_000,
        window_ms=60_000,
        retry_grace_ms=None,  # a controller in backoff is restarted at the next check
    )
    # The first retry waits 1.5-1.9 s, longer than the health interval: most retryable
    # closes of a controller older than the connect grace end in a health restart (the
    # incident's pattern), and the reply waiting on it meets the successor.
    backoff = BackoffConfig(initial_ms=1_500, max_ms=4_000)
    # A 20 s watchdog (2 s of real time): pings keep it fed, half-open sockets trip it.
    lifecycle = LifecycleConfig(backoff=backoff, watchdog_ms=20_000)
    return EngineConfig(health=health, lifecycle=lifecycle, reply_deadline_ms=40_000)


def _identity(n: int) -> Identity:
    return Identity(f"4915{n:09d}@s.whatsapp.net", f"1{n:014d}@lid", f"+4915{n:09d}")


async def _soak(size: SoakSize, progress: Progress | None) -> SoakReport:
    started = time.monotonic()
    report = SoakReport(size)
    rng = random.Random(size.seed)
    accounts = size.accounts
    chaos = ChaosConfig(
        seed=size.seed,
        close_probability=0.45,
        statuses=STATUSES,
        ack_delay_ms=(0, 40),
        drop_probability=0.05,
        relink_probability=0.03,
        send_drop_probability=0.01,
        tick_ms=20,
        max_events=max(60, accounts * 12),
        max_seconds=size.budget_s * 0.6,
    )
    names = [f"acct{i:03d}" for i in range(accounts)]
    server = ChannelServer(max_connections=accounts * 4 + 16)
    ledger = CountingLedger()
    server.ledger = ledger
    await server.start()
    for i, name in enumerate(names):
        identity = _identity(i)
        server.add_account(name, identity.pn, identity.lid, identity.e164)
    fresh_identities = iter(range(accounts, 10**9))
    port = server.port
    config = _config()
    keepalive = ChannelTransport.keepalive_for(config, SPEED)
    gw = RecordingGateway(
        lambda callbacks: ChannelTransport(port, callbacks, keepalive_s=keepalive),
        config,
        random=random.Random(size.seed).random,
        speed=SPEED,
    )
    captured_as: dict[str, Identity] = {}
    message_of: dict[str, str] = {}
    unready: list[str] = []
    # Replies captured just before a relink: (reply, account, generation, socket at capture).
    through_relink: list[tuple[str, str, int, int]] = []
    silent: set[tuple[str, int]] = set()  # (account, attempt) of the sockets made half-open
    deadline = started + size.budget_s
    task = None if progress is None else progress.add_task("replies", total=report.target)
    ended_before_shutdown = False
    try:
        await gw.start()
        for name in names:
            gw.feed(Start(account=name))
        server.start_chaos(chaos)
        remaining = dict.fromkeys(names, size.per_account)
        rounds = 0
        # Replies are spread over the first 40 % of the budget (inside the chaos window);
        # accounts held up by closes, relinks or a half-open socket catch up until 80 %.
        pace_s = size.budget_s * 0.4 / size.per_account
        capture_until = started + size.budget_s * 0.8
        max_rounds = size.per_account * 50

        def capture(name: str, generation: int, identity: Identity) -> str:
            reply = f"{name}-{size.per_account - remaining[name]}"
            remaining[name] -= 1
            captured_as[reply] = identity
            message_of[reply] = f"3EB0{size.seed:04d}{len(message_of):08d}"
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
            return reply

        while (
            (any(remaining.values()) or through_relink)
            and rounds < max_rounds
            and time.monotonic() < capture_until
        ):
            rounds += 1
            for name in names:
                generation = gw.engine.current(name)
                state = None if generation is None else gw.engine.controller_state(name, generation)
                if generation is None or state in TERMINAL:
                    gw.feed(Start(account=name))  # the owner brings the account back
                    report.owner_starts += 1
                    continue
                if not remaining[name] or state != "open":
                    continue
                login = gw.logged_in.get((name, generation))
                socket = gw.engine.controller_socket(name, generation)
                if login is None or socket is None or login[0] != socket:
                    continue  # the engine is ahead of the transport (a close in flight)
                if (name, socket) in silent:
                    # No inbound message arrives through a half-open socket, so nothing is
                    # captured on it (a capture is a sign of life): the watchdog must find it.
                    continue
                identity = login[1]
                roll = rng.random()
                if roll < size.relink_rate:
                    # Replies captured now wait (not ready) through a relink to another number.
                    for _ in range(min(remaining[name], rng.randint(1, 2))):
                        reply = capture(name, generation, identity)
                        through_relink.append((reply, name, generation, socket))
                        report.relinked_replies += 1
                    new = _identity(next(fresh_identities))
                    server.relink(name, new.pn, new.lid, new.e164, rng.choice((401, 428)))
                    report.relinks += 1
                    continue
                if roll < size.relink_rate + size.half_open_rate:
                    report.half_opens += server.half_open(name)
                    silent.add((name, socket))
                    continue
                # One reply per round, up to three for an account that fell behind (closed,
                # relinked or half-open for a while), so every account reaches its count.
                behind = rounds - (size.per_account - remaining[name])
                for _ in range(min(remaining[name], max(1, min(3, behind)))):
                    reply = capture(name, generation, identity)
                    if rng.random() < 0.5:
                        gw.feed(ReplyReady(reply_id=reply, payload=f"payload {reply}"))
                    else:
                        unready.append(reply)
            for reply in unready:  # made ready one round later: some wait through closes
                gw.feed(ReplyReady(reply_id=reply, payload=f"payload {reply}"))
            unready.clear()
            waiting = []
            for reply, name, generation, socket in through_relink:
                # Ready once the engine saw the relink's close: the reply waits, then
                # meets the account logged in as another identity.
                still = gw.engine.controller_socket(name, generation) == socket
                if still and gw.engine.controller_state(name, generation) == "open":
                    waiting.append((reply, name, generation, socket))
                else:
                    gw.feed(ReplyReady(reply_id=reply, payload=f"payload {reply}"))
            through_relink = waiting
            if rounds % 3 == 0:
                gw.feed(HealthCheck())  # forced health checks on top of the engine's timer
            if progress is not None and task is not None:
                progress.update(task, completed=len(captured_as))
            await asyncio.sleep(pace_s)
        report.replies = len(captured_as)
        for reply, _, _, _ in through_relink:  # the loop ran out of time: do not leave them
            gw.feed(ReplyReady(reply_id=reply, payload=f"payload {reply}"))
        wait_ms = int(max(1.0, deadline - time.monotonic() + 10) * 1000 * SPEED)
        ended_before_shutdown = await gw.wait_until(
            lambda: all(r in gw.outcomes for r in captured_as), wait_ms
        )
        await server.stop_chaos()
    finally:
        await gw.aclose()
        leaked_tasks = set(gw.tasks)
        leaked_timers = set(gw.pending_timers)
        await server.stop()
    others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert not leaked_tasks, f"gateway tasks leaked: {leaked_tasks}"
    assert not leaked_timers, f"gateway timers leaked: {leaked_timers}"
    assert not others, f"tasks leaked: {others}"
    assert server.connection_count() == 0, "sockets leaked on the server"
    assert ended_before_shutdown, "some replies had not ended when the soak shut down"

    # ------------------------------------------------------------ the receiver's verdict
    by_message = {m: r for r, m in message_of.items()}
    assert set(ledger.copies) <= set(by_message), "the receiver got unknown message ids"
    report.copies = sum(ledger.copies.values())
    report.accepted = sum(ledger.accepted.values())
    report.suppressed = ledger.duplicates_suppressed
    report.duplicates = sum(n - 1 for n in ledger.accepted.values() if n > 1)
    for held in ledger.summary().identities:
        for entry in ledger.entries(held.identity):
            if entry.identity != captured_as[by_message[entry.message_id]]:
                report.wrong_identity += 1
    report.transmissions = len(gw.transmissions)
    report.restarts = sum(1 for e in gw.timeline if e.code == "health_restart")
    report.watchdog_closes = len(gw.watchdog_closed & silent)
    report.healthy_closed = len(gw.watchdog_closed - silent)
    for event in server.chaos_events:
        if event.action.kind == "relink":
            report.relinks += 1
        else:
            report.closes[event.action.status] += 1

    # ------------------------------------------------------------ every reply, once
    ends = Counter(e.message.split()[1] for e in gw.timeline if e.code in ENDINGS)
    twice = [reply for reply, n in ends.items() if n != 1]
    assert not twice, f"replies ended more than once: {twice[:5]}"
    for reply, message_id in message_of.items():
        outcome = gw.outcomes.get(reply)
        assert outcome is not None, f"{reply} never ended"
        assert outcome.outcome in OUTCOMES
        assert outcome.reason, f"{reply} ended without a reason"
        assert "shutdown" not in outcome.reason, f"{reply} was ended by the shutdown"
        report.outcomes[outcome.outcome] += 1
        accepted = ledger.accepted[message_id]
        if outcome.outcome == "delivered":
            assert accepted == 1, f"{reply} delivered but accepted {accepted} times"
        elif outcome.outcome in ("refused", "failed"):
            copies = ledger.copies[message_id]
            assert copies == 0, f"{reply} {outcome.outcome} ({outcome.reason}) yet received"
        else:
            assert accepted <= 1, f"{reply} unknown but accepted {accepted} times"
    assert ends.total() == report.replies
    assert sum(report.outcomes.values()) == report.replies
    assert not gw.rejections, gw.rejections[:5]
    report.wall_s = time.monotonic() - started
    return report


async def _bounded(size: SoakSize, progress: Progress | None) -> SoakReport:
    async with asyncio.timeout(size.budget_s + 60):  # no extra task: the leak check sees them all
        return await _soak(size, progress)


def _check(report: SoakReport) -> None:
    print(report.line())
    assert report.replies == report.target
    assert report.wrong_identity == 0
    assert report.duplicates == 0
    assert report.healthy_closed == 0  # pongs are activity: the watchdog spares live sockets
    assert report.copies == report.accepted + report.suppressed  # every copy accounted for
    assert report.outcomes["delivered"] > 0
    assert report.outcomes["refused"] > 0  # relinks with replies waiting were exercised
    assert report.restarts > 0
    assert sum(report.closes.values()) > 0


def test_the_soak_counts_a_copy_accepted_twice_as_a_duplicate() -> None:
    """The duplicate count can be non-zero: a copy accepted by a second identity counts."""
    ledger = CountingLedger()
    first, second = _identity(1), _identity(2)
    assert ledger.record(first, "a", "m1", "c", "text", "")
    assert not ledger.record(first, "a", "m1", "c", "text", "")  # deduplicated: suppressed
    assert ledger.record(second, "a", "m1", "c", "text", "")  # accepted again: a duplicate
    assert (ledger.copies["m1"], ledger.accepted["m1"], ledger.duplicates_suppressed) == (3, 2, 1)
    assert sum(n - 1 for n in ledger.accepted.values() if n > 1) == 1


SHORT = SoakSize(
    accounts=20, per_account=10, seed=11, budget_s=7, relink_rate=0.06, half_open_rate=0.02
)
LONG = SoakSize(
    accounts=100, per_account=100, seed=12, budget_s=100, relink_rate=0.02, half_open_rate=0.005
)


def test_short_chaos_soak() -> None:
    report = asyncio.run(_bounded(SHORT, progress=None))
    _check(report)
    assert report.wall_s < 15


@pytest.mark.soak
def test_long_chaos_soak() -> None:
    console = Console(stderr=True)
    with Progress(console=console, transient=False) as progress:
        report = asyncio.run(_bounded(LONG, progress=progress))
    _check(report)
    assert report.replies >= 10_000
    assert report.restarts >= 500
    assert report.wall_s < 200
