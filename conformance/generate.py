"""Write the conformance vectors ``conformance/*.jsonl`` from the engine itself.

Run from the repository root: ``python conformance/generate.py``. Never edit a
vector's expected lines by hand: if the engine's answer looks wrong, fix the
engine (or report it) and regenerate.

Each vector is one session: line 1 is the hello, then input line / expected
answer line pairs, then -- unless the host shut the engine down itself -- the
line the server writes at end of input (``{"id": null, "shutdown": true, ...}``).
Event lines' answers are computed here by calling ``Engine.handle`` directly
(not through the stdio server), so replaying a vector through
``heirline serve --stdio`` checks the server against the engine; the end-of-input
line is the engine's answer to ``Shutdown("end of input")`` at the last accepted
``now``. Protocol-error lines (``raw``) take their answer from the session layer,
the only place such errors exist.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from heirline.adapters.jsonio import dumps
from heirline.adapters.stdio import END_OF_INPUT, PROTOCOL, Session, build_config, build_mapping
from heirline.core import events as ev
from heirline.core.effects import CancelTimer, Effect, OpenSocket, Rejected, StartTimer
from heirline.core.engine import Engine
from heirline.core.events import ActivityKind
from heirline.core.timers import DeadlineTimer, RetryTimer, Timer, WatchdogTimer
from heirline.core.wire import JsonValue, encode, timer_key

HERE = Path(__file__).resolve().parent
T0 = 43_239_242  # 12:00:39.242, the inbound message of the incident
PN = "4915123456789:3@s.whatsapp.net"
PN_BARE = "4915123456789@s.whatsapp.net"
LID = "123456789012345@lid"
OTHER_PN = "4915000000000@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
MINUTE = 60_000


class Vector:
    """One transcript: the engine answers every event line; the session answers raw lines.

    It also keeps the timers the engine asked for, as a host does, so a story can let
    time pass (:meth:`until`) and have every timer due by then fire in deadline order.
    """

    def __init__(
        self,
        name: str,
        *,
        seed: int = 7,
        config: dict[str, JsonValue] | None = None,
        mapping: list[list[str]] | None = None,
    ) -> None:
        self.name = name
        hello: dict[str, JsonValue] = {"protocol": PROTOCOL, "seed": seed}
        if config is not None:
            hello["config"] = config
        if mapping is not None:
            hello["mapping"] = mapping
        self.engine = Engine(
            build_config(config), random=random.Random(seed).random, mapping=build_mapping(mapping)
        )
        self.session = Session()  # mirrors the engine, for raw lines and as a cross-check
        hello_line = dumps({"hello": hello})
        self.session.feed(hello_line)
        self.lines: list[bytes] = [hello_line]
        self.next_id = 1
        self.now = 0  # the last accepted now
        self.timers: dict[Timer, int] = {}  # pending timers, as a host keeps them

    def event(self, now: int, event: ev.Event) -> list[Effect]:
        """Feed one event line; its effects (the answer line is recorded)."""
        rid = self.next_id
        self.next_id += 1
        line = dumps({"id": rid, "now": now, "event": encode(event)})
        effects = self.engine.handle(event, now)
        answer = dumps({"id": rid, "effects": [encode(e) for e in effects]})
        mirrored = self.session.feed(line).rstrip(b"\n")
        assert mirrored == answer, (self.name, line, mirrored, answer)
        self.lines += [line, answer]
        if not any(isinstance(e, Rejected) for e in effects):
            self.now = now
        for effect in effects:
            if isinstance(effect, StartTimer):
                self.timers[effect.timer] = effect.deadline_ms
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.timer, None)
        return effects

    def until(self, now: int) -> None:
        """Let time pass up to ``now``: fire every pending timer due by then, in order."""
        while True:
            due = sorted((d, timer_key(t), t) for t, d in self.timers.items() if d <= now)
            if not due:
                return
            deadline, _, timer = due[0]
            del self.timers[timer]
            self.event(deadline, ev.TimerFired(timer=timer))

    def fire(self, timer: Timer) -> list[Effect]:
        """Fire one pending timer at its deadline (it must be pending)."""
        deadline = self.timers.pop(timer)
        return self.event(deadline, ev.TimerFired(timer=timer))

    def raw(self, line: bytes) -> None:
        answer = self.session.feed(line).rstrip(b"\n")
        assert b'"error"' in answer, (self.name, line, answer)
        self.lines += [line, answer]

    def write(self) -> Path:
        """End the session (EOF), record the server's last line if it writes one, and save."""
        shut_by_host = self.engine.shut_down
        tail = self.session.end().rstrip(b"\n")
        assert bool(tail) != shut_by_host, (self.name, tail)
        if tail:
            effects = self.engine.handle(ev.Shutdown(reason=END_OF_INPUT), self.now)
            expected = {"id": None, "shutdown": True, "effects": [encode(e) for e in effects]}
            assert tail == dumps(expected), (self.name, tail, expected)
            self.lines.append(tail)
        path = HERE / f"{self.name}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in self.lines))
        return path


def opened_attempt(effects: list[Effect]) -> int:
    """The attempt number of the one socket ``effects`` open."""
    (attempt,) = [e.attempt for e in effects if isinstance(e, OpenSocket)]
    return attempt


NO_GRACE: dict[str, JsonValue] = {"health": {"retry_grace_ms": None, "startup_grace_ms": 0}}


# ------------------------------------------------------------------ the incident and its variants


def _incident_start(v: Vector, *, pn: str = PN) -> None:
    v.event(T0 - 60_000, ev.Start(account="acct"))  # generation 1 opens socket 1
    v.event(T0 - 59_000, ev.SocketOpened(account="acct", generation=1, attempt=1, pn=pn))
    v.event(T0, ev.ReplyCaptured(reply_id="r1", account="acct", generation=1, chat=GROUP))
    v.event(T0 + 108_578, ev.SocketClosed(account="acct", generation=1, attempt=1, status=408))
    v.event(T0 + 108_692, ev.HealthCheck())  # 114 ms later: restart, generation 2 opens socket 2
    v.event(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="hello"))


def incident() -> Vector:
    """408 -> health restart 114 ms later (grace off) -> B boots LID-only; auth-dir mapping."""
    v = Vector("incident", config=NO_GRACE, mapping=[[PN_BARE, LID]])
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, attempt=2, lid=LID))
    v.event(T0 + 116_600, ev.TransmitAcked(reply_id="r1", generation=2, attempt=2))
    return v


def lid_only_mapping_learned() -> Vector:
    """PN-only origin, LID-only successor: waits 'not comparable' until the mapping is learned."""
    v = Vector("pn_lid_mapping_learned", config=NO_GRACE)
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, attempt=2, lid=LID))
    v.event(T0 + 116_500, ev.MappingLearned(pn=PN_BARE, lid=LID))
    v.event(T0 + 116_600, ev.TransmitAcked(reply_id="r1", generation=2, attempt=2))
    return v


def lid_only_no_mapping() -> Vector:
    """PN-only origin, LID-only successor, no mapping ever: waits, then fails at its deadline."""
    v = Vector("pn_lid_no_mapping", config=NO_GRACE)
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, attempt=2, lid=LID))
    v.event(T0 + 300_000, ev.TimerFired(timer=DeadlineTimer("r1")))
    return v


def relink_refused() -> Vector:
    """The successor logged in as another number: the reply is refused, never sent."""
    v = Vector("relink_refused", config=NO_GRACE, mapping=[[PN_BARE, LID]])
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, attempt=2, pn=OTHER_PN))
    return v


def unauthenticated_origin() -> Vector:
    """The origin never showed an identity: a handoff is refused (fail closed)."""
    v = Vector("unauthenticated_origin", config=NO_GRACE)
    v.event(0, ev.Start(account="acct"))
    v.event(1_000, ev.SocketOpened(account="acct", generation=1, attempt=1))
    v.event(2_000, ev.ReplyCaptured(reply_id="r1", account="acct", generation=1, chat=GROUP))
    v.event(3_000, ev.SocketClosed(account="acct", generation=1, attempt=1, status=408))
    v.event(3_100, ev.Start(account="acct"))
    v.event(4_000, ev.SocketOpened(account="acct", generation=2, attempt=2, pn=PN))
    v.event(5_000, ev.ReplyReady(reply_id="r1", payload="hello"))
    return v


STATUSES: tuple[int | None, ...] = (401, 403, 408, 411, 428, 440, 499, 500, 503, 515, None, 999)


def status_codes() -> Vector:
    """Every close decision: one account per status, opened then closed with it."""
    v = Vector("status_codes")
    now = 0
    for status in STATUSES:
        account = f"s{status if status is not None else 'none'}"
        v.event(now, ev.Start(account=account))
        v.event(now + 500, ev.SocketOpened(account=account, generation=1, attempt=1, pn=PN))
        v.event(
            now + 1_000,
            ev.SocketClosed(account=account, generation=1, attempt=1, status=status),
        )
        now += 10_000
    # An adapter's own watchdog (WatchdogSilence): the engine closes the socket with 499.
    v.event(now, ev.Start(account="watchdog"))
    v.event(now + 500, ev.SocketOpened(account="watchdog", generation=1, attempt=1, pn=PN))
    v.event(
        now + 300_000,
        ev.WatchdogSilence(account="watchdog", generation=1, attempt=1, silent_ms=299_500),
    )
    v.event(now + 300_100, ev.SocketClosed(account="watchdog", generation=1, attempt=1, status=499))
    return v


# ------------------------------------------------------------------ delivery


def _open_and_capture(v: Vector, *, kind: str = "text", deadline: int | None = None) -> None:
    v.event(0, ev.Start(account="acct"))
    v.event(1_000, ev.SocketOpened(account="acct", generation=1, attempt=1, pn=PN))
    v.event(
        2_000,
        ev.ReplyCaptured(
            reply_id="r1",
            account="acct",
            generation=1,
            chat=GROUP,
            kind=kind,
            deadline_ms=deadline,
            message_id="3EB0C0FFEE",
        ),
    )


def delivery_ack() -> Vector:
    v = Vector("delivery_ack")
    _open_and_capture(v)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(3_200, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    return v


def delivery_lost_before_io() -> Vector:
    """The transmission failed before any byte left: routed again (same message id)."""
    v = Vector("delivery_lost_before_io")
    _open_and_capture(v)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(
        3_100,
        ev.TransmitFailed(
            reply_id="r1", generation=1, attempt=1, io_started=False, error="socket not open"
        ),
    )
    v.event(3_300, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    return v


def delivery_lost_after_io() -> Vector:
    """I/O may have started: resent with the same message id; socket dies; the successor acks."""
    v = Vector("delivery_lost_after_io")
    _open_and_capture(v)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(
        3_100,
        ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=True, error="timeout"),
    )
    v.event(3_200, ev.SocketClosed(account="acct", generation=1, attempt=1, status=428))
    v.event(3_300, ev.Start(account="acct"))
    v.event(4_000, ev.SocketOpened(account="acct", generation=2, attempt=2, pn=PN))
    v.event(4_100, ev.TransmitAcked(reply_id="r1", generation=2, attempt=2))
    # the late ack of the first transmission, through generation 1's socket
    v.event(4_200, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    return v


def delivery_unresendable() -> Vector:
    """A kind that may not be resent (config) and I/O may have started: ends unknown."""
    v = Vector("delivery_unresendable", config={"resendable_kinds": ["text"]})
    _open_and_capture(v, kind="media")
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="img"))
    v.event(
        3_100,
        ev.TransmitFailed(reply_id="r1", generation=1, attempt=1, io_started=True, error="reset"),
    )
    return v


def delivery_deadline_failed() -> Vector:
    """Never sent before its deadline (no route while the socket is down): failed."""
    v = Vector("delivery_deadline_failed")
    _open_and_capture(v, deadline=60_000)
    v.event(2_500, ev.SocketClosed(account="acct", generation=1, attempt=1, status=503))
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(60_000, ev.TimerFired(timer=DeadlineTimer("r1")))
    v.event(60_001, ev.TimerFired(timer=DeadlineTimer("r1")))  # a timer that raced the end
    return v


def delivery_deadline_unknown() -> Vector:
    """Transmitted, never acknowledged, deadline passes: unknown (never replayed)."""
    v = Vector("delivery_deadline_unknown")
    _open_and_capture(v, deadline=60_000)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(60_000, ev.TimerFired(timer=DeadlineTimer("r1")))
    return v


def delivery_duplicate_ack() -> Vector:
    v = Vector("delivery_duplicate_ack")
    _open_and_capture(v)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(3_200, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    v.event(3_300, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    return v


def duplicate_message_id() -> Vector:
    """A message id the receiver may already hold is never given to a second reply."""
    v = Vector("duplicate_message_id")
    _open_and_capture(v)  # r1 carries message id 3EB0C0FFEE
    capture = ev.ReplyCaptured(
        reply_id="r2", account="acct", generation=1, chat=GROUP, message_id="3EB0C0FFEE"
    )
    v.event(2_100, capture)  # rejected: r1 holds that id
    v.event(2_200, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(2_300, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    v.event(2_400, capture)  # still rejected after r1 ended: the receiver has that id now
    # a reply without an explicit message id uses its reply id, which must be free too
    v.event(
        2_500,
        ev.ReplyCaptured(reply_id="r3", account="acct", generation=1, chat=GROUP, message_id="r4"),
    )
    v.event(2_600, ev.ReplyCaptured(reply_id="r4", account="acct", generation=1, chat=GROUP))
    v.event(2_700, ev.ReplyCaptured(reply_id="r5", account="acct", generation=1, chat=GROUP))
    return v


# ------------------------------------------------------------------ protocol 2: sockets


def socket_attempts() -> Vector:
    """One generation opens many sockets; facts about an older one are late, never current.

    Attempt numbers are per account and only grow: a 515 reconnect and a retry open
    sockets 2 and 3 of generation 1; generation 2 then opens socket 4.
    """
    v = Vector("socket_attempts", config={"health_timer": False})
    v.event(0, ev.Start(account="acct"))  # socket 1
    v.event(1_000, ev.SocketOpened(account="acct", generation=1, attempt=1, pn=PN))
    v.event(2_000, ev.SocketClosed(account="acct", generation=1, attempt=1, status=515))
    v.event(2_100, ev.SocketOpened(account="acct", generation=1, attempt=2, pn=PN))  # reconnected
    # Late facts about socket 1, after socket 2 took over: ignored, whatever order they came in.
    v.event(2_200, ev.SocketClosed(account="acct", generation=1, attempt=1, status=408))
    v.event(2_300, ev.Activity(account="acct", generation=1, attempt=1, kind=ActivityKind.FRAME))
    v.event(2_400, ev.SocketOpened(account="acct", generation=1, attempt=1, pn=PN))  # closed
    v.event(2_500, ev.SocketClosed(account="acct", generation=1, attempt=7, status=408))  # never
    # A reply goes out through socket 2; socket 2 drops before the ack, the retry opens socket 3.
    v.event(3_000, ev.ReplyCaptured(reply_id="r1", account="acct", generation=1, chat=GROUP))
    v.event(3_100, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(3_200, ev.SocketClosed(account="acct", generation=1, attempt=2, status=408))
    v.fire(RetryTimer("acct", 1))  # socket 3
    v.event(6_000, ev.SocketOpened(account="acct", generation=1, attempt=3, pn=PN))  # resent
    v.event(6_100, ev.TransmitAcked(reply_id="r1", generation=1, attempt=2))  # the late ack
    v.event(6_200, ev.TransmitAcked(reply_id="r1", generation=1, attempt=3))
    # A new generation takes the next number: the counter is the account's.
    v.event(7_000, ev.Start(account="acct"))  # socket 4; generation 1 closes socket 3
    v.event(7_100, ev.SocketClosed(account="acct", generation=1, attempt=3, status=None))
    v.event(7_200, ev.SocketOpened(account="acct", generation=2, attempt=4, pn=PN))
    return v


def _open_watched(v: Vector, account: str = "acct") -> None:
    v.event(0, ev.Start(account=account))
    v.event(1_000, ev.SocketOpened(account=account, generation=1, attempt=1, pn=PN))


def watchdog_closes_silent_socket() -> Vector:
    """A socket that shows nothing for watchdog_ms (default 5 min) is closed with 499.

    The health check just after it holds (the retry grace covers a controller closing on
    its own watchdog's request); the close comes back, the retry opens a fresh socket with
    a watchdog of its own, and the first socket's timer, fired late, is stale.
    """
    v = Vector("watchdog_closes_silent_socket", config={"health_timer": False})
    _open_watched(v)  # watchdog/acct/1 due at 301000
    v.fire(WatchdogTimer("acct", 1))  # nothing since the open: close_socket 499
    v.event(301_050, ev.HealthCheck())
    v.event(301_100, ev.SocketClosed(account="acct", generation=1, attempt=1, status=499))
    v.fire(RetryTimer("acct", 1))  # socket 2
    v.event(305_000, ev.SocketOpened(account="acct", generation=1, attempt=2, pn=PN))
    v.event(305_100, ev.TimerFired(timer=WatchdogTimer("acct", 1)))  # socket 1's, raced
    return v


def watchdog_rearmed_by_activity() -> Vector:
    """Activity (a frame, an inbound message) keeps the watchdog from closing the socket.

    When the timer fires and there was activity, it is re-armed to watchdog_ms after the
    last activity; only a full watchdog_ms of silence closes the socket (499).
    """
    v = Vector("watchdog_rearmed_by_activity", config={"health_timer": False})
    _open_watched(v)  # watchdog/acct/1 due at 301000
    v.event(100_000, ev.Activity(account="acct", generation=1, attempt=1, kind=ActivityKind.FRAME))
    v.event(
        200_000, ev.Activity(account="acct", generation=1, attempt=1, kind=ActivityKind.INBOUND)
    )
    v.fire(WatchdogTimer("acct", 1))  # re-armed: due 200000 + 300000
    v.event(450_000, ev.Activity(account="acct", generation=1, attempt=1, kind=ActivityKind.FRAME))
    v.fire(WatchdogTimer("acct", 1))  # re-armed: due 450000 + 300000
    v.fire(WatchdogTimer("acct", 1))  # silent since 450000: close_socket 499
    return v


def activity_stale_rule() -> Vector:
    """Frames feed only the watchdog; inbound messages also feed the health stale rule.

    Two accounts show activity every 4 minutes for 31 minutes: transport frames only
    (a socket whose keepalives work but that hands nothing to the app), or inbound
    messages. Both keep their watchdog fed; at the health check only the first one is
    stale (no event for 30 minutes) and restarted.
    """
    v = Vector("activity_stale_rule", config={"health_timer": False})
    kinds = {"frames": ActivityKind.FRAME, "inbound": ActivityKind.INBOUND}
    for account in kinds:
        v.event(0, ev.Start(account=account))
    for account in kinds:
        v.event(1_000, ev.SocketOpened(account=account, generation=1, attempt=1, pn=PN))
    for now in range(4 * MINUTE, 32 * MINUTE, 4 * MINUTE):
        v.until(now)
        for account, kind in kinds.items():
            v.event(now, ev.Activity(account=account, generation=1, attempt=1, kind=kind))
    v.until(31 * MINUTE)
    v.event(31 * MINUTE + 1_000, ev.HealthCheck())
    return v


# ------------------------------------------------------------------ protocol 2: shutdown


def _replies_in_every_state(v: Vector) -> None:
    """Account a keeps an open socket, account b's socket closed: open replies in each state."""
    for account in ("a", "b"):
        v.event(0, ev.Start(account=account))
    for account in ("a", "b"):
        v.event(1_000, ev.SocketOpened(account=account, generation=1, attempt=1, pn=PN))
    captured = {"a": ("pending", "in_flight", "delivered"), "b": ("waiting", "waiting_after_io")}
    for account, reply_ids in captured.items():
        for reply_id in reply_ids:
            v.event(
                2_000,
                ev.ReplyCaptured(reply_id=reply_id, account=account, generation=1, chat=GROUP),
            )
    v.event(3_000, ev.ReplyReady(reply_id="in_flight", payload="x"))
    v.event(3_000, ev.ReplyReady(reply_id="delivered", payload="x"))
    v.event(3_100, ev.TransmitAcked(reply_id="delivered", generation=1, attempt=1))
    v.event(3_200, ev.ReplyReady(reply_id="waiting_after_io", payload="x"))
    v.event(3_300, ev.SocketClosed(account="b", generation=1, attempt=1, status=408))
    v.event(3_400, ev.ReplyReady(reply_id="waiting", payload="x"))


def shutdown_ends_replies() -> Vector:
    """The host's shutdown: every open reply ends once, every controller stops, then nothing.

    Never sent -> failed ("<reason> before the reply was sent"); a transmission may have
    reached the receiver -> unknown. No end-of-input line follows: the host shut down.
    """
    v = Vector("shutdown_ends_replies")
    _replies_in_every_state(v)
    v.event(4_000, ev.Shutdown(reason="deploy"))
    v.event(4_100, ev.TransmitAcked(reply_id="in_flight", generation=1, attempt=1))
    v.event(4_200, ev.Start(account="a"))
    return v


def end_of_input() -> Vector:
    """No shutdown from the host: at EOF the server shuts down ("end of input") and says how."""
    v = Vector("end_of_input")
    _replies_in_every_state(v)
    return v


# ------------------------------------------------------------------ protocol 2: the registry


def external_registry() -> Vector:
    """An external registry (config external_registry): a generation opens no socket before it
    is granted the account; a refusal, or a later revocation, stops it."""
    v = Vector("external_registry", config={"external_registry": True, "health_timer": False})
    v.event(0, ev.Start(account="acct"))  # register_request, no socket yet
    v.event(100, ev.RegistryAnswer(account="acct", generation=1, granted=True))  # socket 1
    v.event(1_000, ev.SocketOpened(account="acct", generation=1, attempt=1, pn=PN))
    v.event(2_000, ev.Start(account="acct"))  # generation 2 asks; generation 1 keeps running
    v.event(
        2_100,
        ev.RegistryAnswer(account="acct", generation=2, granted=False, reason="held by gw-b"),
    )
    v.event(3_000, ev.RegistryAnswer(account="acct", generation=1, granted=True))  # a renewal
    v.event(
        4_000,
        ev.RegistryAnswer(account="acct", generation=1, granted=False, reason="lease lost"),
    )
    v.event(4_100, ev.RegistryAnswer(account="acct", generation=1, granted=True))  # too late
    v.event(5_000, ev.RegistryAnswer(account="acct", generation=9, granted=True))  # never issued
    return v


# ------------------------------------------------------------------ refusals


def rejections() -> Vector:
    """Each input the engine refuses, with its code: the answer is one `rejected` effect and
    the engine is unchanged (the later lines would show it otherwise)."""
    v = Vector("rejections", config={"health_timer": False})
    v.event(0, ev.Start(account="acct"))
    v.event(1_000, ev.SocketOpened(account="acct", generation=1, attempt=1, pn=PN))
    v.event(1_100, ev.ReplyCaptured(reply_id="r1", account="acct", generation=1, chat=GROUP))
    v.event(1_200, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(1_300, ev.TransmitAcked(reply_id="r1", generation=1, attempt=1))
    v.event(1_400, ev.ReplyCaptured(reply_id="r2", account="acct", generation=1, chat=GROUP))
    v.event(1_500, ev.ReplyReady(reply_id="r2", payload="hi"))
    refused: list[ev.Event] = [
        ev.Stop(account="acct", generation=9),  # unknown_controller
        ev.Stop(account="nobody", generation=1),  # unknown_controller
        ev.SocketClosed(account="acct", generation=1, attempt=9, status=408),  # unknown_socket
        ev.WatchdogSilence(account="acct", generation=1, attempt=1, silent_ms=-5),  # bad_silence
        ev.SocketOpened(account="acct", generation=1, attempt=1, pn="not a jid"),  # bad_identity
        ev.SocketOpened(account="acct", generation=1, attempt=1, pn=PN),  # invalid_transition
        ev.MappingLearned(pn=PN_BARE, lid=LID),  # accepted (the next line needs it)
        ev.MappingLearned(pn=OTHER_PN, lid=LID),  # mapping_conflict
        ev.ReplyCaptured(reply_id="r1", account="acct", generation=1, chat=GROUP),  # duplicate
        ev.ReplyCaptured(
            reply_id="r3", account="acct", generation=1, chat=GROUP, kind="fax"
        ),  # unknown_kind
        ev.ReplyCaptured(
            reply_id="r3", account="acct", generation=1, chat=GROUP, deadline_ms=2_000
        ),  # bad_deadline: not after now
        ev.ReplyReady(reply_id="nope"),  # unknown_reply
        ev.ReplyReady(reply_id="r1"),  # reply_ended
        ev.ReplyReady(reply_id="r2"),  # reply_not_pending
        ev.TransmitAcked(reply_id="r2", generation=1, attempt=2),  # unexpected_ack
        ev.TransmitAcked(reply_id="r1", generation=1, attempt=1),  # duplicate_ack
        ev.TransmitFailed(
            reply_id="nope", generation=1, attempt=1, io_started=False
        ),  # unexpected_failure
        ev.TimerFired(timer=DeadlineTimer("nope")),  # unknown_timer
        ev.TimerFired(timer=WatchdogTimer("nobody", 1)),  # unknown_timer
        ev.RegistryAnswer(account="acct", generation=1, granted=True),  # no_external_registry
    ]
    for event in refused:
        v.event(3_000, event)
    # A generation that ended and that nothing names is forgotten: a capture by it is refused.
    v.event(4_000, ev.TransmitAcked(reply_id="r2", generation=1, attempt=1))
    v.event(4_100, ev.Start(account="acct"))  # socket 2; generation 1 stops
    v.event(4_200, ev.ReplyCaptured(reply_id="r4", account="acct", generation=1, chat=GROUP))
    # `now` within 2**53-1 but too close to it for the engine's own deadlines: bad_now
    v.event(2**53 - 1, ev.HealthCheck())
    v.event(5_000, ev.Shutdown())
    v.event(5_100, ev.HealthCheck())  # shut_down
    return v


def protocol_errors() -> Vector:
    """Bad input lines between good ones: each gets an error line, the session goes on."""
    v = Vector("protocol_errors")
    v.event(100, ev.Start(account="acct"))
    v.raw(b"this is not json")
    v.raw(b"[1, 2, 3]")
    v.raw(b"")
    v.raw(b'{"hello": {"protocol": 2, "seed": 1}}')
    v.raw(b'{"id": 7, "now": 200, "event": {"type": "teleport", "account": "acct"}}')
    v.raw(b'{"id": 8, "now": 200, "event": {"type": "stop", "account": "acct", "generation": "1"}}')
    v.raw(b'{"id": 9, "now": 200, "event": {"type": "start"}}')
    v.raw(b'{"id": 10, "now": 200, "event": {"type": "start", "account": "acct", "extra": 1}}')
    v.raw(b'{"id": 11, "event": {"type": "health_check"}}')
    v.raw(b'{"id": 12, "now": "200", "event": {"type": "health_check"}}')
    v.raw(b'{"id": 13, "now": 50, "event": {"type": "health_check"}}')
    v.raw(b'{"id": 14, "now": 200}')
    v.raw(b'{"id": 15, "now": 200, "event": {"type": "health_check"}, "extra": true}')
    v.raw(b'{"id": [15], "now": 200, "event": {"type": "health_check"}}')
    v.raw(b'{"id": 16, "now": 200, "event": {"type": ["start"]}}')  # any JSON value, any place
    # integers beyond 2**53-1 (what every binding holds exactly) are refused at decode
    v.raw(b'{"id": 17, "now": 9007199254740992, "event": {"type": "health_check"}}')
    v.raw(b'{"id": 18, "now": 18446744073709551000, "event": {"type": "start", "account": "b"}}')
    v.raw(b'{"id": 9007199254740992, "now": 200, "event": {"type": "health_check"}}')
    v.raw(
        b'{"id": 19, "now": 200, "event": '
        b'{"type": "stop", "account": "acct", "generation": 9007199254740992}}'
    )
    # protocol 2's fields: a socket fact without its attempt, a timer key that names no timer,
    # a protocol 1 field, an activity kind that is not one
    v.raw(
        b'{"id": 20, "now": 200, "event": '
        b'{"type": "socket_closed", "account": "acct", "generation": 1, "status": 408}}'
    )
    v.raw(b'{"id": 21, "now": 200, "event": {"type": "timer_fired", "timer": "retry/acct/x"}}')
    v.raw(b'{"id": 22, "now": 200, "event": {"type": "timer_fired", "key": "health"}}')
    v.raw(
        b'{"id": 23, "now": 200, "event": {"type": "activity", "account": "acct",'
        b' "generation": 1, "attempt": 1, "kind": "ping"}}'
    )
    # the engine's own rejection, at the largest now: it changes nothing, not even the clock
    v.event(9007199254740991, ev.Stop(account="acct", generation=9))
    v.event(200, ev.Stop(account="acct", generation=9))
    v.event(300, ev.Stop(account="acct", generation=1))
    return v


VECTORS = (
    incident,
    lid_only_mapping_learned,
    lid_only_no_mapping,
    relink_refused,
    unauthenticated_origin,
    status_codes,
    delivery_ack,
    delivery_lost_before_io,
    delivery_lost_after_io,
    delivery_unresendable,
    delivery_deadline_failed,
    delivery_deadline_unknown,
    delivery_duplicate_ack,
    duplicate_message_id,
    socket_attempts,
    watchdog_closes_silent_socket,
    watchdog_rearmed_by_activity,
    activity_stale_rule,
    shutdown_ends_replies,
    end_of_input,
    external_registry,
    rejections,
    protocol_errors,
)


def main() -> int:
    for build in VECTORS:
        path = build().write()
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
