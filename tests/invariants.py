"""A reusable checker for the safety invariants of DESIGN.md.

Feed it every ``(event, now, effects)`` triple an engine produced, in order
(or let :meth:`InvariantChecker.step` call the engine for you). It keeps its own
model of the world -- which sockets are open and as whom, which replies were
captured with which identity, which transmission of each reply is in flight,
what the registry holds, what a deduplicating receiver accepted -- built from
the adapter's facts (events) and the engine's requests (effects), and it also
cross-checks the engine's queries against that model after every step.

Invariants (each violation raises :class:`InvariantViolation`, an
``AssertionError`` carrying the trace so far):

* **identity** -- a ``Transmit`` goes only through a generation whose socket
  identity ``compare``s "same" with the identity the reply captured (resolved at
  capture; compared through the engine's current mapping);
* **live socket** -- a ``Transmit`` goes only through a generation that has an
  open socket (opened, not closed by the adapter, not asked to close by the
  engine) and is not in a terminal lifecycle state; the engine never holds a
  transmission in flight through anything else;
* **one in flight** -- no ``Transmit`` of a reply while its previous one was
  neither acked, failed, nor had its socket closed / asked to close;
* **ends once** -- exactly one ``ReplyDelivered``/``ReplyFailed`` per captured
  reply, with a reason; a delivery only on an ack of a real transmission; once
  the reply's deadline timer fired the reply has ended;
* **honest outcome** -- ``refused``/``failed`` only when no transmission of the
  reply may have reached the receiver (otherwise the outcome is ``unknown`` or
  ``delivered``: "never silently dropped", issue 5); a kind that is not
  resendable is never transmitted again after a transmission that may have
  started I/O;
* **receiver** -- one message id per reply and one reply per message id; the
  engine reports each message id delivered at most once (the receiver
  deduplicates by message id and accepts on ack);
* **registry** -- ``Registered``/``Unregistered`` agree with the model, an
  ``Unregistered`` only ever names the current generation (a stale unregister
  never removes a successor), and ``engine.current(account)`` matches;
* **rejections** -- a step that answers ``Rejected`` answers nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from heirline.core.effects import (
    CloseSocket,
    Effect,
    Log,
    Registered,
    Rejected,
    ReplyDelivered,
    ReplyFailed,
    Transmit,
    Unregistered,
)
from heirline.core.engine import Engine, deadline_timer_key
from heirline.core.errors import HeirlineError
from heirline.core.events import (
    Event,
    ReplyCaptured,
    ReplyReady,
    SocketClosed,
    SocketOpened,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
)
from heirline.core.identity import UNAUTHENTICATED, SelfIdentity, VerdictKind, compare, resolve
from heirline.core.lifecycle import TERMINAL_STATES

TraceEntry = tuple[int, Event, tuple[Effect, ...]]
_Gen = tuple[str, int]


class InvariantViolation(AssertionError):
    """A safety invariant does not hold; the message carries the trace."""


@dataclass(slots=True)
class ReplyModel:
    """What the checker knows about one captured reply."""

    account: str
    origin: int
    identity: SelfIdentity
    deadline_ms: int
    message_id: str
    kind: str
    ready: bool = False
    ends: int = 0
    outcome: str = ""
    in_flight_via: int | None = None
    acked_by: int | None = None
    transmitted_via: set[int] = field(default_factory=set)
    #: A transmission that may have reached the receiver (socket lost or failed mid-I/O).
    maybe_arrived: bool = False


def _short(effect: Effect) -> str:
    if isinstance(effect, Log):
        return f"Log({effect.code}: {effect.message[:100]})"
    return repr(effect)


def format_trace(trace: Sequence[TraceEntry], last: int = 80) -> str:
    """A readable trace: one line per event, its effects indented below it."""
    lines: list[str] = []
    start = max(0, len(trace) - last)
    if start:
        lines.append(f"... {start} earlier steps omitted")
    for i, (now, event, effects) in enumerate(trace[start:], start):
        lines.append(f"#{i} t={now} {event!r}")
        lines.extend(f"      -> {_short(e)}" for e in effects)
    return "\n".join(lines)


class InvariantChecker:
    """Watches one engine's event/effect stream and asserts the safety invariants.

    ``strict_deadlines``: the driver fires every timer by its deadline, so a reply
    still open after its deadline is a violation even before the timer event.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        strict_deadlines: bool = False,
        known_violations: frozenset[str] = frozenset(),
    ) -> None:
        self.engine = engine
        self.strict_deadlines = strict_deadlines
        #: Tags of known, reported engine bugs to record in ``seen_known`` instead of raising.
        #: Every use must be paired with a strict xfail test that reproduces the bug.
        self.known_violations = known_violations
        self.seen_known: dict[str, int] = {}
        self.trace: list[TraceEntry] = []
        self.sockets: dict[_Gen, SelfIdentity] = {}
        self.dead: set[_Gen] = set()
        self.replies: dict[str, ReplyModel] = {}
        self.registered: dict[str, int | None] = {}
        self.highest: dict[str, int] = {}
        self.owner_of_message: dict[str, str] = {}
        self.receiver_accepted: dict[str, int] = {}
        self.delivered_ids: set[str] = set()

    # The trace and the known-violation tally are history, not state: leave them
    # out of snapshots and fingerprints.
    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["trace"] = []
        state["seen_known"] = {}
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    # ----------------------------------------------------------------- driving

    def step(self, event: Event, now: int) -> list[Effect]:
        """Hand ``event`` to the engine, check the outcome, return the effects."""
        effects = self.engine.handle(event, now)
        self.observe(event, now, effects)
        return effects

    def fail(self, message: str) -> InvariantViolation:
        """An :class:`InvariantViolation` for ``message`` with the trace so far."""
        return InvariantViolation(f"{message}\n--- trace ---\n{format_trace(self.trace)}")

    def _require(self, condition: bool, message: str, tag: str = "") -> None:
        if condition:
            return
        if tag and tag in self.known_violations:
            self.seen_known[tag] = self.seen_known.get(tag, 0) + 1
            return
        raise self.fail(f"[{tag}] {message}" if tag else message)

    def observe(self, event: Event, now: int, effects: Sequence[Effect]) -> None:
        """Check one step: ``effects`` is what ``engine.handle(event, now)`` returned."""
        self.trace.append((now, event, tuple(effects)))
        rejected = [e for e in effects if isinstance(e, Rejected)]
        if rejected:
            self._require(
                len(effects) == 1, f"rejections: a Rejected step also produced {effects!r}"
            )
        else:
            self._apply_event(event, now, effects)
            for effect in effects:
                self._apply_effect(event, effect)
        self._check_state(event, now)

    # ------------------------------------------------------------ event facts

    def _apply_event(self, event: Event, now: int, effects: Sequence[Effect]) -> None:
        engine = self.engine
        if isinstance(event, SocketOpened):
            key = (event.account, event.generation)
            refused = any(
                isinstance(e, CloseSocket) and (e.account, e.generation) == key for e in effects
            )
            if not refused:
                try:
                    identity = SelfIdentity.parse(pn=event.pn, lid=event.lid, e164=event.e164)
                except HeirlineError:
                    raise self.fail(f"malformed identity accepted: {event!r}") from None
                self._require(key not in self.dead, f"live socket: dead {key} accepted a socket")
                self.sockets[key] = identity
        elif isinstance(event, SocketClosed):
            self._socket_gone((event.account, event.generation))
        elif isinstance(event, ReplyCaptured):
            origin_socket = self.sockets.get((event.account, event.generation), UNAUTHENTICATED)
            self.replies[event.reply_id] = ReplyModel(
                account=event.account,
                origin=event.generation,
                identity=resolve(origin_socket, engine.mapping),
                deadline_ms=(
                    event.deadline_ms
                    if event.deadline_ms is not None
                    else now + engine.config.reply_deadline_ms
                ),
                message_id=event.message_id if event.message_id is not None else event.reply_id,
                kind=event.kind,
            )
        elif isinstance(event, ReplyReady):
            reply = self.replies.get(event.reply_id)
            self._require(reply is not None, f"ready accepted for uncaptured {event.reply_id!r}")
            assert reply is not None
            self._require(not reply.ready, f"second ready accepted for {event.reply_id!r}")
            reply.ready = True
        elif isinstance(event, TransmitAcked):
            reply = self.replies.get(event.reply_id)
            self._require(
                reply is not None and event.generation in reply.transmitted_via,
                f"receiver: ack accepted for a transmission that never happened: {event!r}",
            )
            assert reply is not None
            mid = reply.message_id
            self.receiver_accepted[mid] = self.receiver_accepted.get(mid, 0) + 1
            if reply.in_flight_via == event.generation:
                reply.in_flight_via = None
        elif isinstance(event, TransmitFailed):
            reply = self.replies.get(event.reply_id)
            if reply is not None and reply.in_flight_via == event.generation:
                reply.in_flight_via = None
                reply.maybe_arrived |= event.io_started

    def _socket_gone(self, key: _Gen) -> None:
        self.sockets.pop(key, None)
        for reply in self.replies.values():
            if reply.ends == 0 and reply.in_flight_via == key[1] and reply.account == key[0]:
                reply.in_flight_via = None
                reply.maybe_arrived = True

    # ---------------------------------------------------------- engine effects

    def _apply_effect(self, event: Event, effect: Effect) -> None:
        if isinstance(effect, Transmit):
            self._transmit(effect)
        elif isinstance(effect, CloseSocket):
            self._socket_gone((effect.account, effect.generation))
        elif isinstance(effect, ReplyDelivered):
            reply = self._ending(effect.reply_id, "delivered")
            self._require(
                isinstance(event, TransmitAcked)
                and event.reply_id == effect.reply_id
                and event.generation == effect.generation,
                f"ends once: {effect!r} without an ack of that transmission",
            )
            self._require(
                effect.via == ("origin" if effect.generation == reply.origin else "successor"),
                f"ends once: {effect!r} names the wrong route",
            )
            mid = reply.message_id
            self._require(
                mid not in self.delivered_ids, f"receiver: message id {mid!r} delivered twice"
            )
            self.delivered_ids.add(mid)
            reply.acked_by = effect.generation
        elif isinstance(effect, ReplyFailed):
            reply = self._ending(effect.reply_id, effect.outcome)
            self._require(
                effect.outcome in ("refused", "failed", "unknown"),
                f"ends once: unknown outcome in {effect!r}",
            )
            self._require(bool(effect.reason.strip()), f"ends once: {effect!r} has no reason")
            if effect.outcome != "unknown":
                self._require(
                    not reply.maybe_arrived and reply.in_flight_via is None,
                    f"honest outcome: {effect!r} although a transmission of "
                    f"{effect.reply_id!r} may have reached the receiver",
                    tag=f"{effect.outcome}_after_io",
                )
        elif isinstance(effect, Registered):
            account = effect.account
            self._require(
                effect.predecessor == self.registered.get(account),
                f"registry: {effect!r} but the model's current is {self.registered.get(account)}",
            )
            self._require(
                effect.generation > self.highest.get(account, 0),
                f"registry: {effect!r} re-registers an old generation",
            )
            self.registered[account] = effect.generation
            self.highest[account] = effect.generation
        elif isinstance(effect, Unregistered):
            current = self.registered.get(effect.account)
            self._require(
                current == effect.generation,
                f"registry: stale {effect!r} while generation {current} is current",
            )
            self.registered[effect.account] = None

    def _ending(self, reply_id: str, outcome: str) -> ReplyModel:
        reply = self.replies.get(reply_id)
        self._require(reply is not None, f"ends once: an outcome for uncaptured {reply_id!r}")
        assert reply is not None
        self._require(
            reply.ends == 0,
            f"ends once: {reply_id!r} ended twice ({reply.outcome}, then {outcome})",
        )
        reply.ends += 1
        reply.outcome = outcome
        reply.in_flight_via = None
        return reply

    def _transmit(self, t: Transmit) -> None:
        reply = self.replies.get(t.reply_id)
        self._require(reply is not None, f"transmit of an uncaptured reply: {t!r}")
        assert reply is not None
        key = (t.account, t.generation)
        self._require(reply.ends == 0, f"ends once: {t!r} after the reply ended")
        self._require(reply.ready, f"transmit before the reply was ready: {t!r}")
        self._require(t.account == reply.account, f"transmit to another account: {t!r}")
        self._require(key not in self.dead, f"live socket: {t!r} through a terminal controller")
        self._require(
            key in self.sockets, f"live socket: {t!r} through a generation without socket"
        )
        state = self.engine.controller_state(*key)
        self._require(
            state not in TERMINAL_STATES, f"live socket: {t!r} through a {state} controller"
        )
        verdict = compare(reply.identity, self.sockets[key], self.engine.mapping)
        self._require(
            verdict.kind is VerdictKind.SAME,
            f"identity: {t!r} through a socket logged in as {self.sockets[key].describe()}; "
            f"captured {reply.identity.describe()}; verdict {verdict.kind.value}: {verdict.reason}",
        )
        self._require(
            reply.in_flight_via is None,
            f"one in flight: {t!r} while the transmission via generation "
            f"{reply.in_flight_via} is still in flight",
        )
        self._require(
            not (reply.maybe_arrived and reply.kind not in self.engine.config.resendable_kinds),
            f"honest outcome: {t!r} replays a {reply.kind} that may already have arrived",
        )
        self._require(
            t.message_id == reply.message_id,
            f"receiver: {t!r} changed the message id (captured {reply.message_id!r})",
        )
        owner = self.owner_of_message.setdefault(t.message_id, t.reply_id)
        self._require(
            owner == t.reply_id, f"receiver: message id {t.message_id!r} used by {owner!r} too"
        )
        reply.in_flight_via = t.generation
        reply.transmitted_via.add(t.generation)

    # ------------------------------------------------------------ state checks

    def _check_state(self, event: Event | None, now: int) -> None:
        engine = self.engine
        for account, high in self.highest.items():
            for gen in range(1, high + 1):
                state = engine.controller_state(account, gen)
                if state in TERMINAL_STATES:
                    self.dead.add((account, gen))
                elif (account, gen) in self.dead:
                    raise self.fail(f"lifecycle: terminal generation {gen} came back as {state}")
                has_socket = (account, gen) in self.sockets
                self._require(
                    has_socket == (state == "open"),
                    f"live socket: generation {gen} is {state} but the model "
                    f"{'has' if has_socket else 'has no'} open socket for it",
                )
            self._require(
                engine.current(account) == self.registered.get(account),
                f"registry: engine.current({account!r}) is {engine.current(account)}, "
                f"the Registered/Unregistered effects say {self.registered.get(account)}",
            )
        model_flight = {
            rid: r.in_flight_via
            for rid, r in self.replies.items()
            if r.ends == 0 and r.in_flight_via is not None
        }
        self._require(
            engine.in_flight() == model_flight,
            f"one in flight: engine.in_flight() {engine.in_flight()} != model {model_flight}",
        )
        for rid, via in model_flight.items():
            key = (self.replies[rid].account, via)
            self._require(
                key in self.sockets and key not in self.dead,
                f"live socket: {rid!r} in flight through {key} without a live socket",
            )
        open_model = {rid for rid, r in self.replies.items() if r.ends == 0}
        self._require(
            set(engine.open_replies()) == open_model,
            f"ends once: engine.open_replies() {sorted(engine.open_replies())} "
            f"!= model {sorted(open_model)}",
        )
        if isinstance(event, TimerFired):
            for rid, reply in self.replies.items():
                if event.key == deadline_timer_key(rid):
                    self._require(
                        reply.ends == 1, f"ends once: {rid!r} still open after its deadline fired"
                    )
        if self.strict_deadlines:
            late = sorted(rid for rid in open_model if self.replies[rid].deadline_ms < now)
            self._require(not late, f"ends once: {late} open past their deadline at t={now}")

    # ----------------------------------------------------------------- queries

    def check(self, now: int) -> None:
        """Re-run the state checks between steps (they also run after every step)."""
        self._check_state(None, now)

    def outcomes(self) -> dict[str, str]:
        """Reply id -> outcome for every ended reply."""
        return {rid: r.outcome for rid, r in self.replies.items() if r.ends}
