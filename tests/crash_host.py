"""A host for ``heirline serve --stdio --journal FILE`` that SIGKILLs the server and restarts it.

The test is the gateway's host: it owns the (simulated) sockets, carries out the
engine's effects, keeps the timers, and holds the **receiver's ledger** -- every
copy of every message id that reached the receiver, and the identity of the
socket it came through. The ledger is kept here, from what the host actually
sent, never from what the engine says: it is the independent ground truth the
crash test judges by.

The server child is killed with SIGKILL at seeded points: after a seeded number
of lines of its incarnation, a seeded delay (0 to a few ms) after a line was
written, so the kill lands anywhere -- before the line was read, while the step
is being written to SQLite, after the commit but before the answer left. Every
answer not read before the kill is discarded, as a host loses what a dead
process had not told it. Each restart is a fresh process: every socket is gone,
every timer forgotten, every transmission still in flight abandoned (if it had
reached the receiver it stays in the ledger, as in the real world).
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heirline.adapters import jsonio
from heirline.adapters.durable import journaled
from heirline.adapters.journal import SqliteJournal
from heirline.adapters.stdio import build_config

#: The engine config of every incarnation (a journal refuses another one).
CONFIG: dict[str, Any] = {
    "health_timer": False,
    "reply_deadline_ms": 60_000,
    "resendable_kinds": ["text", "media"],
    "remember_ended": 100_000,
}
ANSWER_TIMEOUT_S = 20.0
STATUSES = (408, 428, 515, 500)


class ChildDied(Exception):
    """The server ended while the host waited for an answer."""


class Child:
    """One ``serve --stdio --journal`` process: write a line, read its answer (bounded)."""

    def __init__(self, journal: Path) -> None:
        command = [sys.executable, "-m", "heirline.adapters.stdio", "--journal", str(journal)]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._buf = b""

    def write(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the server")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ChildDied(self.stderr())
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        out = jsonio.loads(line)
        assert isinstance(out, dict)
        return out

    def request(self, line: bytes) -> dict[str, Any]:
        self.write(line)
        return self.read()

    def kill(self, delay_s: float) -> bool:
        """SIGKILL after ``delay_s``; True if an answer had already come out (then discarded)."""
        if delay_s > 0:
            time.sleep(delay_s)
        self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        answered = b"\n" in self._buf + self.proc.stdout.read()
        self._close()
        return answered

    def finish(self) -> int:
        """Close stdin (EOF: with a journal nothing ends) and wait; the exit status."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read()
        assert rest == b"", f"no line after EOF with a journal, got {rest!r}"
        code = self.proc.wait(10)
        self._close()
        return code

    def stderr(self) -> str:
        err = self.proc.stderr
        return "" if err is None else err.read().decode(errors="replace")

    def _close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):  # the child died with data unread
                    pipe.close()


@dataclass
class Report:
    """What a crash run did and what the receiver's ledger shows."""

    kills: int = 0
    kills_after_answer: int = 0  # the killed line's answer was out (written, then lost)
    kills_in_hello: int = 0
    lines: int = 0
    captured: int = 0  # acknowledged captures
    unconfirmed: int = 0  # captures whose answer was lost in a kill
    outcomes: Counter[str] = field(default_factory=Counter)
    ended_unseen: int = 0  # ended in the journal, outcome lost with its answer in a kill
    restored_replies: int = 0
    ended_at_restore: int = 0
    lost: int = 0
    ended_twice: int = 0
    wrong_identity: int = 0
    failed_but_received: int = 0
    delivered_not_received: int = 0
    copies: int = 0
    duplicate_copies: int = 0  # copies beyond the first per message id (the receiver dedups)
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.kills} kills ({self.kills_after_answer} after the answer was out, "
            f"{self.kills_in_hello} during the restore) in {self.seconds:.1f} s, "
            f"{self.lines} lines; replies captured {self.captured} (+{self.unconfirmed} "
            f"unconfirmed), outcomes {dict(self.outcomes)}, ended with the answer lost "
            f"{self.ended_unseen}; restored {self.restored_replies} open replies, "
            f"{self.ended_at_restore} ended at a restore; lost {self.lost}, ended twice "
            f"{self.ended_twice}, wrong identity {self.wrong_identity}, failed-but-received "
            f"{self.failed_but_received}, delivered-not-received {self.delivered_not_received}; "
            f"receiver: {self.copies} copies, {self.duplicate_copies} duplicates suppressed "
            f"by message id; rejected {dict(self.rejected)}"
        )


class CrashHost:
    """Drives the server like a gateway would, kills and restarts it, keeps the ledger."""

    def __init__(self, journal: Path, seed: int, accounts: int = 4) -> None:
        self.journal = journal
        self.rng = random.Random(seed)
        self.accounts = [f"a{i}" for i in range(accounts)]
        self.identity = {a: f"49151{i:08d}@s.whatsapp.net" for i, a in enumerate(self.accounts)}
        self.relinks = 0
        self.now = 1_000
        self.next_reply = 0
        self.report = Report()
        # the receiver's ledger: message id -> identity of every copy that arrived
        self.ledger: defaultdict[str, list[str]] = defaultdict(list)
        self.captured_as: dict[str, str] = {}  # reply id -> identity it was captured with
        self.acknowledged: set[str] = set()
        self.unconfirmed: set[str] = set()
        self.seen: defaultdict[str, list[str]] = defaultdict(list)  # reply id -> outcomes
        self.need_ready: set[str] = set()
        self.child: Child | None = None
        self._fresh_process_state()

    def _fresh_process_state(self) -> None:
        """What a restart forgets: every socket, timer, flight and generation."""
        self.running: dict[str, int] = {}
        self.opening: dict[tuple[str, int], int] = {}  # (account, attempt) -> generation
        self.open: dict[tuple[str, int], tuple[int, str]] = {}  # -> (generation, identity)
        self.timers: dict[str, int] = {}
        self.flights: list[tuple[dict[str, Any], bool]] = []  # (transmit, arrived)
        self.todo: list[dict[str, Any]] = []  # host facts to report next (closes, failures)

    # ------------------------------------------------------------ the child

    def hello(self) -> bytes:
        return jsonio.dumps({"hello": {"protocol": 2, "seed": 7, "config": CONFIG}})

    def spawn(self, kill_in_hello: float | None = None) -> bool:
        """Start a server on the journal; False if it was killed during its hello."""
        self._fresh_process_state()
        self.child = Child(self.journal)
        if kill_in_hello is not None:
            self.child.write(self.hello())
            self.report.kills_after_answer += self.child.kill(kill_in_hello)
            self.report.kills += 1
            self.report.kills_in_hello += 1
            self.child = None
            return False
        answer = self.child.request(self.hello())
        assert "hello" in answer, answer
        restored = answer["hello"]["restored"]
        self.report.restored_replies += restored["replies"]
        self.report.ended_at_restore += restored["ended"]
        assert restored["now"] is None or restored["now"] <= self.now
        self._carry_out(answer["hello"]["effects"])
        for account in self.accounts:
            self.todo.append({"type": "start", "account": account})
        return True

    def send(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.child is not None
        answer = self.child.request(jsonio.dumps({"now": self.now, "event": event}))
        self.report.lines += 1
        assert "effects" in answer, (event, answer)
        effects: list[dict[str, Any]] = answer["effects"]
        self._carry_out(effects)
        return effects

    def send_and_kill(self, event: dict[str, Any], delay_s: float) -> None:
        """Write ``event``, SIGKILL the server ``delay_s`` later; its answer is lost."""
        assert self.child is not None
        self.child.write(jsonio.dumps({"now": self.now, "event": event}))
        self.report.kills_after_answer += self.child.kill(delay_s)
        self.report.kills += 1
        self.child = None
        if event["type"] == "reply_captured":
            self.unconfirmed.add(event["reply_id"])
        elif event["type"] == "reply_ready":
            self.need_ready.add(event["reply_id"])

    # ------------------------------------------------------------ effects

    def _carry_out(self, effects: list[dict[str, Any]]) -> None:
        for e in effects:
            kind = e["type"]
            if kind == "registered":
                self.running[e["account"]] = e["generation"]
            elif kind == "unregistered":
                if self.running.get(e["account"]) == e["generation"]:
                    del self.running[e["account"]]
            elif kind == "open_socket":
                self.opening[(e["account"], e["attempt"])] = e["generation"]
            elif kind == "close_socket":
                key = (e["account"], e["attempt"])
                was_open = self.open.pop(key, None) is not None
                was_opening = self.opening.pop(key, None) is not None
                if was_open or was_opening:  # the host closes it and reports the close
                    self.todo.append(self._closed(key, e["generation"], e["status"]))
            elif kind == "start_timer":
                self.timers[e["timer"]] = e["deadline_ms"]
            elif kind == "cancel_timer":
                self.timers.pop(e["timer"], None)
            elif kind == "transmit":
                self._transmit(e)
            elif kind == "reply_delivered":
                self.seen[e["reply_id"]].append("delivered")
            elif kind == "reply_failed":
                self.seen[e["reply_id"]].append(e["outcome"])
            elif kind == "rejected":
                self.report.rejected[e["code"]] += 1

    def _closed(self, key: tuple[str, int], generation: int, status: int | None) -> dict[str, Any]:
        account, attempt = key
        event = {"type": "socket_closed", "account": account, "generation": generation}
        return {**event, "attempt": attempt, "status": status}

    def _transmit(self, t: dict[str, Any]) -> None:
        sock = self.open.get((t["account"], t["attempt"]))
        if sock is None:  # that socket is gone: nothing left, nothing arrived
            self.todo.append(self._failure(t, io_started=False))
            return
        arrived = self.rng.random() < 0.8
        if arrived:
            self.ledger[t["message_id"]].append(sock[1])
        self.flights.append((t, arrived))

    def _failure(self, t: dict[str, Any], io_started: bool) -> dict[str, Any]:
        return {
            "type": "transmit_failed",
            "reply_id": t["reply_id"],
            "generation": t["generation"],
            "attempt": t["attempt"],
            "io_started": io_started,
        }

    # ------------------------------------------------------------ the host's moves

    def move(self, calm: bool = False) -> dict[str, Any] | None:
        """The next fact to report: a pending one, or a seeded random move."""
        if self.todo:
            return self.todo.pop(0)
        rng = self.rng
        choices: list[str] = []
        if self.opening:
            choices += ["open"] * 4
        if self.open and not calm:
            choices += ["capture"] * 4 + ["close"]
        if self.need_ready:
            choices += ["ready"] * 4
        if self.flights:
            choices += ["resolve"] * 5
        if not calm and self.running:
            choices += ["restart"] * (1 if rng.random() < 0.3 else 0)
        if not calm and rng.random() < 0.03:
            choices.append("relink")
        choices += ["tick"] * 2
        choice = rng.choice(choices)
        if choice == "open":
            (account, attempt), generation = rng.choice(sorted(self.opening.items()))
            del self.opening[(account, attempt)]
            self.open[(account, attempt)] = (generation, self.identity[account])
            pn = self.identity[account]
            return {
                "type": "socket_opened",
                "account": account,
                "generation": generation,
                "attempt": attempt,
                "pn": pn,
            }
        if choice == "capture":
            (account, _), (generation, identity) = rng.choice(sorted(self.open.items()))
            self.next_reply += 1
            rid = f"r{self.next_reply}"
            self.captured_as[rid] = identity
            self.need_ready.add(rid)
            kind = "read_receipt" if rng.random() < 0.2 else "text"
            return {
                "type": "reply_captured",
                "reply_id": rid,
                "account": account,
                "generation": generation,
                "chat": "120363000000000001@g.us",
                "kind": kind,
            }
        if choice == "close":
            key, (generation, _) = rng.choice(sorted(self.open.items()))
            del self.open[key]
            return self._closed(key, generation, rng.choice(STATUSES))
        if choice == "ready":
            rid = rng.choice(sorted(self.need_ready))
            self.need_ready.discard(rid)
            return {"type": "reply_ready", "reply_id": rid, "payload": f"body of {rid}"}
        if choice == "resolve":
            t, arrived = self.flights.pop(rng.randrange(len(self.flights)))
            if arrived and (calm or rng.random() < 0.85):
                return {
                    "type": "transmit_acked",
                    "reply_id": t["reply_id"],
                    "generation": t["generation"],
                    "attempt": t["attempt"],
                }
            return self._failure(t, io_started=arrived or rng.random() < 0.5)
        if choice == "restart":  # a health restart: a new generation supersedes the running one
            return {"type": "start", "account": rng.choice(sorted(self.running))}
        if choice == "relink":  # the number changes; its sockets are logged out
            account = rng.choice(self.accounts)
            self.relinks += 1
            self.identity[account] = f"49170{self.relinks:08d}@s.whatsapp.net"
            for key, (generation, _) in sorted(self.open.items()):
                if key[0] == account:
                    del self.open[key]
                    self.todo.append(self._closed(key, generation, 401))
            return self.move(calm)
        # tick: time passes; the earliest due timer fires, or the clock jumps to it
        self.now += rng.randint(1, 3_000)
        due = sorted((deadline, timer) for timer, deadline in self.timers.items())
        if due and (due[0][0] <= self.now or calm):
            deadline, timer = due[0]
            del self.timers[timer]
            self.now = max(self.now, deadline)
            return {"type": "timer_fired", "timer": timer}
        return None

    def record(self, event: dict[str, Any], effects: list[dict[str, Any]]) -> None:
        if event["type"] == "reply_captured":
            rid = event["reply_id"]
            if any(e["type"] == "rejected" for e in effects):
                self.need_ready.discard(rid)
                self.captured_as.pop(rid, None)
            else:
                self.acknowledged.add(rid)

    # ------------------------------------------------------------ the run

    def run(self, kills: int, max_seconds: float, steps_between: int = 30) -> Report:
        """``kills`` SIGKILLs at seeded points, then a calm phase until every reply ended."""
        started = time.monotonic()
        self.spawn()
        while self.report.kills < kills and time.monotonic() - started < max_seconds:
            if self.child is None:
                if self.rng.random() < 0.1:  # killed during the restore itself
                    self.spawn(kill_in_hello=self.rng.random() * 0.003)
                    continue
                self.spawn()
            budget = self.rng.randint(0, steps_between)
            for _ in range(budget):
                event = self.move()
                if event is not None:
                    self.record(event, self.send(event))
            event = self.move()
            while event is None:
                event = self.move()
            self.send_and_kill(event, self.rng.random() ** 3 * 0.003)  # mostly < 0.5 ms
        if self.child is None:
            self.spawn()
        self._calm()
        self.report.seconds = time.monotonic() - started
        self._judge()
        return self.report

    def _calm(self, max_steps: int = 50_000) -> None:
        """No more kills, relinks, closes or captures: carry every reply to its own end.

        Nothing is shut down: every reply must end by the engine's own rules (delivered
        through a same-identity successor, or at its deadline), which the journal then
        shows (no open reply left).
        """
        for account in self.accounts:
            if account not in self.running:
                self.todo.append({"type": "start", "account": account})
        for _ in range(max_steps):
            deadlines = [k for k in self.timers if k.startswith("deadline/")]
            if not (deadlines or self.flights or self.todo or self.need_ready):
                break
            event = self.move(calm=True)
            if event is not None:
                self.record(event, self.send(event))
        else:
            raise AssertionError(f"not calm after {max_steps} steps: {sorted(self.timers)}")
        assert self.child is not None
        assert self.child.finish() == 0
        self.child = None

    def _judge(self) -> None:
        with SqliteJournal(self.journal, journaled(build_config(CONFIG))) as journal:
            snapshot = journal.load()
        assert snapshot.replies == (), f"replies still open: {snapshot.replies}"
        ended = {e.reply_id: e.state for e in snapshot.ended}
        r = self.report
        r.captured = len(self.acknowledged)
        r.unconfirmed = len(self.unconfirmed - self.acknowledged)
        for rid in sorted(self.acknowledged | self.unconfirmed):
            seen = self.seen.get(rid, [])
            if len(seen) > 1:
                r.ended_twice += 1
            state = ended.get(rid)
            if seen:
                r.outcomes[seen[0]] += 1
                assert state is None or (state == "delivered") == (seen[0] == "delivered"), rid
            elif state is not None:
                r.ended_unseen += 1
                r.outcomes[state] += 1
            elif rid in self.acknowledged:
                r.lost += 1
            outcome = seen[0] if seen else state
            copies = self.ledger.get(rid, [])
            if outcome == "delivered" and not copies:
                r.delivered_not_received += 1
            if outcome == "failed" and copies:
                r.failed_but_received += 1
        for message_id, identities in self.ledger.items():
            r.copies += len(identities)
            r.duplicate_copies += len(identities) - 1
            expected = self.captured_as.get(message_id)
            r.wrong_identity += sum(1 for i in identities if i != expected)
