"""The reply book: every open reply, who waits, what is in flight, and what ended.

The book owns the delivery policy: given the route the engine decided, it
fires the reply's trigger and says what to do (transmit, wait, end with which
outcome and reason); it judges acks and failures against what was really
sent; it ends replies at their deadline and at shutdown, exactly once. It
knows controllers only as the objects a reply holds (its origin, and the one
its transmission is in flight through), and tells its owner through
``release`` when a controller is no longer named by any open reply, so the
owner can forget a generation nothing refers to.

Ended replies are remembered (a bounded FIFO of ``remember_ended`` entries) so
a late ack is told from a bogus one, and so a new capture cannot reuse the
message id of a reply the receiver may already hold: a deduplicating receiver
would drop the new one while both are reported delivered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from heirline.core.controller import Controller
from heirline.core.delivery import KINDS, EndedReply, Reply, ReplyState, ReplyTrigger
from heirline.core.effects import (
    CancelTimer,
    Effect,
    Log,
    LogLevel,
    ReplyDelivered,
    ReplyFailed,
    StartTimer,
    Transmit,
)
from heirline.core.errors import Rejection
from heirline.core.identity import KeyIndex, MappingView, SelfIdentity, identity_keys, resolve
from heirline.core.journal import EndedRecord, ReplyRecord
from heirline.core.routing import Route, RouteKind
from heirline.core.timers import DeadlineTimer

_G = ReplyTrigger


_DEBUG, _INFO, _WARNING = LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARNING

# Enum members the hot paths read, as module constants (class attribute access is slow on 3.11).
_LOGLEVEL_DEBUG = LogLevel.DEBUG
_REPLYSTATE_IN_FLIGHT = ReplyState.IN_FLIGHT
_REPLYSTATE_PENDING = ReplyState.PENDING
_ROUTEKIND_REFUSE = RouteKind.REFUSE
_ROUTEKIND_WAIT = RouteKind.WAIT
_G_ACK = _G.ACK
_G_DEADLINE = _G.DEADLINE
_G_DEADLINE_UNCLEAR = _G.DEADLINE_UNCLEAR
_G_GIVE_UP = _G.GIVE_UP
_G_HOLD = _G.HOLD
_G_LOST_BEFORE_IO = _G.LOST_BEFORE_IO
_G_LOST_RESENDABLE = _G.LOST_RESENDABLE
_G_LOST_UNRESENDABLE = _G.LOST_UNRESENDABLE
_G_REFUSE = _G.REFUSE
_G_REFUSE_UNCLEAR = _G.REFUSE_UNCLEAR
_G_SHUTDOWN = _G.SHUTDOWN
_G_SHUTDOWN_UNCLEAR = _G.SHUTDOWN_UNCLEAR
_G_TRANSMIT = _G.TRANSMIT


class ReplyBook:
    """Open replies, the waiting index, the in-flight index and the memory of ended replies."""

    __slots__ = (
        "_changed",
        "_ended",
        "_ended_since",
        "_flight",
        "_incomplete",
        "_message_ids",
        "_open",
        "_release",
        "_waiting",
        "log_level",
        "max_transmissions",
        "remember_ended",
        "resendable_kinds",
    )

    def __init__(
        self,
        *,
        max_transmissions: int,
        resendable_kinds: frozenset[str],
        remember_ended: int,
        release: Callable[[Controller], None],
        log_level: LogLevel = _LOGLEVEL_DEBUG,
        journal: bool = False,
    ) -> None:
        self.log_level = log_level
        self.max_transmissions = max_transmissions
        self.resendable_kinds = resendable_kinds
        self.remember_ended = remember_ended
        self._release = release
        self._open: dict[str, Reply] = {}
        self._waiting: dict[str, dict[str, Reply]] = {}  # account -> ordered waiting replies
        self._flight: dict[tuple[str, int], dict[str, Reply]] = {}  # (account, attempt) -> replies
        self._ended: OrderedDict[str, EndedReply] = OrderedDict()
        self._message_ids: dict[str, str] = {}  # message id -> reply id, open and remembered
        self._incomplete: KeyIndex[Reply] = KeyIndex()  # replies a mapping pair may complete
        # The journal's view (None without one): open replies changed, replies ended, since
        # the last take().
        self._changed: dict[str, Reply] | None = {} if journal else None
        self._ended_since: list[EndedRecord] | None = [] if journal else None

    # ------------------------------------------------------------------ queries

    def get(self, reply_id: str) -> Reply | None:
        """The open reply ``reply_id``, or ``None``."""
        return self._open.get(reply_id)

    def ended(self, reply_id: str) -> EndedReply | None:
        """What is remembered of an ended reply, or ``None`` (never captured, or forgotten)."""
        return self._ended.get(reply_id)

    def open_ids(self) -> tuple[str, ...]:
        """Ids of every open reply, in capture order."""
        return tuple(self._open)

    def in_flight(self) -> dict[str, int]:
        """Reply id -> generation, for every reply with a transmission awaiting its ack."""
        return {r.reply_id: r.via.generation for r in self._open.values() if r.via is not None}

    def waiting(self, account: str) -> list[Reply]:
        """The replies of ``account`` waiting for a route, in the order they started waiting."""
        waiting = self._waiting.get(account)
        return [] if waiting is None else list(waiting.values())

    def has_waiting(self, account: str) -> bool:
        """Whether any reply of ``account`` waits for a route (cheap: the usual answer is no)."""
        return account in self._waiting

    def has_in_flight(self, account: str, attempt: int) -> bool:
        """Whether any reply is in flight through socket ``attempt`` of ``account``."""
        return (account, attempt) in self._flight

    def waiting_accounts(self) -> list[str]:
        """Accounts with at least one waiting reply."""
        return list(self._waiting)

    def through(self, account: str, attempt: int) -> list[Reply]:
        """The replies in flight through socket ``attempt`` of ``account``, by reply id."""
        flight = self._flight.get((account, attempt))
        return [] if flight is None else [flight[rid] for rid in sorted(flight)]

    def open_replies(self) -> Iterable[Reply]:
        """Every open reply (do not end replies while iterating)."""
        return self._open.values()

    # ------------------------------------------------------------------ capture

    def check_new(self, reply_id: str, kind: str, message_id: str) -> None:
        """Reject a capture that can never be accepted (before the engine looks further)."""
        if reply_id in self._open or reply_id in self._ended:
            raise Rejection("duplicate_reply", f"reply {reply_id!r} was already captured")
        if kind not in KINDS:
            raise Rejection("unknown_kind", f"kind {kind!r} is not one of {sorted(KINDS)}")
        holder = self._message_ids.get(message_id)
        if holder is not None:
            raise Rejection(
                "duplicate_message_id",
                f"message id {message_id!r} is already carried by reply {holder!r}; "
                "the receiver deduplicates by it, so one of the two would be dropped",
            )

    def capture(
        self,
        reply_id: str,
        origin: Controller,
        chat: str,
        kind: str,
        message_id: str,
        identity: SelfIdentity,
        deadline_ms: int,
    ) -> list[Effect]:
        """Open a reply captured by ``origin`` with ``identity`` (already resolved)."""
        reply = Reply(reply_id, origin, chat, kind, message_id, identity, deadline_ms)
        self._open[reply_id] = reply
        self._message_ids[message_id] = reply_id
        self._incomplete.add(reply, reply.keys)
        origin.refs += 1
        changed = self._changed
        if changed is not None:
            reply.changed = changed
            changed[reply_id] = reply
        out: list[Effect] = [StartTimer(DeadlineTimer(reply_id), deadline_ms)]
        if self.log_level <= _DEBUG:
            out.append(
                Log(
                    "debug",
                    "reply_captured",
                    f"reply {reply_id} captured for {chat} ({kind})",
                    origin.account,
                    origin.generation,
                    {"identity": identity.describe(), "deadline_ms": deadline_ms},
                )
            )
        return out

    def live(self, reply_id: str) -> Reply:
        """The open reply ``reply_id``; a :class:`Rejection` if it ended or never existed."""
        reply = self._open.get(reply_id)
        if reply is None:
            code = "reply_ended" if reply_id in self._ended else "unknown_reply"
            what = "already ended" if code == "reply_ended" else "was never captured"
            raise Rejection(code, f"reply {reply_id!r} {what}")
        return reply

    def ready(self, reply_id: str, payload: str) -> Reply:
        """The reply's content is ready; it must still be pending."""
        reply = self.live(reply_id)
        if reply.state is not _REPLYSTATE_PENDING:
            raise Rejection(
                "reply_not_pending", f"reply {reply_id!r} is already {reply.state.value}"
            )
        reply.payload = payload
        return reply

    def reresolve(self, pn_user: str, lid_user: str, mapping: MappingView) -> list[str]:
        """Re-resolve the open replies a new pair may complete; the accounts they belong to."""
        index = self._incomplete
        accounts: dict[str, None] = {}
        for reply in index.touched(pn_user, lid_user):
            keys = identity_keys(resolve(reply.identity, mapping))
            if keys != reply.keys:
                index.remove(reply, reply.keys)
                reply.keys = keys
                index.add(reply, keys)
                accounts[reply.account] = None
        return list(accounts)

    # ------------------------------------------------------------------ routing

    def apply(
        self, reply: Reply, route: Route, generation: int | None, via: Controller | None
    ) -> list[Effect]:
        """Carry out one routing decision for ``reply``; ``via``: the controller to send through."""
        kind = route.kind
        if kind is _ROUTEKIND_WAIT:
            reply._set_state(_G_HOLD)
            self._waiting.setdefault(reply.account, {})[reply.reply_id] = reply
            reason = route.reason(generation)
            if reason == reply.wait_reason:
                return []
            reply.wait_reason = reason
            if self.log_level > _INFO:
                return []
            message = f"reply {reply.reply_id} waits: {reason}"
            return [Log("info", "reply_waiting", message, reply.account, reply.origin.generation)]
        if kind is _ROUTEKIND_REFUSE:
            reason = route.reason(generation)
            if reply.io_ever_started:
                # Nothing more goes out, but an earlier attempt may have arrived: say so.
                reply._set_state(_G_REFUSE_UNCLEAR)
                reason += "; an earlier transmission may have reached the receiver"
                return self._end(reply, "unknown", reason)
            reply._set_state(_G_REFUSE)
            return self._end(reply, "refused", reason)
        assert via is not None  # ORIGIN and SUCCESSOR name a controller with an open socket
        assert via.socket is not None
        reply._set_state(_G_TRANSMIT)
        self._unwait(reply)
        attempt = via.socket
        reply.via = via
        reply.via_attempt = attempt
        reply.transmissions += 1
        reply.sent[attempt] = via.generation
        via.refs += 1
        self._flight.setdefault((reply.account, attempt), {})[reply.reply_id] = reply
        transmit = Transmit(
            reply.reply_id,
            reply.account,
            via.generation,
            attempt,
            reply.message_id,
            reply.chat,
            reply.kind,
            reply.payload,
            reply.transmissions,
        )
        if self.log_level > _INFO:
            return [transmit]
        routed = Log(
            "info",
            "reply_routed",
            f"reply {reply.reply_id} -> {route.reason(generation)}",
            reply.account,
            via.generation,
            {"route": kind.value, "transmission": reply.transmissions},
        )
        return [routed, transmit]

    # ------------------------------------------------------------------ outcomes

    def _carried(
        self, reply_id: str, generation: int, attempt: int, code: str
    ) -> tuple[Reply | None, EndedReply | None]:
        """The live reply, or else its ended record, if socket ``attempt`` ever carried it.

        A fact about a transmission that never happened is rejected with ``code``.
        """
        reply = self._open.get(reply_id)
        ended = None if reply is not None else self._ended.get(reply_id)
        sent = reply.sent if reply is not None else (ended.sent if ended is not None else {})
        if sent.get(attempt) != generation:
            raise Rejection(
                code,
                f"reply {reply_id!r} was never transmitted through socket {attempt} "
                f"of generation {generation}",
            )
        return reply, ended

    def acked(self, reply_id: str, generation: int, attempt: int) -> list[Effect]:
        """The channel acknowledged a transmission of ``reply_id`` through socket ``attempt``."""
        reply, ended = self._carried(reply_id, generation, attempt, "unexpected_ack")
        if reply is None:
            assert ended is not None  # _carried found the socket in the ended record
            if ended.acked_attempt == attempt:
                raise Rejection(
                    "duplicate_ack",
                    f"reply {reply_id!r} was already acked through socket {attempt}",
                )
            return self._ignored(
                _WARNING,
                "late_ack",
                f"ack of reply {reply_id} through socket {attempt} after it ended "
                f"({ended.state.value}); the receiver deduplicates by message id",
                generation,
            )
        reply._set_state(_G_ACK)
        via = "origin" if generation == reply.origin.generation else "successor"
        delivered = ReplyDelivered(reply_id, generation, via)
        return self._finish(reply, delivered, acked_attempt=attempt)

    def failed(
        self, reply_id: str, generation: int, attempt: int, io_started: bool, error: str
    ) -> Reply | list[Effect]:
        """A transmission failed: the reply to lose (``lost``), or what to do if it was stale."""
        reply, _ = self._carried(reply_id, generation, attempt, "unexpected_failure")
        if reply is None or reply.via_attempt != attempt:
            return self._ignored(
                _DEBUG,
                "stale_failure",
                f"failure of an earlier transmission of {reply_id} ignored",
                generation,
            )
        return reply

    def lost(self, reply: Reply, io_started: bool, why: str) -> list[Effect] | None:
        """A transmission ended without an ack: the effects of ending the reply, or ``None``.

        ``None`` means the reply waits again and must be routed anew.
        """
        via = reply.via
        assert via is not None
        self._land(reply)
        reply.io_ever_started |= io_started
        if io_started and reply.kind not in self.resendable_kinds:
            reply._set_state(_G_LOST_UNRESENDABLE)
            reason = (
                f"transmission via generation {via.generation} may have reached the receiver "
                f"({why}); {reply.kind} is never resent"
            )
            return self._end(reply, "unknown", reason)
        if reply.transmissions >= self.max_transmissions:
            if reply.io_ever_started:
                reply._set_state(_G_LOST_UNRESENDABLE)
                reason = (
                    f"gave up after {reply.transmissions} transmissions ({why}); "
                    "an earlier one may have arrived"
                )
                return self._end(reply, "unknown", reason)
            reply._set_state(_G_GIVE_UP)
            reason = f"{reply.transmissions} transmissions failed before any I/O ({why})"
            return self._end(reply, "failed", reason)
        reply._set_state(_G_LOST_RESENDABLE if io_started else _G_LOST_BEFORE_IO)
        reply.wait_reason = ""
        return None

    def deadline(self, reply_id: str) -> list[Effect]:
        """The reply's deadline timer fired: end it if it is still open."""
        reply = self._open.get(reply_id)
        if reply is None:
            if reply_id in self._ended:
                return []  # the cancel raced the timer; the reply ended already
            raise Rejection("unknown_timer", f"no reply {reply_id!r} has a deadline")
        if reply.state is _REPLYSTATE_PENDING:
            reply._set_state(_G_DEADLINE)
            return self._end(reply, "failed", "deadline passed before the reply was ready")
        if reply.state is _REPLYSTATE_IN_FLIGHT or reply.io_ever_started:
            reply._set_state(_G_DEADLINE_UNCLEAR)
            why = "deadline passed; a transmission may have reached the receiver without an ack"
            return self._end(reply, "unknown", why)
        reply._set_state(_G_DEADLINE)
        return self._end(reply, "failed", f"deadline passed: {reply.wait_reason or 'no route'}")

    def shutdown(self, reason: str) -> list[Effect]:
        """End every open reply: failed if no I/O ever started, unknown if it may have."""
        out: list[Effect] = []
        for reply in list(self._open.values()):
            if reply.state is _REPLYSTATE_IN_FLIGHT or reply.io_ever_started:
                reply._set_state(_G_SHUTDOWN_UNCLEAR)
                why = f"{reason}; a transmission may have reached the receiver without an ack"
                out += self._end(reply, "unknown", why)
            else:
                reply._set_state(_G_SHUTDOWN)
                out += self._end(reply, "failed", f"{reason} before the reply was sent")
        return out

    # ------------------------------------------------------------------ the journal

    def take(self) -> tuple[tuple[ReplyRecord, ...], tuple[EndedRecord, ...]]:
        """The open replies changed and the replies ended since the last take (then forget)."""
        changed, ended = self._changed, self._ended_since
        if changed is None or ended is None:
            return (), ()
        replies = tuple(record(r) for r in changed.values())
        gone = tuple(ended)
        changed.clear()
        ended.clear()
        return replies, gone

    def remember(self, ended: EndedRecord) -> None:
        """An ended reply from a journal: remembered as if it had ended here."""
        sent = dict(ended.sent)
        state = ReplyState(ended.state)
        self._ended[ended.reply_id] = EndedReply(state, sent, ended.acked_attempt, ended.message_id)
        self._message_ids[ended.message_id] = ended.reply_id
        if len(self._ended) > self.remember_ended:
            forgotten, old = self._ended.popitem(last=False)
            if self._message_ids.get(old.message_id) == forgotten:
                del self._message_ids[old.message_id]

    def adopt(self, rec: ReplyRecord, origin: Controller, identity: SelfIdentity) -> list[Effect]:
        """An open reply from a journal, in a world where every socket is gone.

        It keeps its identity, deadline, message id, payload and what was sent.
        A transmission that had no outcome yet may have reached the receiver: as
        for a closed socket, the reply waits to be resent with the same message
        id if its kind may be, and otherwise ends ``unknown``.
        """
        self.check_new(rec.reply_id, rec.kind, rec.message_id)
        out = self.capture(
            rec.reply_id,
            origin,
            rec.chat,
            rec.kind,
            rec.message_id,
            identity,
            rec.deadline_ms,
        )[:1]  # the deadline timer, again
        reply = self._open[rec.reply_id]
        reply.transmissions = rec.transmissions
        reply.io_ever_started = rec.io_started or rec.in_flight
        reply.sent = dict(rec.sent)
        if rec.payload is None:
            return out
        reply.payload = rec.payload
        if rec.in_flight:
            reply._set_state(_G.TRANSMIT)
            if reply.kind not in self.resendable_kinds:
                reply._set_state(_G.LOST_UNRESENDABLE)
                why = (
                    "process restarted while a transmission was in flight: it may have reached "
                    f"the receiver; {reply.kind} is never resent"
                )
                return out + self._end(reply, "unknown", why)
            if reply.transmissions >= self.max_transmissions:
                reply._set_state(_G.LOST_UNRESENDABLE)
                why = (
                    f"process restarted after {reply.transmissions} transmissions; "
                    "an earlier one may have arrived"
                )
                return out + self._end(reply, "unknown", why)
            reply._set_state(_G.LOST_RESENDABLE)
        else:
            reply._set_state(_G.HOLD)
        reply.wait_reason = "process restarted: waiting for a same-identity successor"
        self._waiting.setdefault(reply.account, {})[reply.reply_id] = reply
        return out

    def release(self, account: str) -> list[Effect]:
        """Hand ``account``'s open replies over (another owner adopts them): no outcome here.

        They leave this book without ending: their deadline timers are cancelled
        and they are not remembered as ended.
        """
        out: list[Effect] = []
        for reply in [r for r in self._open.values() if r.account == account]:
            self._unwait(reply)
            self._incomplete.remove(reply, reply.keys)
            self._land(reply)
            del self._open[reply.reply_id]
            if self._message_ids.get(reply.message_id) == reply.reply_id:
                del self._message_ids[reply.message_id]
            if self._changed is not None:
                self._changed.pop(reply.reply_id, None)
            reply.origin.refs -= 1
            if reply.origin.refs == 0:
                self._release(reply.origin)
            out.append(CancelTimer(DeadlineTimer(reply.reply_id)))
        return out

    # ------------------------------------------------------------------ internals

    def _unwait(self, reply: Reply) -> None:
        waiting = self._waiting.get(reply.account)
        if waiting is not None and waiting.pop(reply.reply_id, None) is not None and not waiting:
            del self._waiting[reply.account]

    def _land(self, reply: Reply) -> None:
        """The reply's transmission is no longer in flight: drop it from the index, release."""
        via, attempt = reply.via, reply.via_attempt
        if via is None or attempt is None:
            return
        key = (reply.account, attempt)
        flight = self._flight.get(key)
        if flight is not None:
            flight.pop(reply.reply_id, None)
            if not flight:
                del self._flight[key]
        reply.via = None
        reply.via_attempt = None
        via.refs -= 1
        if via.refs == 0:
            self._release(via)

    def _end(self, reply: Reply, outcome: str, reason: str) -> list[Effect]:
        failed = ReplyFailed(reply.reply_id, outcome, reason)
        return self._finish(reply, failed, acked_attempt=None)

    def _finish(
        self, reply: Reply, outcome: ReplyDelivered | ReplyFailed, acked_attempt: int | None
    ) -> list[Effect]:
        self._unwait(reply)
        self._incomplete.remove(reply, reply.keys)
        self._land(reply)
        del self._open[reply.reply_id]
        ended = self._ended
        ended[reply.reply_id] = EndedReply(reply.state, reply.sent, acked_attempt, reply.message_id)
        if self._ended_since is not None:
            assert self._changed is not None
            self._changed.pop(reply.reply_id, None)
            self._ended_since.append(
                EndedRecord(
                    reply.reply_id,
                    reply.account,
                    reply.state.value,
                    reply.message_id,
                    tuple(reply.sent.items()),
                    acked_attempt,
                )
            )
        if len(ended) > self.remember_ended:
            forgotten, record = ended.popitem(last=False)
            if self._message_ids.get(record.message_id) == forgotten:
                del self._message_ids[record.message_id]
        origin = reply.origin
        origin.refs -= 1
        if origin.refs == 0:
            self._release(origin)
        return [CancelTimer(DeadlineTimer(reply.reply_id)), outcome]

    def _ignored(self, level: LogLevel, code: str, message: str, generation: int) -> list[Effect]:
        """A late or raced fact that changes nothing: say so (if anyone listens), nothing else."""
        if level < self.log_level:
            return []
        return [Log(level.label, code, message, None, generation)]


def record(reply: Reply) -> ReplyRecord:
    """The durable form of an open reply."""
    identity = reply.identity
    return ReplyRecord(
        reply_id=reply.reply_id,
        account=reply.account,
        origin=reply.origin.generation,
        chat=reply.chat,
        kind=reply.kind,
        message_id=reply.message_id,
        deadline_ms=reply.deadline_ms,
        pn=None if identity.pn is None else str(identity.pn),
        lid=None if identity.lid is None else str(identity.lid),
        e164=identity.e164,
        payload=None if reply.state is _REPLYSTATE_PENDING else reply.payload,
        transmissions=reply.transmissions,
        io_started=reply.io_ever_started,
        sent=tuple(reply.sent.items()),
        in_flight=reply.via is not None,
    )
