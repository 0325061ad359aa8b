"""The controller lifecycle: every (state, trigger) pair, the oracle, and random sequences."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transitions import MachineError

from heirline.core.backoff import BackoffConfig
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogValue,
    OpenSocket,
    StartTimer,
)
from heirline.core.errors import InvalidTransition
from heirline.core.lifecycle import (
    LIFECYCLE,
    TERMINAL_STATES,
    Controller,
    LifecycleConfig,
    retry_timer_key,
)
from heirline.core.policy import DEFAULT_STATUS_POLICY, CloseAction

ACCOUNT = "acct"
GEN = 3
MAX = 12
NOW = 5000
U = 0.28  # 2000 ms * (1 + 0.25 * 0.28) = 2140 ms: the seed line's "2.14s"
KEY = "retry/acct/3"
CONFIG = LifecycleConfig()
TABLE = LIFECYCLE.compile()


def log(level: str, code: str, message: str, **fields: LogValue) -> Log:
    return Log(
        level=level, code=code, message=message, account=ACCOUNT, generation=GEN, fields=fields
    )


OPEN_SOCKET = OpenSocket(account=ACCOUNT, generation=GEN)


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


def in_state(state: str) -> Controller:
    """A controller driven through the public API into ``state``."""
    c = Controller(ACCOUNT, GEN, CONFIG)
    PATHS[state](c)
    assert c.state == state
    return c


def _spend_all(c: Controller) -> Controller:
    c.attempt = MAX
    return c


def _leave_budget(c: Controller) -> Controller:
    c.attempt = min(c.attempt, MAX - 1)
    return c


# trigger -> (set-up on the controller, the call that produces that trigger)
INPUTS: dict[
    str, tuple[Callable[[Controller], Controller], Callable[[Controller], list[Effect]]]
] = {
    "start": (lambda c: c, lambda c: c.start(NOW)),
    "opened": (lambda c: c, lambda c: c.opened(NOW)),
    "close_retry": (_leave_budget, lambda c: c.closed(408, NOW, U)),
    "close_reconnect": (lambda c: c, lambda c: c.closed(515, NOW, U)),
    "close_exhausted": (_spend_all, lambda c: c.closed(408, NOW, U)),
    "close_logged_out": (lambda c: c, lambda c: c.closed(401, NOW, U)),
    "close_replaced": (lambda c: c, lambda c: c.closed(440, NOW, U)),
    "close_forbidden": (lambda c: c, lambda c: c.closed(403, NOW, U)),
    "retry_due": (lambda c: c, lambda c: c.retry_due(NOW)),
    "watchdog": (lambda c: c, lambda c: c.watchdog(NOW)),
    "stop": (lambda c: c, lambda c: c.stop("owner", NOW)),
}


def _terminal_close(status: int, dest: str, reason: str) -> list[Effect]:
    return [
        log(
            "error",
            f"lifecycle.{dest}",
            f"Web connection closed (status {status}): {reason}. Not reconnecting.",
            status=status,
            reason=reason,
            attempt=0,
            max_attempts=MAX,
        )
    ]


def expected_effects(state: str, trigger: str) -> list[Effect]:
    """What a controller in ``state`` must emit for ``trigger`` (declared pairs only)."""
    stopped = log("info", "lifecycle.stopped", "Stopped: owner.", reason="owner", state=state)
    close_owner = CloseSocket(account=ACCOUNT, generation=GEN, reason="owner")
    stop_effects: dict[str, list[Effect]] = {
        "idle": [stopped],
        "backoff": [CancelTimer(key=KEY), stopped],
    }
    table: dict[str, list[Effect]] = {
        "start": [OPEN_SOCKET, log("info", "lifecycle.connecting", "Connecting.", attempt=0)],
        "opened": [log("info", "lifecycle.open", "Web connection open.", attempt=0)],
        "close_retry": [
            StartTimer(key=KEY, deadline_ms=NOW + 2140),
            log(
                "warning",
                "lifecycle.retry_scheduled",
                "Web connection closed (status 408). Retry 1/12 in 2.14s…",
                status=408,
                reason="connection lost",
                attempt=1,
                max_attempts=MAX,
                delay_ms=2140,
            ),
        ],
        "close_reconnect": [
            OPEN_SOCKET,
            log(
                "info",
                "lifecycle.reconnect",
                "Web connection closed (status 515): restart required. Reconnecting now.",
                status=515,
                reason="restart required",
                attempt=0,
            ),
        ],
        "close_exhausted": [
            log(
                "error",
                "lifecycle.exhausted",
                "Web connection closed (status 408). Giving up after 12/12 retries.",
                status=408,
                reason="connection lost",
                attempt=MAX,
                max_attempts=MAX,
            )
        ],
        "close_logged_out": _terminal_close(401, "logged_out", "logged out"),
        "close_replaced": _terminal_close(440, "replaced", "connection replaced by another client"),
        "close_forbidden": _terminal_close(403, "forbidden", "forbidden"),
        "retry_due": [
            OPEN_SOCKET,
            log(
                "info",
                "lifecycle.retrying",
                "Retry 1/12: connecting.",
                attempt=1,
                max_attempts=MAX,
            ),
        ],
        "watchdog": [
            CloseSocket(account=ACCOUNT, generation=GEN, status=499, reason="watchdog: no traffic"),
            log("warning", "lifecycle.watchdog", "Closing: watchdog: no traffic.", silent_ms=None),
        ],
        "stop": stop_effects.get(state, [close_owner, stopped]),
    }
    return table[trigger]


def snapshot(c: Controller) -> tuple[object, ...]:
    return tuple(getattr(c, name) for name in Controller.__slots__)


def oracle_dest(state: str, trigger: str) -> str | None:
    machine = LIFECYCLE.oracle(state)
    try:
        machine.trigger(trigger)
    except MachineError:
        return None
    return str(machine.state)


#: Pairs no input can produce: the classification turns the input into another trigger.
UNREACHABLE = {("connecting", "close_reconnect")}


@pytest.mark.parametrize(("state", "trigger"), sorted(set(LIFECYCLE.pairs()) - UNREACHABLE))
def test_every_state_trigger_pair_is_a_transition_with_its_effects_or_a_rejection(
    state: str, trigger: str
) -> None:
    setup, call = INPUTS[trigger]
    controller = setup(in_state(state))
    dest = oracle_dest(state, trigger)
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
    effects = call(controller)
    assert controller.state == dest == TABLE.next(state, trigger)
    assert effects == expected_effects(state, trigger)
    assert controller.last_change_ms == NOW
    assert controller.has_socket is (dest == "open")
    assert controller.is_terminal is (dest in TERMINAL_STATES)
    assert (controller.retry_at_ms is not None) is (dest == "backoff")


def test_a_515_before_the_socket_ever_opened_backs_off_instead_of_spinning() -> None:
    c = in_state("connecting")
    assert not TABLE.accepts("connecting", "close_reconnect")
    effects = c.closed(515, NOW, U)
    assert (c.state, c.attempt) == ("backoff", 1)
    assert effects[0] == StartTimer(key=KEY, deadline_ms=NOW + 2140)
    # A server answering every connect with 515 uses up the budget and ends exhausted.
    for _ in range(MAX):
        assert c.retry_at_ms is not None
        c.retry_due(c.retry_at_ms)
        c.closed(515, c.last_change_ms + 1, U)
    assert c.state == "exhausted"


def test_a_515_on_an_open_socket_reconnects_at_once_without_spending_an_attempt() -> None:
    c = in_state("open")
    assert c.closed(515, NOW, U)[0] == OPEN_SOCKET
    assert (c.state, c.attempt) == ("connecting", 0)


def test_the_pairs_cover_every_declared_state_and_trigger() -> None:
    assert set(PATHS) == set(LIFECYCLE.states)
    assert set(INPUTS) == set(LIFECYCLE.triggers)
    assert frozenset(LIFECYCLE.terminal) == TERMINAL_STATES
    assert {"logged_out", "replaced", "forbidden", "exhausted", "stopped"} == TERMINAL_STATES


def test_compiled_table_and_oracle_agree_on_every_pair() -> None:
    for state, trigger in LIFECYCLE.pairs():
        dest = oracle_dest(state, trigger)
        assert TABLE.accepts(state, trigger) is (dest is not None)
        if dest is not None:
            assert TABLE.next(state, trigger) == dest


@given(st.lists(st.sampled_from(LIFECYCLE.triggers), max_size=40))
def test_compiled_table_and_oracle_agree_on_random_trigger_sequences(
    triggers: list[str],
) -> None:
    machine = LIFECYCLE.oracle()
    state = LIFECYCLE.initial
    for trigger in triggers:
        try:
            machine.trigger(trigger)
            oracle_ok = True
        except MachineError:
            oracle_ok = False
        try:
            state = TABLE.next(state, trigger)
            table_ok = True
        except InvalidTransition:
            table_ok = False
        assert table_ok is oracle_ok
        assert state == machine.state


def test_every_non_terminal_state_accepts_stop_and_terminal_states_accept_nothing() -> None:
    for state in LIFECYCLE.states:
        accepted = {t for t in LIFECYCLE.triggers if TABLE.accepts(state, t)}
        if state in TERMINAL_STATES:
            assert accepted == set()
        else:
            assert "stop" in accepted


# -- the controller against the oracle, on random inputs ------------------------------------

Op = tuple[str, int | None]
OPS = st.one_of(
    st.tuples(st.sampled_from(["start", "opened", "retry_due", "watchdog", "stop"]), st.none()),
    st.tuples(
        st.just("closed"),
        st.sampled_from([None, 401, 403, 408, 411, 428, 440, 499, 500, 503, 515, 777]),
    ),
)


def _model_trigger(c: Controller, op: Op, now: int) -> str:
    """The trigger an input should become, derived from the policy independently."""
    name, status = op
    if name != "closed":
        return name
    action = DEFAULT_STATUS_POLICY.decide(status).action
    if action is CloseAction.RECONNECT and c.state == "connecting":
        action = CloseAction.RETRY  # a 515 before the socket ever opened backs off
    if action is not CloseAction.RETRY:
        return f"close_{action.value}"
    healthy = c.opened_at_ms is not None and now - c.opened_at_ms > 60_000
    spent = 0 if healthy else c.attempt
    return "close_exhausted" if spent >= MAX else "close_retry"


@given(
    ops=st.lists(st.tuples(OPS, st.integers(min_value=0, max_value=90_000)), max_size=60),
    u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_controller_follows_the_oracle_and_rejections_change_nothing(
    ops: list[tuple[Op, int]], u: float
) -> None:
    c = Controller(ACCOUNT, GEN, CONFIG)
    machine = LIFECYCLE.oracle()
    now = 0
    for op, step in ops:
        now += step
        trigger = _model_trigger(c, op, now)
        expected = oracle_dest(c.state, trigger)
        before = snapshot(c)
        name, status = op
        rejected: InvalidTransition | None = None
        try:
            if name == "closed":
                c.closed(status, now, u)
            elif name == "stop":
                c.stop("test", now)
            else:
                getattr(c, name)(now)
        except InvalidTransition as error:
            rejected = error
        if rejected is not None:
            assert expected is None
            assert rejected.trigger == trigger
            assert snapshot(c) == before
            continue
        assert expected is not None
        machine.trigger(trigger)
        assert c.state == machine.state == expected
        assert 0 <= c.attempt <= MAX
        assert (c.retry_at_ms is not None) is (c.state == "backoff")
        assert (c.opened_at_ms is not None) is (c.state in ("open", "closing"))


# -- details -------------------------------------------------------------------------------


def test_retry_timer_key() -> None:
    assert retry_timer_key("acct", 3) == KEY
    assert retry_timer_key("x/y", 10) == "retry/x/y/10"


def test_a_new_controller_is_idle_with_nothing_spent() -> None:
    c = Controller(ACCOUNT, GEN, CONFIG)
    assert (c.state, c.attempt, c.started_at_ms, c.opened_at_ms, c.retry_at_ms) == (
        "idle",
        0,
        None,
        None,
        None,
    )
    assert (c.last_status, c.last_change_ms, c.is_terminal, c.has_socket) == (None, 0, False, False)
    assert repr(c) == "Controller('acct', gen=3, state='idle', attempt=0)"


def test_start_and_open_record_their_times() -> None:
    c = Controller(ACCOUNT, GEN, CONFIG)
    c.start(10)
    c.opened(25)
    assert (c.started_at_ms, c.opened_at_ms, c.last_change_ms) == (10, 25, 25)


def test_the_seed_line_is_reproduced_exactly() -> None:
    c = in_state("open")
    effects = c.closed(408, 7_347_820, 0.28)
    assert effects[1] == log(
        "warning",
        "lifecycle.retry_scheduled",
        "Web connection closed (status 408). Retry 1/12 in 2.14s…",
        status=408,
        reason="connection lost",
        attempt=1,
        max_attempts=12,
        delay_ms=2140,
    )
    assert effects[0] == StartTimer(key=KEY, deadline_ms=7_347_820 + 2140)
    assert (c.retry_at_ms, c.last_status) == (7_347_820 + 2140, 408)


def test_a_close_without_status_says_so() -> None:
    c = in_state("connecting")
    effects = c.closed(None, 100, 0.0)
    assert isinstance(effects[1], Log)
    assert effects[1].message == "Web connection closed (no status). Retry 1/12 in 2.00s…"
    assert effects[1].fields["status"] is None


def test_the_watchdog_names_the_silence() -> None:
    c = in_state("open")
    effects = c.watchdog(NOW, silent_ms=300_000)
    reason = "watchdog: no traffic for 300000 ms"
    assert effects[0] == CloseSocket(account=ACCOUNT, generation=GEN, status=499, reason=reason)
    assert effects[1] == log(
        "warning", "lifecycle.watchdog", f"Closing: {reason}.", silent_ms=300_000
    )


def test_the_watchdog_close_fact_schedules_a_retry() -> None:
    c = in_state("closing")
    effects = c.closed(499, NOW, 0.0)
    assert c.state == "backoff"
    assert isinstance(effects[1], Log)
    assert effects[1].fields["reason"] == "closed by the watchdog"


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
    policy = DEFAULT_STATUS_POLICY.with_overrides(
        {440: DEFAULT_STATUS_POLICY.decide(408)},
    )
    c = Controller(ACCOUNT, GEN, LifecycleConfig(status_policy=policy))
    c.start(0)
    c.closed(440, 10, 0.0)
    assert c.state == "backoff"


def test_max_attempts_zero_never_retries() -> None:
    c = Controller(ACCOUNT, GEN, LifecycleConfig(backoff=BackoffConfig(max_attempts=0)))
    c.start(0)
    c.closed(408, 10, 0.0)
    assert c.state == "exhausted"
