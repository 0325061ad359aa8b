"""A reusable checker for the safety invariants of DESIGN.md, judged by the test world.

Feed it every ``(event, now, effects)`` triple an engine produced, in order
(or let :meth:`InvariantChecker.step` call the engine for you). It keeps its own
model of the world, built only from the adapter's facts (events) and the
engine's requests (effects): which sockets exist (by attempt) and who is
*really* logged in on each, which generation is the newest and which were
stopped, which socket each generation opened last, which replies were captured
and whose they really are, which transmission of each reply is in flight, what
the registry holds, and what a deduplicating receiver got.

**Identity is judged from ground truth, never by heirline's own logic.** The
checker does not call ``compare()``, ``resolve()`` or ``SelfIdentity``: the
test world hands it a :class:`GroundTruth`, a table written by hand that says, for every
socket identity the driver can report (the exact ``pn``/``lid``/``e164``
strings), *who it really is* (a person id), or ``None`` for a socket that is
not logged in. A socket that opens with an identity the table does not know is
itself a violation (the world cannot judge it). So an identity bug in the
engine -- a verdict that says "same" for two people -- is a disagreement
between the engine and the world, not something both sides share.

Invariants (each violation raises :class:`InvariantViolation`, an
``AssertionError`` carrying the trace so far):

* **identity** -- a ``Transmit`` of a reply goes only through a socket whose
  true owner is the person who really owned the socket the reply was captured
  on (the last socket its origin generation opened -- even if that socket closed
  just before the capture), and that socket was logged in;
* **live socket** -- a ``Transmit`` goes only through the newest generation of
  its account, not stopped or superseded, and through that generation's latest
  socket (by attempt), which the adapter reported open and which neither closed
  nor was asked to close since; a socket that opens late (its generation
  stopped, or a newer attempt exists) is answered with its ``CloseSocket``
  alone, never adopted and never rejected; nothing is opened for a stopped
  generation;
* **one in flight** -- no ``Transmit`` of a reply while its previous
  transmission is neither acked, failed, nor lost with its socket;
* **ends once** -- exactly one ``ReplyDelivered``/``ReplyFailed`` per captured
  reply, with a reason; a delivery only on an ack of a real transmission;
  once the reply's deadline timer fired the reply has ended; ``Shutdown`` ends
  every open reply in its step and closes every socket;
* **honest outcome** -- ``refused``/``failed`` only when no transmission of the
  reply may have reached the receiver (otherwise ``unknown`` or ``delivered``);
  a kind that is not resendable is never transmitted again after a transmission
  that may have started I/O; ``refused`` only when the world agrees there was
  no one to send it through: the captured socket was not logged in, or a socket
  of the account shows someone else;
* **receiver** -- a modelled receiver takes a copy of every transmission (as if
  each one arrived) and deduplicates by message id: it never shows one reply
  twice (every copy of a reply carries one message id) and never drops a reply
  as a duplicate of another's (one reply per message id); the engine reports
  each reply delivered at most once, and an ack is only for a transmission that
  happened;
* **registry** -- ``Registered``/``Unregistered`` agree with the model, an
  ``Unregistered`` only ever names the current generation (a stale unregister
  never removes a successor), and ``engine.current(account)`` matches;
* **stop means stop** -- an owner ``Stop`` of the newest generation takes the
  account off health watch (``engine.watched()``), a stop of an older one does
  not; ``Shutdown`` takes every account off it and the engine accepts nothing
  afterwards;
* **bounded state** -- the engine keeps exactly the generations something can
  still refer to: the newest of each account, the origin of every open reply,
  and the generation every in-flight transmission goes through;
* **rejections** -- a step that answers ``Rejected`` answers nothing else (the
  explorer also checks that it changed nothing, byte for byte).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from heirline.core.effects import (
    CloseSocket,
    Effect,
    Log,
    OpenSocket,
    Registered,
    Rejected,
    ReplyDelivered,
    ReplyFailed,
    Transmit,
    Unregistered,
)
from heirline.core.engine import Engine
from heirline.core.events import (
    Event,
    ReplyCaptured,
    ReplyReady,
    Shutdown,
    SocketClosed,
    SocketOpened,
    Stop,
    TimerFired,
    TransmitAcked,
    TransmitFailed,
)
from heirline.core.lifecycle import TERMINAL_STATES, State
from heirline.core.timers import DeadlineTimer

TraceEntry = tuple[int, Event, tuple[Effect, ...]]
#: A socket identity exactly as the adapter reports it: ``(pn, lid, e164)``.
IdentityKey = tuple[str | None, str | None, str | None]
_Gen = tuple[str, int]  # (account, generation)
_Sock = tuple[str, int]  # (account, attempt)
_Flight = tuple[int, int]  # (generation, attempt)


class InvariantViolation(AssertionError):
    """A safety invariant does not hold; the message carries the trace."""


def identity_key(event: SocketOpened) -> IdentityKey:
    """The key of the identity a ``SocketOpened`` reports, for the ground-truth table."""
    return (event.pn, event.lid, event.e164)


@dataclass(frozen=True, slots=True, eq=False)
class GroundTruth:
    """The test world's ground truth: who each socket identity the driver reports really is.

    ``owners`` maps the exact reported strings ``(pn, lid, e164)`` to a person id, or to
    ``None`` for a socket that is not logged in as anyone. Written by hand by the test
    world, never derived from heirline's identity code.
    """

    owners: Mapping[IdentityKey, str | None]

    def knows(self, key: IdentityKey) -> bool:
        """Whether the world can say who ``key`` is."""
        return key in self.owners

    def owner(self, key: IdentityKey) -> str | None:
        """Who ``key`` really is (``None``: nobody is logged in)."""
        return self.owners[key]


@dataclass
class SocketModel:
    """One socket as the world knows it."""

    generation: int
    #: ``connecting`` (asked for), ``open`` (the adapter reported it open and the engine took
    #: it), ``closing`` (the engine asked to close it, or refused it as stale).
    state: str = "connecting"
    #: Who is really logged in on it (from the ground truth), once open.
    owner: str | None = None
    #: Whether the adapter reported it open and the engine took it.
    opened: bool = False


@dataclass
class ReplyModel:
    """What the checker knows about one captured reply."""

    account: str
    origin: int
    #: Who really owned the socket the reply was captured on (``None``: not logged in).
    owner: str | None
    deadline_ms: int
    message_id: str
    kind: str
    ready: bool = False
    ends: int = 0
    outcome: str = ""
    in_flight: _Flight | None = None
    acked_by: int | None = None
    transmitted: set[_Flight] = field(default_factory=set)
    #: A transmission that may have reached the receiver (socket lost or failed mid-I/O).
    maybe_arrived: bool = False


@dataclass
class Receiver:
    """A receiver that deduplicates by message id; takes a copy of every transmission."""

    #: Message id -> copies received (every transmission counts, as if it arrived).
    copies: dict[str, int] = field(default_factory=dict)
    #: Message id -> the reply whose content the receiver accepted (shown) under it.
    accepted: dict[str, str] = field(default_factory=dict)
    #: Reply id -> how many times the user was shown it (distinct message ids accepted).
    shown: dict[str, int] = field(default_factory=dict)

    def receive(self, message_id: str, reply_id: str) -> str:
        """Take one copy; return a complaint if the user now sees something wrong, else ``""``."""
        self.copies[message_id] = self.copies.get(message_id, 0) + 1
        first = self.accepted.setdefault(message_id, reply_id)
        if first != reply_id:
            return (
                f"receiver: reply {reply_id!r} arrives as message id {message_id!r}, which "
                f"already carried {first!r}: the receiver drops it as a duplicate"
            )
        if self.copies[message_id] == 1:
            self.shown[reply_id] = self.shown.get(reply_id, 0) + 1
        if self.shown[reply_id] > 1:
            return f"receiver: reply {reply_id!r} shown {self.shown[reply_id]} times"
        return ""


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

    ``truth`` is the world's ground truth (see the module docstring).
    ``strict_deadlines``: the driver fires every timer by its deadline, so a reply
    still open after its deadline is a violation even before the timer event.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        truth: GroundTruth,
        strict_deadlines: bool = False,
        known_violations: frozenset[str] = frozenset(),
    ) -> None:
        self.engine = engine
        self.truth = truth
        self.strict_deadlines = strict_deadlines
        #: Tags of known, reported engine bugs to record in ``seen_known`` instead of raising.
        #: Every use must be paired with a strict xfail test that reproduces the bug.
        self.known_violations = known_violations
        self.seen_known: dict[str, int] = {}
        self.trace: list[TraceEntry] = []
        self.sockets: dict[_Sock, SocketModel] = {}
        #: Highest attempt the engine asked to open, per account.
        self.issued: dict[str, int] = {}
        #: The latest socket (attempt) each generation asked for.
        self.latest_socket: dict[_Gen, int] = {}
        #: The owner of the last socket each generation opened (what a capture snapshots).
        self.last_owner: dict[_Gen, str | None] = {}
        #: Generations stopped by the owner, superseded by a newer one, or shut down.
        self.stopped: set[_Gen] = set()
        self.dead: set[_Gen] = set()
        self.replies: dict[str, ReplyModel] = {}
        self.registered: dict[str, int | None] = {}
        self.newest: dict[str, int] = {}
        self.watched: set[str] = set()
        self.receiver = Receiver()
        self.delivered_ids: set[str] = set()
        self.shut_down = False
        #: The time of the last accepted input.
        self.clock = 0

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
            now = self.clock  # a rejected input does not move the engine's clock
            if isinstance(event, SocketOpened):
                self._rejected_open(event, rejected[0])
        else:
            self.clock = now
            self._require(not self.shut_down, f"stop means stop: {event!r} accepted after Shutdown")
            open_before = {rid for rid, r in self.replies.items() if r.ends == 0}
            self._apply_event(event, now, effects)
            for effect in effects:
                self._apply_effect(event, effect)
            self._after_event(event, open_before)
        self._check_state(now)

    # ------------------------------------------------------------ event facts

    def _apply_event(self, event: Event, now: int, effects: Sequence[Effect]) -> None:
        if isinstance(event, SocketOpened):
            self._opened(event, effects)
        elif isinstance(event, SocketClosed):
            self._socket_gone((event.account, event.attempt), closed=True)
        elif isinstance(event, Stop):
            self.stopped.add((event.account, event.generation))
            if event.generation == self.newest.get(event.account):
                self.watched.discard(event.account)  # the owner wants the account down
        elif isinstance(event, Shutdown):
            self.shut_down = True
            self.watched.clear()
            for account, newest in self.newest.items():
                self.stopped.update((account, g) for g in range(1, newest + 1))
        elif isinstance(event, ReplyCaptured):
            key = (event.account, event.generation)
            self.replies[event.reply_id] = ReplyModel(
                account=event.account,
                origin=event.generation,
                owner=self.last_owner.get(key),
                deadline_ms=(
                    event.deadline_ms
                    if event.deadline_ms is not None
                    else now + self.engine.config.reply_deadline_ms
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
            flight = (event.generation, event.attempt)
            self._require(
                reply is not None and flight in reply.transmitted,
                f"receiver: ack accepted for a transmission that never happened: {event!r}",
            )
            assert reply is not None
            if reply.in_flight == flight:
                reply.in_flight = None
        elif isinstance(event, TransmitFailed):
            reply = self.replies.get(event.reply_id)
            if reply is not None and reply.in_flight == (event.generation, event.attempt):
                reply.in_flight = None
                reply.maybe_arrived |= event.io_started

    def _opened(self, event: SocketOpened, effects: Sequence[Effect]) -> None:
        key = (event.account, event.attempt)
        gen = (event.account, event.generation)
        sock = self.sockets.get(key)
        fresh = (
            sock is not None
            and sock.state == "connecting"
            and sock.generation == event.generation
            and self.latest_socket.get(gen) == event.attempt
            and gen not in self.stopped
        )
        closes = [
            e for e in effects if isinstance(e, CloseSocket) and (e.account, e.attempt) == key
        ]
        if not fresh:
            # A socket of a stopped generation, an older attempt, or one already closed:
            # the engine must close it (never adopt it, never reject it) and do nothing else.
            self._require(
                len(effects) == 1 and len(closes) == 1 and closes[0].generation == gen[1],
                f"live socket: late open {event!r} must be answered with its CloseSocket "
                f"alone, got {effects!r}",
            )
            return
        assert sock is not None
        self._require(not closes, f"live socket: a fresh open {event!r} was closed: {effects!r}")
        ident = identity_key(event)
        self._require(
            self.truth.knows(ident),
            f"ground truth: the engine accepted {event!r}, an identity the test world "
            "has no owner for (malformed, or missing from the table)",
        )
        sock.state = "open"
        sock.opened = True
        sock.owner = self.truth.owner(ident)
        self.last_owner[gen] = sock.owner

    def _rejected_open(self, event: SocketOpened, rejected: Rejected) -> None:
        """A well-formed open of a socket the engine asked for is never rejected."""
        sock = self.sockets.get((event.account, event.attempt))
        self._require(
            sock is None
            or sock.opened
            or sock.generation != event.generation
            or not self.truth.knows(identity_key(event)),
            f"live socket: {event!r} opens socket {event.attempt}, which the engine asked "
            f"for, and was rejected ({rejected.code}); a late open must be closed, not rejected",
        )

    def _socket_gone(self, key: _Sock, *, closed: bool) -> None:
        """Socket ``key`` closed (``closed``) or the engine asked to close it.

        A transmission through it is over once the socket closed, or when the engine
        asked to close it because its generation stopped (a stopped controller gives
        its transmissions up). A watchdog close request alone does not end it: the
        transport may still deliver and ack until the close is reported.
        """
        sock = self.sockets.get(key)
        if sock is None:
            return
        if closed:
            del self.sockets[key]
        else:
            sock.state = "closing"
            if (key[0], sock.generation) not in self.stopped:
                return
        flight = (sock.generation, key[1])
        for reply in self.replies.values():
            if reply.ends == 0 and reply.account == key[0] and reply.in_flight == flight:
                reply.in_flight = None
                reply.maybe_arrived = True

    def _after_event(self, event: Event, open_before: set[str]) -> None:
        if isinstance(event, TimerFired) and isinstance(event.timer, DeadlineTimer):
            reply = self.replies.get(event.timer.reply_id)
            self._require(
                reply is None or reply.ends == 1,
                f"ends once: {event.timer.reply_id!r} still open after its deadline fired",
            )
        if isinstance(event, Shutdown):
            still = sorted(rid for rid in open_before if self.replies[rid].ends == 0)
            self._require(not still, f"ends once: {still} still open after {event!r}")
            live = sorted(k for k, s in self.sockets.items() if s.state != "closing")
            self._require(not live, f"stop means stop: sockets {live} not closed at {event!r}")

    # ---------------------------------------------------------- engine effects

    def _apply_effect(self, event: Event, effect: Effect) -> None:
        if isinstance(effect, Transmit):
            self._transmit(effect)
        elif isinstance(effect, OpenSocket):
            self._open_socket(effect)
        elif isinstance(effect, CloseSocket):
            self._socket_gone((effect.account, effect.attempt), closed=False)
        elif isinstance(effect, ReplyDelivered):
            self._delivered(event, effect)
        elif isinstance(effect, ReplyFailed):
            self._failed(effect)
        elif isinstance(effect, Registered):
            account = effect.account
            self._require(
                effect.predecessor == self.registered.get(account),
                f"registry: {effect!r} but the model's current is {self.registered.get(account)}",
            )
            self._require(
                effect.generation > self.newest.get(account, 0),
                f"registry: {effect!r} re-registers an old generation",
            )
            # The in-memory registry: the new generation supersedes (stops) every older one.
            self.stopped.update((account, g) for g in range(1, effect.generation))
            self.registered[account] = effect.generation
            self.newest[account] = effect.generation
            self.watched.add(account)
        elif isinstance(effect, Unregistered):
            current = self.registered.get(effect.account)
            self._require(
                current == effect.generation,
                f"registry: stale {effect!r} while generation {current} is current",
            )
            self.registered[effect.account] = None

    def _open_socket(self, effect: OpenSocket) -> None:
        account, gen = effect.account, (effect.account, effect.generation)
        self._require(
            effect.attempt > self.issued.get(account, 0),
            f"live socket: {effect!r} reuses an attempt number (highest issued "
            f"{self.issued.get(account, 0)})",
        )
        self._require(
            gen not in self.stopped and effect.generation == self.newest.get(account),
            f"live socket: {effect!r} for a stopped or superseded generation",
        )
        previous = self.latest_socket.get(gen)
        self._require(
            previous is None or (account, previous) not in self.sockets
            or self.sockets[(account, previous)].state == "closing",
            f"live socket: {effect!r} while socket {previous} of the generation is still live",
        )  # fmt: skip
        self.issued[account] = effect.attempt
        self.latest_socket[gen] = effect.attempt
        self.sockets[(account, effect.attempt)] = SocketModel(effect.generation)

    def _delivered(self, event: Event, effect: ReplyDelivered) -> None:
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

    def _failed(self, effect: ReplyFailed) -> None:
        reply = self._ending(effect.reply_id, effect.outcome)
        self._require(
            effect.outcome in ("refused", "failed", "unknown"),
            f"ends once: unknown outcome in {effect!r}",
        )
        self._require(bool(effect.reason.strip()), f"ends once: {effect!r} has no reason")
        if effect.outcome != "unknown":
            self._require(
                not reply.maybe_arrived and reply.in_flight is None,
                f"honest outcome: {effect!r} although a transmission of "
                f"{effect.reply_id!r} may have reached the receiver",
                tag=f"{effect.outcome}_after_io",
            )
        if effect.outcome == "refused" and reply.owner is not None:
            others = sorted(
                {
                    s.owner or "nobody"
                    for (account, _), s in self.sockets.items()
                    if account == reply.account and s.opened and s.owner != reply.owner
                }
            )  # fmt: skip
            self._require(
                bool(others),
                f"honest outcome: {effect!r}, but the reply is really {reply.owner}'s and "
                f"no socket of {reply.account!r} shows anyone else",
            )

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
        reply.in_flight = None
        return reply

    def _transmit(self, t: Transmit) -> None:
        reply = self.replies.get(t.reply_id)
        self._require(reply is not None, f"transmit of an uncaptured reply: {t!r}")
        assert reply is not None
        gen, key = (t.account, t.generation), (t.account, t.attempt)
        self._require(reply.ends == 0, f"ends once: {t!r} after the reply ended")
        self._require(reply.ready, f"transmit before the reply was ready: {t!r}")
        self._require(t.account == reply.account, f"transmit to another account: {t!r}")
        self._require(
            gen not in self.stopped and t.generation == self.newest.get(t.account),
            f"live socket: {t!r} through a stopped or superseded generation",
        )
        sock = self.sockets.get(key)
        self._require(
            sock is not None
            and sock.generation == t.generation
            and sock.state == "open"
            and self.latest_socket.get(gen) == t.attempt,
            f"live socket: {t!r} through socket {t.attempt}, which is "
            f"{'gone' if sock is None else sock.state} (generation "
            f"{None if sock is None else sock.generation}; the generation's latest socket is "
            f"{self.latest_socket.get(gen)})",
        )
        assert sock is not None
        self._require(
            reply.owner is not None and sock.owner == reply.owner,
            f"identity: {t!r} through a socket really logged in as {sock.owner or 'nobody'}; "
            f"the reply was captured on a socket of {reply.owner or 'nobody (not logged in)'}",
            tag="identity",
        )
        self._require(
            reply.in_flight is None,
            f"one in flight: {t!r} while the transmission {reply.in_flight} "
            "(generation, attempt) is still in flight",
        )
        self._require(
            not (reply.maybe_arrived and reply.kind not in self.engine.config.resendable_kinds),
            f"honest outcome: {t!r} replays a {reply.kind} that may already have arrived",
        )
        complaint = self.receiver.receive(t.message_id, t.reply_id)
        self._require(not complaint, f"{complaint}: {t!r}")
        self._require(
            t.message_id == reply.message_id,
            f"receiver: {t!r} changed the message id (captured {reply.message_id!r})",
        )
        reply.in_flight = (t.generation, t.attempt)
        reply.transmitted.add(reply.in_flight)

    # ------------------------------------------------------------ state checks

    def _check_state(self, now: int) -> None:
        engine = self.engine
        for account, newest in self.newest.items():
            kept = {newest}
            for reply in self.replies.values():
                if reply.account == account and reply.ends == 0:
                    kept.add(reply.origin)
                    if reply.in_flight is not None:
                        kept.add(reply.in_flight[0])
            generations = engine.generations(account)
            self._require(
                set(generations) == kept,
                f"bounded state: engine keeps generations {generations} of {account!r}; "
                f"the newest and those named by open replies are {sorted(kept)}",
            )
            for gen in range(1, newest + 1):
                state = engine.controller_state(account, gen)
                if state is None:
                    continue  # forgotten (checked just above)
                if state in TERMINAL_STATES:
                    self.dead.add((account, gen))
                elif (account, gen) in self.dead:
                    raise self.fail(f"lifecycle: terminal generation {gen} came back as {state}")
                latest = self.latest_socket.get((account, gen))
                sock = None if latest is None else self.sockets.get((account, latest))
                has_socket = sock is not None and sock.state == "open"
                self._require(
                    has_socket == (state is State.OPEN),
                    f"live socket: generation {gen} is {state} but the model "
                    f"{'has' if has_socket else 'has no'} open socket for it",
                )
                self._require(
                    engine.controller_socket(account, gen) == latest,
                    f"live socket: engine says generation {gen}'s socket is "
                    f"{engine.controller_socket(account, gen)}, the world says {latest}",
                )
            self._require(
                engine.current(account) == self.registered.get(account),
                f"registry: engine.current({account!r}) is {engine.current(account)}, "
                f"the Registered/Unregistered effects say {self.registered.get(account)}",
            )
        self._require(
            set(engine.watched()) == self.watched,
            f"stop means stop: engine.watched() is {engine.watched()}, the world expects "
            f"{sorted(self.watched)}",
        )
        model_flight = {
            rid: r.in_flight[0]
            for rid, r in self.replies.items()
            if r.ends == 0 and r.in_flight is not None
        }
        self._require(
            engine.in_flight() == model_flight,
            f"one in flight: engine.in_flight() {engine.in_flight()} != model {model_flight}",
        )
        for rid, reply in self.replies.items():
            if reply.ends == 0 and reply.in_flight is not None:
                gen, attempt = reply.in_flight
                self._require(
                    (reply.account, attempt) in self.sockets
                    and (reply.account, gen) not in self.stopped,
                    f"live socket: {rid!r} in flight through socket {attempt} of generation "
                    f"{gen}, which is closed or stopped",
                )
        open_model = {rid for rid, r in self.replies.items() if r.ends == 0}
        self._require(
            set(engine.open_replies()) == open_model,
            f"ends once: engine.open_replies() {sorted(engine.open_replies())} "
            f"!= model {sorted(open_model)}",
        )
        if self.strict_deadlines:
            late = sorted(rid for rid in open_model if self.replies[rid].deadline_ms < now)
            self._require(not late, f"ends once: {late} open past their deadline at t={now}")

    # ----------------------------------------------------------------- queries

    def check(self, now: int) -> None:
        """Re-run the state checks between steps (they also run after every step)."""
        self._check_state(now)

    def outcomes(self) -> dict[str, str]:
        """Reply id -> outcome for every ended reply."""
        return {rid: r.outcome for rid, r in self.replies.items() if r.ends}
