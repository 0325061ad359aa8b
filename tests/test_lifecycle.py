"""The controller lifecycle: a hand-written table of every (state, trigger) pair and the
``transitions`` oracle built from it, each pair's exact effects, the watchdog deadline,
socket attempt numbers, the one state chokepoint, and random runs against the oracle."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from machine_oracle import Oracle, check_pair, fire, state_assignments

from heirline.core.backoff import BackoffConfig
from heirline.core.controller import AttemptCounter, AttemptSource, Controller
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogValue,
    OpenSocket,
    StartTimer,
)
from heirline.core.errors import ConfigError, InvalidTransition
from heirline.core.lifecycle import (
    CLOSE_TRIGGERS,
    LIFECYCLE,
    SOCKET_STATES,
    TERMINAL_STATES,
    LifecycleConfig,
    State,
    Trigger,
)
from heirline.core.policy import DEFAULT_STATUS_POLICY, CloseAction, Status
from heirline.core.timers import RetryTimer, Timer, WatchdogTimer

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "acct"
GEN = 3
MAX = 12
NOW = 5000
U = 0.28  # 2000 ms * (1 + 0.25 * 0.28) = 2140 ms: the seed line's "2.14s"
WATCHDOG_MS = 300_000
CONFIG = LifecycleConfig()
TABLE = LIFECYCLE.compile()
RETRY = RetryTimer(ACCOUNT, GEN)

# -- the specification, written out by hand -------------------------------------------------

STATES = [
    "idle",
    "connecting",
    "open",
    "closing",
    "backoff",
    "logged_out",
    "replaced",
    "forbidden",
    "exhausted",
    "stopped",
]
TRIGGERS = [
    "start",
    "opened",
    "close_retry",
    "close_reconnect",
    "close_exhausted",
    "close_logged_out",
    "close_replaced",
    "close_forbidden",
    "retry_due",
    "watchdog",
    "stop",
]
EXPECTED = {
    ("idle", "start"): "connecting",
    ("idle", "stop"): "stopped",
    ("connecting", "opened"): "open",
    # no close_reconnect: a 515 before the socket ever opened is classified as a retry
    ("connecting", "close_retry"): "backoff",
    ("connecting", "close_exhausted"): "exhausted",
    ("connecting", "close_logged_out"): "logged_out",
    ("connecting", "close_replaced"): "replaced",
    ("connecting", "close_forbidden"): "forbidden",
    ("connecting", "stop"): "stopped",
    ("open", "close_retry"): "backoff",
    ("open", "close_reconnect"): "connecting",
    ("open", "close_exhausted"): "exhausted",
    ("open", "close_logged_out"): "logged_out",
    ("open", "close_replaced"): "replaced",
    ("open", "close_forbidden"): "forbidden",
    ("open", "watchdog"): "closing",
    ("open", "stop"): "stopped",
    ("closing", "close_retry"): "backoff",
    ("closing", "close_reconnect"): "connecting",
    ("closing", "close_exhausted"): "exhausted",
    ("closing", "close_logged_out"): "logged_out",
    ("closing", "close_replaced"): "replaced",
    ("closing", "close_forbidden"): "forbidden",
    ("closing", "stop"): "stopped",
    ("backoff", "retry_due"): "connecting",
    ("backoff", "stop"): "stopped",
}
ORACLE = Oracle(STATES, TRIGGERS, "idle", EXPECTED)


def test_states_and_triggers_are_the_spelled_out_ones_in_order() -> None:
    assert [s.value for s in State] == STATES
    assert [t.value for t in Trigger] == TRIGGERS
    assert list(LIFECYCLE.states) == STATES
    assert list(LIFECYCLE.triggers) == TRIGGERS
    assert LIFECYCLE.initial == "idle"
    assert LIFECYCLE.name == TABLE.name == "lifecycle"
    assert {"logged_out", "replaced", "forbidden", "exhausted", "stopped"} == TERMINAL_STATES
    assert LIFECYCLE.terminal == TERMINAL_STATES
    assert {"connecting", "open", "closing"} == SOCKET_STATES


def test_the_declaration_is_exactly_the_hand_written_table() -> None:
    declared = {(t.source, t.trigger): t.dest for t in LIFECYCLE.transitions}
    assert declared == EXPECTED
    assert len(LIFECYCLE.transitions) == len(EXPECTED)
    assert len(LIFECYCLE.pairs()) == 110


@pytest.mark.parametrize(("state", "trigger"), LIFECYCLE.pairs())
def test_compiled_table_hand_written_table_and_oracle_agree_on_every_pair(
    state: State, trigger: Trigger
) -> None:
    check_pair(TABLE, ORACLE, state, trigger)


@given(st.lists(st.sampled_from(LIFECYCLE.triggers), max_size=40))
def test_compiled_table_and_oracle_agree_on_random_trigger_sequences(
    triggers: list[Trigger],
) -> None:
    machine = ORACLE.machine()
    state = LIFECYCLE.initial
    for trigger in triggers:
        expected = fire(machine, trigger)
        assert expected == EXPECTED.get((state, trigger))
        if expected is None:
            with pytest.raises(InvalidTransition):
                TABLE.next(state, trigger)
        else:
            state = TABLE.next(state, trigger)
        assert state == machine.state


def test_the_close_trigger_of_every_policy_action() -> None:
    assert {action.value: trigger.value for action, trigger in CLOSE_TRIGGERS.items()} == {
        "retry": "close_retry",
        "reconnect": "close_reconnect",
        "logged_out": "close_logged_out",
        "replaced": "close_replaced",
        "forbidden": "close_forbidden",
    }


# -- the controller, pair by pair ------------------------------------------------------------


def log(level: str, code: str, message: str, **fields: LogValue) -> Log:
    return Log(
        level=level, code=code, message=message, account=ACCOUNT, generation=GEN, fields=fields
    )


def open_socket(attempt: int) -> OpenSocket:
    return OpenSocket(account=ACCOUNT, generation=GEN, attempt=attempt)


def watchdog_timer(attempt: int) -> WatchdogTimer:
    return WatchdogTimer(ACCOUNT, attempt)


def new(config: LifecycleConfig = CONFIG, attempts: AttemptCounter | None = None) -> Controller:
    return Controller(ACCOUNT, GEN, config, AttemptCounter() if attempts is None else attempts)


def _exhaust(c: Controller) -> None:
    c.start(0)
    now = 0
    for _ in range(MAX):
        c.closed(408, now + 1, 0.0)
        now = c.retry_at_ms or 0
        c.retry_due(now)
    c.closed(408, now + 1, 0.0)


PATHS: dict[str, Callable[[Controller], object]] = {
    "idle": lambda c: None,
    "connecting": lambda c: c.start(0),
    "open": lambda c: (c.start(0), c.opened(100)),
    "closing": lambda c: (c.start(0), c.opened(100), c.watchdog(200)),
    "backoff": lambda c: (c.start(0), c.closed(408, 100, 0.0)),
    "logged_out": lambda c: (c.start(0), c.closed(401, 100, 0.0)),
    "replaced": lambda c: (c.start(0), c.closed(440, 100, 0.0)),
    "forbidden": lambda c: (c.start(0), c.closed(403, 100, 0.0)),
    "exhausted": _exhaust,
    "stopped": lambda c: c.stop("owner", 0),
}

#: The socket a controller driven along PATHS has (the attempt number of its latest socket).
SOCKET_AFTER_PATH = {"idle": None, "exhausted": MAX + 1, "stopped": None}


def in_state(state: str, config: LifecycleConfig = CONFIG) -> Controller:
    """A controller driven through the public API into ``state``."""
    c = new(config)
    PATHS[state](c)
    assert c.state == state
    assert c.socket == SOCKET_AFTER_PATH.get(state, 1)
    return c


def _spend_all(c: Controller) -> Controller:
    c.retries = MAX
    return c


def _leave_budget(c: Controller) -> Controller:
    c.retries = min(c.retries, MAX - 1)
    return c


def _same(c: Controller) -> Controller:
    return c


# trigger -> (set-up on the controller, the call that produces that trigger)
INPUTS: dict[
    str, tuple[Callable[[Controller], Controller], Callable[[Controller], list[Effect]]]
] = {
    "start": (_same, lambda c: c.start(NOW)),
    "opened": (_same, lambda c: c.opened(NOW)),
    "close_retry": (_leave_budget, lambda c: c.closed(408, NOW, U)),
    "close_reconnect": (_same, lambda c: c.closed(515, NOW, U)),
    "close_exhausted": (_spend_all, lambda c: c.closed(408, NOW, U)),
    "close_logged_out": (_same, lambda c: c.closed(401, NOW, U)),
    "close_replaced": (_same, lambda c: c.closed(440, NOW, U)),
    "close_forbidden": (_same, lambda c: c.closed(403, NOW, U)),
    "retry_due": (_same, lambda c: c.retry_due(NOW)),
    "watchdog": (_same, lambda c: c.watchdog(NOW)),
    "stop": (_same, lambda c: c.stop("owner", NOW)),
}

#: The status each close trigger is produced with, and the policy's reason for it.
CLOSES = {
    "close_retry": (408, "connection lost"),
    "close_reconnect": (515, "restart required"),
    "close_exhausted": (408, "connection lost"),
    "close_logged_out": (401, "logged out"),
    "close_replaced": (440, "connection replaced by another client"),
    "close_forbidden": (403, "forbidden"),
}


def _terminal_close(status: int, dest: str, reason: str) -> Log:
    return log(
        "error",
        f"lifecycle.{dest}",
        f"Web connection closed (status {status}): {reason}. Not reconnecting.",
        status=status,
        reason=reason,
        retry=0,
        max_attempts=MAX,
    )


def expected_effects(state: str, trigger: str) -> list[Effect]:
    """What a controller in ``state`` (driven along PATHS) must emit for ``trigger``."""
    # Leaving an open socket cancels its watchdog; a closing socket's watchdog already ended.
    cancel_watchdog: list[Effect] = (
        [CancelTimer(timer=watchdog_timer(1))] if state == "open" else []
    )
    stopped = log("info", "lifecycle.stopped", "Stopped: owner.", reason="owner", state=state)
    close_owner = CloseSocket(account=ACCOUNT, generation=GEN, attempt=1, reason="owner")
    stop: dict[str, list[Effect]] = {
        "idle": [stopped],
        "backoff": [CancelTimer(timer=RETRY), stopped],
        "open": [*cancel_watchdog, close_owner, stopped],
        "connecting": [close_owner, stopped],
        "closing": [close_owner, stopped],
    }
    table: dict[str, list[Effect]] = {
        "start": [open_socket(1), log("info", "lifecycle.connecting", "Connecting.", retry=0)],
        "opened": [
            StartTimer(timer=watchdog_timer(1), deadline_ms=NOW + WATCHDOG_MS),
            log("info", "lifecycle.open", "Web connection open.", retry=0),
        ],
        "close_retry": [
            *cancel_watchdog,
            StartTimer(timer=RETRY, deadline_ms=NOW + 2140),
            log(
                "warning",
                "lifecycle.retry_scheduled",
                "Web connection closed (status 408). Retry 1/12 in 2.14s…",
                status=408,
                reason="connection lost",
                retry=1,
                max_attempts=MAX,
                delay_ms=2140,
            ),
        ],
        "close_reconnect": [
            *cancel_watchdog,
            open_socket(2),
            log(
                "info",
                "lifecycle.reconnect",
                "Web connection closed (status 515): restart required. Reconnecting now.",
                status=515,
                reason="restart required",
                retry=0,
            ),
        ],
        "close_exhausted": [
            *cancel_watchdog,
            log(
                "error",
                "lifecycle.exhausted",
                "Web connection closed (status 408). Giving up after 12/12 retries.",
                status=408,
                reason="connection lost",
                retry=MAX,
                max_attempts=MAX,
            ),
        ],
        "close_logged_out": [*cancel_watchdog, _terminal_close(401, "logged_out", "logged out")],
        "close_replaced": [
            *cancel_watchdog,
            _terminal_close(440, "replaced", "connection replaced by another client"),
        ],
        "close_forbidden": [*cancel_watchdog, _terminal_close(403, "forbidden", "forbidden")],
        "retry_due": [
            open_socket(2),
            log(
                "info",
                "lifecycle.retrying",
                "Retry 1/12: connecting.",
                retry=1,
                max_attempts=MAX,
            ),
        ],
        "watchdog": [
            CancelTimer(timer=watchdog_timer(1)),
            CloseSocket(
                account=ACCOUNT,
                generation=GEN,
                attempt=1,
                status=499,
                reason="watchdog: no traffic",
            ),
            log("warning", "lifecycle.watchdog", "Closing: watchdog: no traffic.", silent_ms=None),
        ],
        "stop": stop.get(state, []),
    }
    return table[trigger]


def snapshot(c: Controller) -> tuple[object, ...]:
    """Every attribute of a controller, and its attempt counter's position."""
    assert isinstance(c.attempts, AttemptCounter)
    return (*(getattr(c, name) for name in Controller.__slots__), c.attempts.last_attempt)


#: Pairs no input can produce: the classification turns the input into another trigger.
UNREACHABLE = {("connecting", "close_reconnect")}


@pytest.mark.parametrize(("state", "trigger"), sorted(set(LIFECYCLE.pairs()) - UNREACHABLE))
def test_every_state_trigger_pair_is_a_transition_with_its_effects_or_a_rejection(
    state: State, trigger: Trigger
) -> None:
    setup, call = INPUTS[trigger]
    controller = setup(in_state(state))
    dest = EXPECTED.get((state, trigger))
    assert dest == ORACLE.step(state, trigger)
    if dest is None:
        before = snapshot(controller)
        with pytest.raises(InvalidTransition) as caught:
            call(controller)
        assert (caught.value.machine, caught.value.state, caught.value.trigger) == (
            "lifecycle",
            state,
            trigger,
        )
        assert snapshot(controller) == before, "a rejected input changed the controller"
        return
    socket_before = controller.socket
    effects = call(controller)
    assert controller.state == dest
    assert isinstance(controller.state, State)
    assert effects == expected_effects(state, trigger)
    assert controller.last_change_ms == NOW
    assert controller.has_socket is (dest == "open")
    assert controller.is_terminal is (dest in TERMINAL_STATES)
    assert (controller.retry_at_ms is not None) is (dest == "backoff")
    assert (controller.opened_at_ms is not None) is (dest in ("open", "closing"))
    opens = [e.attempt for e in effects if isinstance(e, OpenSocket)]
    # A fresh socket gets the next number; otherwise the controller keeps naming its last one.
    assert controller.socket == (opens[0] if opens else socket_before)
    assert isinstance(controller.attempts, AttemptCounter)
    assert controller.attempts.last_attempt == (controller.socket or 0)
    if trigger in CLOSES:
        assert controller.last_status == CLOSES[trigger][0]
        assert controller.retries == {"close_retry": 1, "close_exhausted": MAX}.get(trigger, 0)


def test_the_pairs_cover_every_declared_state_and_trigger() -> None:
    assert set(PATHS) == set(LIFECYCLE.states)
    assert set(INPUTS) == set(LIFECYCLE.triggers)
    assert set(LIFECYCLE.pairs()) >= UNREACHABLE
    assert all((s, t) not in EXPECTED for s, t in UNREACHABLE)


def test_every_non_terminal_state_accepts_stop_and_terminal_states_accept_nothing() -> None:
    for state in LIFECYCLE.states:
        accepted = {t for t in LIFECYCLE.triggers if TABLE.accepts(state, t)}
        if state in TERMINAL_STATES:
            assert accepted == set()
        else:
            assert "stop" in accepted


# -- 515 and the retry budget -----------------------------------------------------------------


def test_a_515_before_the_socket_ever_opened_backs_off_instead_of_spinning() -> None:
    c = in_state("connecting")
    assert not TABLE.accepts(State.CONNECTING, Trigger.CLOSE_RECONNECT)
    effects = c.closed(515, NOW, U)
    assert (c.state, c.retries) == ("backoff", 1)
    assert effects[0] == StartTimer(timer=RETRY, deadline_ms=NOW + 2140)
    # A server answering every connect with 515 uses up the budget and ends exhausted.
    for _ in range(MAX):
        assert c.retry_at_ms is not None
        c.retry_due(c.retry_at_ms)
        c.closed(515, c.last_change_ms + 1, U)
    assert c.state == "exhausted"
    assert c.socket == MAX + 1


def test_a_515_on_an_open_socket_reconnects_at_once_with_a_fresh_socket() -> None:
    c = in_state("open")
    effects = c.closed(515, NOW, U)
    assert effects[:2] == [CancelTimer(timer=watchdog_timer(1)), open_socket(2)]
    assert (c.state, c.retries, c.socket) == ("connecting", 0, 2)
    # The new socket's watchdog is its own.
    assert c.opened(NOW + 10)[0] == StartTimer(
        timer=watchdog_timer(2), deadline_ms=NOW + 10 + WATCHDOG_MS
    )


def test_exactly_twelve_retries_then_exhausted_each_on_a_fresh_socket() -> None:
    c = new()
    opened = [e.attempt for e in c.start(0) if isinstance(e, OpenSocket)]
    messages: list[str] = []
    now = 0
    while not c.is_terminal:
        now += 10
        effects = c.closed(408, now, U)
        messages += [e.message for e in effects if isinstance(e, Log)]
        if c.state is State.BACKOFF:
            assert c.retry_at_ms is not None
            now = c.retry_at_ms
            opened += [e.attempt for e in c.retry_due(now) if isinstance(e, OpenSocket)]
    assert c.state == "exhausted"
    assert opened == list(range(1, MAX + 2))  # the first connect and 12 retries
    retries = [m for m in messages if "Retry" in m]
    assert len(retries) == MAX
    assert retries[0] == "Web connection closed (status 408). Retry 1/12 in 2.14s…"
    assert [m.split("Retry ")[1].split(" ")[0] for m in retries] == [
        f"{k}/12" for k in range(1, 13)
    ]
    assert messages[-1] == "Web connection closed (status 408). Giving up after 12/12 retries."
    assert c.retries == MAX


# -- the watchdog: a deadline armed on open, re-armed lazily -----------------------------------


def test_opening_arms_the_watchdog_of_that_socket() -> None:
    c = in_state("connecting")
    effects = c.opened(1_000)
    assert effects[0] == StartTimer(timer=watchdog_timer(1), deadline_ms=1_000 + WATCHDOG_MS)
    assert c.activity_ms == 1_000


def test_activity_only_records_and_never_moves_back() -> None:
    c = in_state("open")  # opened at 100
    c.activity(5_000)
    assert c.activity_ms == 5_000
    c.activity(4_000)  # an older fact arriving late
    assert c.activity_ms == 5_000
    assert c.state == "open"


def test_a_silent_socket_is_closed_with_499_when_its_watchdog_fires() -> None:
    c = in_state("open")  # opened at 100, watchdog due at 100 + 300_000
    due = 100 + WATCHDOG_MS
    effects = c.watchdog_due(due)
    reason = f"watchdog: no traffic for {WATCHDOG_MS} ms"
    # The timer that fired is the watchdog: nothing else is cancelled, nothing re-armed.
    assert effects == [
        CloseSocket(
            account=ACCOUNT, generation=GEN, attempt=1, status=Status.WATCHDOG, reason=reason
        ),
        log("warning", "lifecycle.watchdog", f"Closing: {reason}.", silent_ms=WATCHDOG_MS),
    ]
    assert (c.state, c.last_change_ms) == ("closing", due)
    assert c.socket == 1


def test_activity_re_arms_the_watchdog_when_it_fires_not_before() -> None:
    c = in_state("open")
    c.activity(50_000)
    c.activity(70_000)
    effects = c.watchdog_due(100 + WATCHDOG_MS)
    assert effects == [StartTimer(timer=watchdog_timer(1), deadline_ms=70_000 + WATCHDOG_MS)]
    assert c.state == "open"
    assert c.last_change_ms == 100  # no transition
    # Then silence: the re-armed deadline closes it.
    assert c.watchdog_due(70_000 + WATCHDOG_MS)[0] == CloseSocket(
        account=ACCOUNT,
        generation=GEN,
        attempt=1,
        status=499,
        reason=f"watchdog: no traffic for {WATCHDOG_MS} ms",
    )
    assert c.state == "closing"


@pytest.mark.parametrize(
    ("silent", "closes"),
    [(WATCHDOG_MS - 1, False), (WATCHDOG_MS, True), (WATCHDOG_MS + 1, True)],
)
def test_the_watchdog_boundary(silent: int, closes: bool) -> None:
    c = in_state("open")
    c.activity(10_000)
    effects = c.watchdog_due(10_000 + silent)
    assert (c.state == "closing") is closes
    if closes:
        assert isinstance(effects[0], CloseSocket)
        assert effects[0].status == 499
        assert effects[1] == log(
            "warning",
            "lifecycle.watchdog",
            f"Closing: watchdog: no traffic for {silent} ms.",
            silent_ms=silent,
        )
    else:
        assert effects == [StartTimer(timer=watchdog_timer(1), deadline_ms=10_000 + WATCHDOG_MS)]


def test_the_close_after_a_watchdog_close_retries_and_cancels_no_timer() -> None:
    c = in_state("open")
    c.watchdog_due(100 + WATCHDOG_MS)
    effects = c.closed(499, 100 + WATCHDOG_MS + 20, 0.0)
    assert c.state == "backoff"
    assert not any(isinstance(e, CancelTimer) for e in effects)
    assert isinstance(effects[-1], Log)
    assert effects[-1].fields["reason"] == "closed by the watchdog"
    # Open for longer than healthy_after_ms: the retry count started again.
    assert c.retries == 1


#: Every way an open socket is left: closes of each kind, a stop, an adapter's watchdog.
LEAVE_OPEN: list[Callable[[Controller], list[Effect]]] = [
    lambda c: c.closed(408, NOW, 0.0),
    lambda c: c.closed(401, NOW, 0.0),
    lambda c: c.closed(515, NOW, 0.0),
    lambda c: c.stop("owner", NOW),
    lambda c: c.watchdog(NOW, silent_ms=5),
]


@pytest.mark.parametrize("call", LEAVE_OPEN)
def test_leaving_an_open_socket_cancels_its_watchdog_exactly_once(
    call: Callable[[Controller], list[Effect]],
) -> None:
    c = in_state("open")
    effects = call(c)
    cancelled = [e.timer for e in effects if isinstance(e, CancelTimer)]
    assert cancelled == [watchdog_timer(1)]
    assert isinstance(effects[0], CancelTimer)  # before anything else about the socket


@pytest.mark.parametrize("state", ["connecting", "closing", "backoff"])
def test_leaving_a_socket_that_is_not_open_cancels_no_watchdog(state: str) -> None:
    c = in_state(state)
    effects = c.stop("owner", NOW)
    assert not any(
        isinstance(e.timer, WatchdogTimer) for e in effects if isinstance(e, CancelTimer)
    )


@pytest.mark.parametrize("call", LEAVE_OPEN)
def test_watchdog_off_arms_and_cancels_nothing(call: Callable[[Controller], list[Effect]]) -> None:
    off = LifecycleConfig(watchdog_ms=None)
    c = in_state("connecting", off)
    assert c.opened(NOW) == [log("info", "lifecycle.open", "Web connection open.", retry=0)]
    effects = call(c)
    assert effects
    assert not any(_is_watchdog(e) for e in effects)


def _is_watchdog(effect: Effect) -> bool:
    return isinstance(effect, StartTimer | CancelTimer) and isinstance(effect.timer, WatchdogTimer)


def test_the_adapter_watchdog_names_the_silence() -> None:
    c = in_state("open")
    effects = c.watchdog(NOW, silent_ms=300_000)
    reason = "watchdog: no traffic for 300000 ms"
    assert effects == [
        CancelTimer(timer=watchdog_timer(1)),
        CloseSocket(account=ACCOUNT, generation=GEN, attempt=1, status=499, reason=reason),
        log("warning", "lifecycle.watchdog", f"Closing: {reason}.", silent_ms=300_000),
    ]


@pytest.mark.parametrize("value", [0, -1, True])
def test_a_bad_watchdog_setting_is_a_config_error(value: int) -> None:
    with pytest.raises(ConfigError, match=r"LifecycleConfig.watchdog_ms must be an int >= 1"):
        LifecycleConfig(watchdog_ms=value)


@pytest.mark.parametrize("value", [1.5, "10"])
def test_the_watchdog_setting_check_holds_without_beartype(value: object) -> None:
    cfg = LifecycleConfig()
    object.__setattr__(cfg, "watchdog_ms", value)
    with pytest.raises(ConfigError, match=r"watchdog_ms must be an int >= 1 or None, got "):
        cfg.__post_init__()


def test_watchdog_settings_that_are_accepted() -> None:
    assert LifecycleConfig(watchdog_ms=1).watchdog_ms == 1
    assert LifecycleConfig(watchdog_ms=None).watchdog_ms is None
    assert LifecycleConfig().watchdog_ms == WATCHDOG_MS


# -- socket attempt numbers ---------------------------------------------------------------------


def test_attempt_numbers_grow_across_retries_reconnects_and_generations() -> None:
    counter = AttemptCounter()
    first = Controller(ACCOUNT, 1, CONFIG, counter)
    second = Controller(ACCOUNT, 2, CONFIG, counter)
    opened: list[tuple[int, int]] = []

    def note(effects: list[Effect]) -> None:
        opened.extend((e.generation, e.attempt) for e in effects if isinstance(e, OpenSocket))

    note(first.start(0))  # 1
    note(first.closed(408, 10, 0.0))
    note(first.retry_due(first.retry_at_ms or 0))  # 2: a retry
    note(first.opened(3_000))
    note(first.closed(515, 4_000, 0.0))  # 3: a 515 reconnect
    note(second.start(5_000))  # 4: the successor, same account, same counter
    note(first.stop("replaced by generation 2", 5_000))
    note(second.opened(5_100))
    note(second.closed(428, 6_000, 0.0))
    note(second.retry_due(second.retry_at_ms or 0))  # 5
    assert opened == [(1, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    assert (first.socket, second.socket, counter.last_attempt) == (3, 5, 5)


def test_the_attempt_counter_starts_after_its_last_attempt() -> None:
    counter = AttemptCounter()
    assert [counter.next_attempt() for _ in range(3)] == [1, 2, 3]
    resumed = AttemptCounter(last_attempt=41)
    assert resumed.next_attempt() == 42
    assert isinstance(counter, AttemptSource)


class _Issued:
    """An attempt source that records what it issued (any AttemptSource will do)."""

    def __init__(self) -> None:
        self.issued: list[int] = []

    def next_attempt(self) -> int:
        self.issued.append(len(self.issued) * 10 + 7)
        return self.issued[-1]


def test_the_controller_uses_whatever_its_attempt_source_issues() -> None:
    source = _Issued()
    c = Controller(ACCOUNT, GEN, CONFIG, source)
    assert c.start(0)[0] == open_socket(7)
    c.opened(10)
    effects = c.closed(515, 20, 0.0)
    assert effects[:2] == [CancelTimer(timer=watchdog_timer(7)), open_socket(17)]
    assert source.issued == [7, 17]
    assert c.socket == 17


# -- details -------------------------------------------------------------------------------


def test_a_new_controller_is_idle_with_nothing_spent() -> None:
    c = new()
    assert (c.state, c.retries, c.socket, c.started_at_ms, c.opened_at_ms, c.retry_at_ms) == (
        "idle",
        0,
        None,
        None,
        None,
        None,
    )
    assert (c.last_status, c.last_change_ms, c.is_terminal, c.has_socket) == (None, 0, False, False)
    assert (c.activity_ms, c.event_ms, c.refs, c.identity, c.last_identity) == (0, 0, 0, None, None)
    assert repr(c) == "Controller('acct', gen=3, state='idle', socket=None, retries=0)"


def test_start_and_open_record_their_times() -> None:
    c = new()
    c.start(10)
    c.opened(25)
    assert (c.started_at_ms, c.opened_at_ms, c.last_change_ms, c.activity_ms) == (10, 25, 25, 25)
    assert repr(c) == "Controller('acct', gen=3, state='open', socket=1, retries=0)"


def test_the_seed_line_is_reproduced_exactly() -> None:
    c = in_state("open")
    effects = c.closed(408, 7_347_820, 0.28)
    assert effects[2] == log(
        "warning",
        "lifecycle.retry_scheduled",
        "Web connection closed (status 408). Retry 1/12 in 2.14s…",
        status=408,
        reason="connection lost",
        retry=1,
        max_attempts=12,
        delay_ms=2140,
    )
    assert effects[1] == StartTimer(timer=RETRY, deadline_ms=7_347_820 + 2140)
    assert (c.retry_at_ms, c.last_status) == (7_347_820 + 2140, 408)


def test_a_close_without_status_says_so() -> None:
    c = in_state("connecting")
    effects = c.closed(None, 100, 0.0)
    assert isinstance(effects[1], Log)
    assert effects[1].message == "Web connection closed (no status). Retry 1/12 in 2.00s…"
    assert effects[1].fields["status"] is None


def test_a_close_with_a_status_member_logs_the_plain_number() -> None:
    c = in_state("open")
    effects = c.closed(Status.CONNECTION_LOST, NOW, U)
    assert isinstance(effects[-1], Log)
    assert effects[-1].message == "Web connection closed (status 408). Retry 1/12 in 2.14s…"


@pytest.mark.parametrize("state", ["idle", "backoff", *sorted(TERMINAL_STATES)])
def test_a_close_where_no_socket_can_be_is_rejected(state: str) -> None:
    c = in_state(state)
    before = snapshot(c)
    with pytest.raises(InvalidTransition, match=rf"lifecycle: input '\w+' .* state '{state}'"):
        c.closed(408, NOW, 0.5)
    assert snapshot(c) == before


def test_a_bad_u_on_an_accepted_close_changes_nothing() -> None:
    c = in_state("open")
    before = snapshot(c)
    with pytest.raises(ValueError, match=r"u must be in"):
        c.closed(408, NOW, 1.0)
    assert snapshot(c) == before


def test_440_replaced_never_reconnects_even_with_budget_left() -> None:
    c = in_state("open")
    effects = c.closed(440, NOW, 0.5)
    assert c.state == "replaced"
    assert c.is_terminal
    assert not any(isinstance(e, OpenSocket | StartTimer) for e in effects)


def test_overridden_policy_is_honoured() -> None:
    policy = DEFAULT_STATUS_POLICY.with_overrides({440: DEFAULT_STATUS_POLICY.decide(408)})
    c = new(LifecycleConfig(status_policy=policy))
    c.start(0)
    c.closed(440, 10, 0.0)
    assert c.state == "backoff"


def test_max_attempts_zero_never_retries() -> None:
    c = new(LifecycleConfig(backoff=BackoffConfig(max_attempts=0)))
    c.start(0)
    c.closed(408, 10, 0.0)
    assert c.state == "exhausted"


# -- one chokepoint -------------------------------------------------------------------------


def test_only_set_state_assigns_a_state_anywhere_in_the_package() -> None:
    """``state = ...`` appears in exactly the two chokepoints, their constructors, the error
    that names a state and the health snapshot's own field; nowhere in the engine, the book,
    routing or the adapters."""
    found = {
        f"{path.parent.name}/{path.name}:{where}"
        for directory in ("core", "adapters")
        for path in sorted((ROOT / directory).glob("*.py"))
        for where in state_assignments(path)
    }
    assert found == {
        "core/controller.py:Controller.__init__",
        "core/controller.py:Controller._set_state",
        "core/delivery.py:Reply.__init__",
        "core/delivery.py:Reply._set_state",
        "core/errors.py:InvalidTransition.__init__",
        # A frozen snapshot's field, set to its State member once (never a machine changing).
        "core/health.py:ControllerSnapshot.__post_init__",
    }


def test_the_source_scan_finds_a_stray_assignment(tmp_path: Path) -> None:
    """The scan above can fail: it sees plain, unpacking and setattr assignments."""
    module = tmp_path / "m.py"
    module.write_text(
        "class C:\n"
        "    def a(self):\n        self.state = 1\n"
        "    def b(self, o):\n        x, o.state = 1, 2\n"
        "    def c(self, o):\n        setattr(o, 'state', 3)\n"
        "    def d(self, o):\n        o.other = 4\n",
        encoding="utf-8",
    )
    assert state_assignments(module) == {"C.a", "C.b", "C.c"}


# -- the controller against the oracle, on random inputs ------------------------------------

Op = tuple[str, int | None]
STATUSES = [None, 401, 403, 408, 411, 428, 440, 499, 500, 503, 515, 777]
OPS = st.one_of(
    st.tuples(
        st.sampled_from(["start", "opened", "retry_due", "watchdog", "watchdog_due", "stop"]),
        st.none(),
    ),
    st.tuples(st.just("activity"), st.none()),
    st.tuples(st.just("closed"), st.sampled_from(STATUSES)),
)
_RETRYABLE = st.sampled_from([None, 408, 428, 499, 500, 503, 515, 777])
#: Inputs that keep a controller in each state alive and moving, so random lives go deep
#: (any input at all is drawn too, a quarter of the time: those are mostly rejections).
USEFUL: dict[State, st.SearchStrategy[Op]] = {
    State.IDLE: st.just(("start", None)),
    State.CONNECTING: st.one_of(
        st.just(("opened", None)), st.tuples(st.just("closed"), _RETRYABLE)
    ),
    State.OPEN: st.one_of(
        st.just(("activity", None)),
        st.just(("watchdog_due", None)),
        st.just(("watchdog", None)),
        st.tuples(st.just("closed"), _RETRYABLE),
    ),
    State.CLOSING: st.tuples(st.just("closed"), st.sampled_from(STATUSES)),
    State.BACKOFF: st.just(("retry_due", None)),
}


def _model_trigger(c: Controller, op: Op, now: int) -> str:
    """The trigger an input should become, derived from the policy independently."""
    name, status = op
    if name == "watchdog_due":
        return "watchdog"
    if name != "closed":
        return name
    action = DEFAULT_STATUS_POLICY.decide(status).action
    if action is CloseAction.RECONNECT and c.state == "connecting":
        action = CloseAction.RETRY  # a 515 before the socket ever opened backs off
    if action is not CloseAction.RETRY:
        return f"close_{action.value}"
    healthy = c.opened_at_ms is not None and now - c.opened_at_ms > 60_000
    spent = 0 if healthy else c.retries
    return "close_exhausted" if spent >= MAX else "close_retry"


class Timers:
    """The timers a runtime would hold for one controller: started, replaced, cancelled, fired."""

    def __init__(self) -> None:
        self.armed: dict[Timer, int] = {}

    def apply(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, StartTimer):
                self.armed[e.timer] = e.deadline_ms
            elif isinstance(e, CancelTimer):
                # Nothing extra: a cancel names a timer that is really pending.
                assert e.timer in self.armed, f"cancel of a timer that is not pending: {e.timer}"
                del self.armed[e.timer]


@given(
    data=st.data(),
    u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    watchdog_ms=st.sampled_from([None, 1, 60_000, WATCHDOG_MS]),
)
def test_controller_follows_the_oracle_and_rejections_change_nothing(
    data: st.DataObject, u: float, watchdog_ms: int | None
) -> None:
    config = dataclasses.replace(CONFIG, watchdog_ms=watchdog_ms)
    c = new(config)
    machine = ORACLE.machine()
    timers = Timers()
    issued: list[int] = []
    activity = 0  # the model's last sign of life of the open socket
    now = 0
    for _ in range(data.draw(st.integers(0, 60), label="length")):
        useful = USEFUL.get(c.state)
        anything = useful is None or data.draw(st.integers(0, 3), label="anything") == 0
        op = data.draw(OPS if anything or useful is None else useful, label="op")
        now += data.draw(st.one_of(st.integers(0, 1_000), st.integers(0, 400_000)), label="ms")
        name, status = op
        if name == "activity":
            if c.state is State.OPEN:  # the engine reports activity of an open socket only
                c.activity(now)
                activity = max(activity, now)
            continue
        if name == "watchdog_due":
            wd = WatchdogTimer(ACCOUNT, c.socket or 0)
            if wd not in timers.armed:
                continue  # only a pending timer can fire
            now = max(now, timers.armed.pop(wd))  # it fires at its deadline or later
        if name == "retry_due" and RETRY in timers.armed:
            now = max(now, timers.armed.pop(RETRY))
        trigger = _model_trigger(c, op, now)
        expected = EXPECTED.get((c.state, trigger))
        before = snapshot(c)
        state_before = c.state
        rejected: InvalidTransition | None = None
        try:
            if name == "closed":
                effects = c.closed(status, now, u)
            elif name == "stop":
                effects = c.stop("test", now)
            elif name == "watchdog_due":
                effects = c.watchdog_due(now)
            else:
                effects = getattr(c, name)(now)
        except InvalidTransition as error:
            rejected = error
        if rejected is not None:
            assert expected is None
            assert rejected.trigger == trigger
            assert fire(machine, trigger) is None
            assert snapshot(c) == before
            continue
        timers.apply(effects)
        issued += [e.attempt for e in effects if isinstance(e, OpenSocket)]
        if name == "watchdog_due" and now - activity < (watchdog_ms or 0):
            # Activity since the deadline was set: re-armed from it, no transition.
            assert effects == [
                StartTimer(
                    timer=WatchdogTimer(ACCOUNT, c.socket or 0),
                    deadline_ms=activity + (watchdog_ms or 0),
                )
            ]
            assert snapshot(c) == before
            assert c.state is state_before
            continue
        assert expected is not None
        assert fire(machine, trigger) == expected
        assert c.state == machine.state == expected
        if name == "opened":
            activity = now
        # The invariants of the controller after every accepted input.
        assert 0 <= c.retries <= MAX
        assert (c.retry_at_ms is not None) is (c.state == "backoff")
        assert (c.opened_at_ms is not None) is (c.state in ("open", "closing"))
        assert issued == list(range(1, len(issued) + 1))  # unique, growing, none skipped
        assert c.socket == (issued[-1] if issued else None)
        for e in effects:
            if isinstance(e, CloseSocket):
                assert e.attempt == c.socket
        # Exactly the timers the state calls for are pending: nothing leaks, nothing extra.
        wanted: dict[Timer, int] = {}
        if c.state is State.BACKOFF:
            assert c.retry_at_ms is not None
            wanted[RETRY] = c.retry_at_ms
        if c.state is State.OPEN and watchdog_ms is not None:
            assert c.socket is not None
            wanted[WatchdogTimer(ACCOUNT, c.socket)] = timers.armed.get(
                WatchdogTimer(ACCOUNT, c.socket), -1
            )
        assert timers.armed == wanted


@given(
    ops=st.lists(
        st.tuples(st.integers(0, 1), OPS, st.integers(min_value=0, max_value=90_000)),
        max_size=60,
    ),
)
def test_two_generations_sharing_a_counter_never_reuse_an_attempt_number(
    ops: list[tuple[int, Op, int]],
) -> None:
    counter = AttemptCounter()
    controllers = [Controller(ACCOUNT, 1, CONFIG, counter), Controller(ACCOUNT, 2, CONFIG, counter)]
    issued: list[tuple[int, int]] = []
    now = 0
    for which, (name, status), step in ops:
        now += step
        c = controllers[which]
        try:
            if name == "closed":
                effects = c.closed(status, now, 0.5)
            elif name == "stop":
                effects = c.stop("test", now)
            elif name == "activity":
                c.activity(now)
                effects = []
            elif name == "watchdog_due":
                effects = c.watchdog_due(now) if c.state is State.OPEN else []
            else:
                effects = getattr(c, name)(now)
        except InvalidTransition:
            continue
        issued += [(e.generation, e.attempt) for e in effects if isinstance(e, OpenSocket)]
    assert [attempt for _, attempt in issued] == list(range(1, len(issued) + 1))
    assert counter.last_attempt == len(issued)
    for c in controllers:
        mine = [a for g, a in issued if g == c.generation]
        assert c.socket == (mine[-1] if mine else None)


def test_every_state_change_goes_through_set_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behaviour, not only source: record every ``_set_state`` call along a busy life."""
    calls: list[tuple[State, Trigger, State, int]] = []
    original = Controller._set_state

    def spy(self: Controller, trigger: Trigger, now: int) -> State:
        before = original(self, trigger, now)
        calls.append((before, trigger, self.state, now))
        return before

    monkeypatch.setattr(Controller, "_set_state", spy)
    c = new()
    seen = [c.state]
    steps: list[Callable[[Controller], object]] = [
        lambda c: c.start(1),
        lambda c: c.opened(2),
        lambda c: c.activity(3),
        lambda c: c.watchdog_due(3 + WATCHDOG_MS),
        lambda c: c.closed(499, 400_000, 0.0),
        lambda c: c.retry_due(c.retry_at_ms or 0),
        lambda c: c.opened(500_000),
        lambda c: c.closed(515, 500_010, 0.0),
        lambda c: c.opened(500_020),
        lambda c: c.watchdog(500_030, 7),
        lambda c: c.closed(408, 500_040, 0.0),
        lambda c: c.stop("owner", 500_050),
    ]
    for step in steps:
        step(c)
        if c.state != seen[-1]:
            seen.append(c.state)
    assert [after for _, _, after, _ in calls] == seen[1:]
    for before, trigger, after, _ in calls:
        assert EXPECTED[(before, trigger)] == after
    assert c.last_change_ms == calls[-1][3] == 500_050
