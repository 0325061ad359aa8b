"""Write the conformance vectors ``conformance/*.jsonl`` from the engine itself.

Run from the repository root: ``python conformance/generate.py``. Never edit a
vector's expected lines by hand: if the engine's answer looks wrong, fix the
engine (or report it) and regenerate.

Each vector is one session: line 1 is the hello, then input line / expected
answer line pairs. Event lines' answers are computed here by calling
``Engine.handle`` directly (not through the stdio server), so replaying a vector
through ``heirline serve --stdio`` checks the server against the engine.
Protocol-error lines (``raw``) take their answer from the session layer, the
only place such errors exist.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import orjson

from heirline.adapters.stdio import Session, build_config, build_mapping
from heirline.core import events as ev
from heirline.core.engine import Engine
from heirline.core.wire import JsonValue, encode

HERE = Path(__file__).resolve().parent
T0 = 43_239_242  # 12:00:39.242, the inbound message of the incident
PN = "4915123456789:3@s.whatsapp.net"
PN_BARE = "4915123456789@s.whatsapp.net"
LID = "123456789012345@lid"
OTHER_PN = "4915000000000@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


class Vector:
    """One transcript: the engine answers every event line; the session answers raw lines."""

    def __init__(
        self,
        name: str,
        *,
        seed: int = 7,
        config: dict[str, JsonValue] | None = None,
        mapping: list[list[str]] | None = None,
    ) -> None:
        self.name = name
        hello: dict[str, JsonValue] = {"protocol": 1, "seed": seed}
        if config is not None:
            hello["config"] = config
        if mapping is not None:
            hello["mapping"] = mapping
        self.engine = Engine(
            build_config(config), random=random.Random(seed).random, mapping=build_mapping(mapping)
        )
        self.session = Session()  # mirrors the engine, for raw lines and as a cross-check
        hello_line = orjson.dumps({"hello": hello})
        self.session.feed(hello_line)
        self.lines: list[bytes] = [hello_line]
        self.next_id = 1

    def event(self, now: int, event: ev.Event) -> None:
        rid = self.next_id
        self.next_id += 1
        line = orjson.dumps({"id": rid, "now": now, "event": encode(event)})
        effects = self.engine.handle(event, now)
        answer = orjson.dumps({"id": rid, "effects": [encode(e) for e in effects]})
        mirrored = self.session.feed(line).rstrip(b"\n")
        assert mirrored == answer, (self.name, line, mirrored, answer)
        self.lines += [line, answer]

    def raw(self, line: bytes) -> None:
        answer = self.session.feed(line).rstrip(b"\n")
        assert b'"error"' in answer, (self.name, line, answer)
        self.lines += [line, answer]

    def write(self) -> Path:
        path = HERE / f"{self.name}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in self.lines))
        return path


NO_GRACE: dict[str, JsonValue] = {"health": {"retry_grace_ms": None, "startup_grace_ms": 0}}


def _incident_start(v: Vector, *, pn: str = PN) -> None:
    v.event(T0 - 60_000, ev.Start(account="acct"))
    v.event(T0 - 59_000, ev.SocketOpened(account="acct", generation=1, pn=pn))
    v.event(T0, ev.ReplyCaptured(reply_id="r1", account="acct", generation=1, chat=GROUP))
    v.event(T0 + 108_578, ev.SocketClosed(account="acct", generation=1, status=408))
    v.event(T0 + 108_692, ev.HealthCheck())  # 114 ms later: restart (retry grace off)
    v.event(T0 + 110_000, ev.ReplyReady(reply_id="r1", payload="hello"))


def incident() -> Vector:
    """408 -> health restart 114 ms later (grace off) -> B boots LID-only; auth-dir mapping."""
    v = Vector("incident", config=NO_GRACE, mapping=[[PN_BARE, LID]])
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, lid=LID))
    v.event(T0 + 116_600, ev.TransmitAcked(reply_id="r1", generation=2))
    return v


def lid_only_mapping_learned() -> Vector:
    """PN-only origin, LID-only successor: waits 'not comparable' until the mapping is learned."""
    v = Vector("pn_lid_mapping_learned", config=NO_GRACE)
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, lid=LID))
    v.event(T0 + 116_500, ev.MappingLearned(pn=PN_BARE, lid=LID))
    v.event(T0 + 116_600, ev.TransmitAcked(reply_id="r1", generation=2))
    return v


def lid_only_no_mapping() -> Vector:
    """PN-only origin, LID-only successor, no mapping ever: waits, then fails at its deadline."""
    v = Vector("pn_lid_no_mapping", config=NO_GRACE)
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, lid=LID))
    v.event(T0 + 300_000, ev.TimerFired(key="deadline/r1"))
    return v


def relink_refused() -> Vector:
    """The successor logged in as another number: the reply is refused, never sent."""
    v = Vector("relink_refused", config=NO_GRACE, mapping=[[PN_BARE, LID]])
    _incident_start(v)
    v.event(T0 + 116_408, ev.SocketOpened(account="acct", generation=2, pn=OTHER_PN))
    return v


def unauthenticated_origin() -> Vector:
    """The origin never showed an identity: a handoff is refused (fail closed)."""
    v = Vector("unauthenticated_origin", config=NO_GRACE)
    v.event(0, ev.Start(account="acct"))
    v.event(1_000, ev.SocketOpened(account="acct", generation=1))
    v.event(2_000, ev.ReplyCaptured(reply_id="r1", account="acct", generation=1, chat=GROUP))
    v.event(3_000, ev.SocketClosed(account="acct", generation=1, status=408))
    v.event(3_100, ev.Start(account="acct"))
    v.event(4_000, ev.SocketOpened(account="acct", generation=2, pn=PN))
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
        v.event(now + 500, ev.SocketOpened(account=account, generation=1, pn=PN))
        v.event(now + 1_000, ev.SocketClosed(account=account, generation=1, status=status))
        now += 10_000
    # The watchdog's own close: an open socket silent too long is closed with 499.
    v.event(now, ev.Start(account="watchdog"))
    v.event(now + 500, ev.SocketOpened(account="watchdog", generation=1, pn=PN))
    v.event(now + 300_500, ev.WatchdogSilence(account="watchdog", generation=1, silent_ms=300_000))
    v.event(now + 300_600, ev.SocketClosed(account="watchdog", generation=1, status=499))
    return v


def _open_and_capture(v: Vector, *, kind: str = "text", deadline: int | None = None) -> None:
    v.event(0, ev.Start(account="acct"))
    v.event(1_000, ev.SocketOpened(account="acct", generation=1, pn=PN))
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
    v.event(3_200, ev.TransmitAcked(reply_id="r1", generation=1))
    return v


def delivery_lost_before_io() -> Vector:
    """The attempt failed before any byte left: routed again (same message id)."""
    v = Vector("delivery_lost_before_io")
    _open_and_capture(v)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(
        3_100,
        ev.TransmitFailed(reply_id="r1", generation=1, io_started=False, error="socket not open"),
    )
    v.event(3_300, ev.TransmitAcked(reply_id="r1", generation=1))
    return v


def delivery_lost_after_io() -> Vector:
    """I/O may have started: resent with the same message id; socket dies; the successor acks."""
    v = Vector("delivery_lost_after_io")
    _open_and_capture(v)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(3_100, ev.TransmitFailed(reply_id="r1", generation=1, io_started=True, error="timeout"))
    v.event(3_200, ev.SocketClosed(account="acct", generation=1, status=428))
    v.event(3_300, ev.Start(account="acct"))
    v.event(4_000, ev.SocketOpened(account="acct", generation=2, pn=PN))
    v.event(4_100, ev.TransmitAcked(reply_id="r1", generation=2))
    v.event(4_200, ev.TransmitAcked(reply_id="r1", generation=1))  # late ack of the first try
    return v


def delivery_unresendable() -> Vector:
    """A kind that may not be resent (config) and I/O may have started: ends unknown."""
    v = Vector("delivery_unresendable", config={"resendable_kinds": ["text"]})
    _open_and_capture(v, kind="media")
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="img"))
    v.event(3_100, ev.TransmitFailed(reply_id="r1", generation=1, io_started=True, error="reset"))
    return v


def delivery_deadline_failed() -> Vector:
    """Never sent before its deadline (no route while the socket is down): failed."""
    v = Vector("delivery_deadline_failed")
    _open_and_capture(v, deadline=60_000)
    v.event(2_500, ev.SocketClosed(account="acct", generation=1, status=503))
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(60_000, ev.TimerFired(key="deadline/r1"))
    v.event(60_001, ev.TimerFired(key="deadline/r1"))  # a timer that raced the end
    return v


def delivery_deadline_unknown() -> Vector:
    """Transmitted, never acknowledged, deadline passes: unknown (never replayed)."""
    v = Vector("delivery_deadline_unknown")
    _open_and_capture(v, deadline=60_000)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(60_000, ev.TimerFired(key="deadline/r1"))
    return v


def delivery_duplicate_ack() -> Vector:
    v = Vector("delivery_duplicate_ack")
    _open_and_capture(v)
    v.event(3_000, ev.ReplyReady(reply_id="r1", payload="hi"))
    v.event(3_200, ev.TransmitAcked(reply_id="r1", generation=1))
    v.event(3_300, ev.TransmitAcked(reply_id="r1", generation=1))
    return v


def protocol_errors() -> Vector:
    """Bad input lines between good ones: each gets an error line, the session goes on."""
    v = Vector("protocol_errors")
    v.event(100, ev.Start(account="acct"))
    v.raw(b"this is not json")
    v.raw(b"[1, 2, 3]")
    v.raw(b"")
    v.raw(b'{"hello": {"protocol": 1, "seed": 1}}')
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
    protocol_errors,
)


def main() -> int:
    for build in VECTORS:
        path = build().write()
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
