"""The health policy: each rule at its exact boundary (a hand-written decision table), the
graces, cooldown, intensity, forgetting, the 114 ms incident, and a reference model."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core.effects import CloseSocket, Effect, Log
from heirline.core.engine import Engine, EngineConfig
from heirline.core.errors import ConfigError
from heirline.core.events import HealthCheck, SocketOpened, Start, TimerFired
from heirline.core.health import (
    CONTROLLER_STATES,
    ControllerSnapshot,
    HealthAction,
    HealthConfig,
    HealthDecision,
    HealthInputError,
    HealthMonitor,
    HealthReason,
)
from heirline.core.lifecycle import LifecycleConfig, State
from heirline.core.timers import WatchdogTimer

DEFAULT = HealthConfig()
BOOT = 0  # the monitor starts here
NOW = 10_000_000  # long after every start-up grace
OLD = NOW - 1_000_000  # a controller generation started long before NOW
STALE = DEFAULT.stale_after_ms
CONNECT = DEFAULT.connect_grace_ms
GRACE = 30_000  # DEFAULT.retry_grace_ms
GAVE_UP = DEFAULT.gave_up_attempts

H, R, HOLD = HealthAction.HEALTHY, HealthAction.RESTART, HealthAction.HOLD


def snap(state: str, account: str = "acct", **kw: Any) -> ControllerSnapshot:
    """An old controller of ``account`` in ``state``, last seen just now."""
    base = ControllerSnapshot(account, 1, State(state), started_at_ms=OLD, last_event_ms=NOW)
    return dataclasses.replace(base, **kw)


def monitor(**kw: Any) -> HealthMonitor:
    return HealthMonitor(dataclasses.replace(DEFAULT, **kw), BOOT)


def decide(s: ControllerSnapshot, now: int = NOW, **kw: Any) -> HealthDecision:
    return monitor(**kw).evaluate(s, now)


def test_the_defaults_are_openclaws() -> None:
    assert dataclasses.astuple(DEFAULT) == (
        300_000,
        60_000,
        120_000,
        1_800_000,
        600_000,
        10,
        3_600_000,
        10,
        30_000,
    )


# --- the decisions, written out by hand ----------------------------------------------------

_CANNOT = "; a restart cannot fix this, so none is made"

#: (state, snapshot fields, config overrides) -> (action, reason, detail), one rule per row,
#: each at or one past its boundary. The monitor started long ago; no restart history.
DECISIONS: list[tuple[str, dict[str, Any], dict[str, Any], HealthAction, str | None, str]] = [
    # not expected: nothing to restart, whatever the state
    (
        "exhausted",
        {"expected": False},
        {},
        H,
        None,
        "account is not expected to run; nothing to restart",
    ),
    # a restart cannot fix these: held, never restarted
    (
        "logged_out",
        {"retries": 50},
        {},
        HOLD,
        "logged-out",
        "logged out (401): relink the account" + _CANNOT,
    ),
    (
        "replaced",
        {},
        {},
        HOLD,
        "replaced",
        "replaced (440): another session holds the account; restarting would fight it" + _CANNOT,
    ),
    ("forbidden", {}, {}, HOLD, "forbidden", "forbidden (403): the account is barred" + _CANNOT),
    ("exhausted", {}, {}, R, "gave-up", "controller exhausted its reconnect attempts"),
    ("stopped", {}, {}, R, "stopped", "controller stopped while the account is expected"),
    # the stale rule: healthy at last_event_ms + stale_after_ms, stale 1 ms later
    ("open", {"last_event_ms": NOW - 5_000}, {}, H, None, "open, last activity 5s ago"),
    ("open", {"last_event_ms": NOW - STALE}, {}, H, None, "open, last activity 1800s ago"),
    (
        "open",
        {"last_event_ms": NOW - STALE - 1},
        {},
        R,
        "stale-socket",
        "no activity for 1800.00s, over the 1800s limit",
    ),
    # an open socket is judged by its activity alone, however many retries it took
    ("open", {"retries": 50, "started_at_ms": NOW}, {}, H, None, "open, last activity 0s ago"),
    # the connect grace from the controller's start
    (
        "backoff",
        {"started_at_ms": NOW - CONNECT},
        {},
        H,
        None,
        "backoff, started 120s ago, within the 120s connect grace",
    ),
    ("idle", {"started_at_ms": NOW - CONNECT - 1}, {}, R, "disconnected", "idle with no socket"),
    # connecting: stuck once the current connect took longer than the grace
    ("connecting", {"connecting_since_ms": NOW - CONNECT}, {}, H, None, "connecting for 120s"),
    (
        "connecting",
        {"connecting_since_ms": NOW - CONNECT - 1},
        {},
        R,
        "stuck",
        "connecting for 120.00s, over the 120s connect grace",
    ),
    ("connecting", {}, {}, R, "stuck", "connecting for 1000s, over the 120s connect grace"),
    # gave up by count: only when the snapshot does not say how many retries it allows
    ("backoff", {"retries": GAVE_UP}, {}, R, "gave-up", "10 reconnect attempts (gives up at 10)"),
    ("backoff", {"retries": GAVE_UP - 1}, {}, R, "disconnected", "backoff with no socket"),
    (
        "backoff",
        {"retries": GAVE_UP, "max_attempts": 12},
        {},
        R,
        "disconnected",
        "backoff with no socket",
    ),
    (
        "backoff",
        {"retries": 12, "max_attempts": 12, "retry_at_ms": NOW + 30_000},
        {},
        HOLD,
        "disconnected",
        "retry due in 30s, within the 30s retry grace",
    ),
    (
        "connecting",
        {"retries": 11, "max_attempts": 12, "connecting_since_ms": NOW - 1_000},
        {},
        H,
        None,
        "connecting for 1s",
    ),
    (
        "connecting",
        {"retries": 11, "connecting_since_ms": NOW - 1_000},
        {},
        R,
        "gave-up",
        "11 reconnect attempts (gives up at 10)",
    ),
    # the retry grace of a backoff: due or overdue within it
    (
        "backoff",
        {"retry_at_ms": NOW + GRACE},
        {},
        HOLD,
        "disconnected",
        "retry due in 30s, within the 30s retry grace",
    ),
    ("backoff", {"retry_at_ms": NOW + GRACE + 1}, {}, R, "disconnected", "backoff with no socket"),
    (
        "backoff",
        {"retry_at_ms": NOW},
        {},
        HOLD,
        "disconnected",
        "retry due in 0s, within the 30s retry grace",
    ),
    (
        "backoff",
        {"retry_at_ms": NOW - GRACE},
        {},
        HOLD,
        "disconnected",
        "retry overdue by 30s, within the 30s retry grace",
    ),
    ("backoff", {"retry_at_ms": NOW - GRACE - 1}, {}, R, "disconnected", "backoff with no socket"),
    (
        "backoff",
        {"retry_at_ms": NOW + 1},
        {"retry_grace_ms": None},
        R,
        "disconnected",
        "backoff with no socket",
    ),
    (
        "backoff",
        {"retry_at_ms": NOW + 1},
        {"retry_grace_ms": 0},
        R,
        "disconnected",
        "backoff with no socket",
    ),
    (
        "backoff",
        {"retry_at_ms": NOW},
        {"retry_grace_ms": 0},
        HOLD,
        "disconnected",
        "retry due in 0s, within the 0s retry grace",
    ),
    # the retry grace of a controller closing its own (watchdog) socket
    (
        "closing",
        {"closing_since_ms": NOW - 50},
        {},
        HOLD,
        "disconnected",
        "closing its own silent socket for 0.05s, within the 30s retry grace",
    ),
    (
        "closing",
        {"closing_since_ms": NOW - GRACE},
        {},
        HOLD,
        "disconnected",
        "closing its own silent socket for 30s, within the 30s retry grace",
    ),
    (
        "closing",
        {"closing_since_ms": NOW - GRACE - 1},
        {},
        R,
        "disconnected",
        "closing with no socket",
    ),
    (
        "closing",
        {"closing_since_ms": NOW - 50},
        {"retry_grace_ms": None},
        R,
        "disconnected",
        "closing with no socket",
    ),
    ("closing", {}, {}, R, "disconnected", "closing with no socket"),
    # only the controller's own retry or close is graced
    ("closing", {"retry_at_ms": NOW + 1_000}, {}, R, "disconnected", "closing with no socket"),
    ("backoff", {"closing_since_ms": NOW - 50}, {}, R, "disconnected", "backoff with no socket"),
    (
        "idle",
        {"retry_at_ms": NOW, "closing_since_ms": NOW},
        {},
        R,
        "disconnected",
        "idle with no socket",
    ),
    (
        "backoff",
        {"retry_at_ms": NOW, "retries": GAVE_UP},
        {},
        R,
        "gave-up",
        "10 reconnect attempts (gives up at 10)",
    ),
]


@pytest.mark.parametrize(
    ("state", "fields", "config", "action", "reason", "detail"),
    DECISIONS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(DECISIONS)],
)
def test_the_hand_written_decisions(
    state: str,
    fields: dict[str, Any],
    config: dict[str, Any],
    action: HealthAction,
    reason: str | None,
    detail: str,
) -> None:
    d = decide(snap(state, **fields), **config)
    assert d == HealthDecision(
        action, "acct", 1, None if reason is None else HealthReason(reason), detail
    )


def test_the_hand_written_decisions_cover_every_state_and_reason() -> None:
    assert {row[0] for row in DECISIONS} == set(State)
    assert {row[4] for row in DECISIONS} - {None} == {r.value for r in HealthReason}
    assert {row[3] for row in DECISIONS} == set(HealthAction)


@pytest.mark.parametrize("state", sorted(CONTROLLER_STATES))
def test_an_account_that_is_not_expected_is_left_alone(state: str) -> None:
    d = decide(snap(state, expected=False, retries=50, last_event_ms=0))
    assert d.action is HealthAction.HEALTHY


@pytest.mark.parametrize("state", ["backoff", "connecting", "closing", "idle"])
def test_gave_up_by_count_only_without_a_known_budget(state: str) -> None:
    unknown = decide(snap(state, retries=GAVE_UP))
    assert (unknown.action, unknown.reason) == (R, HealthReason.GAVE_UP)
    for budget in (0, 12, 1_000):
        known = decide(snap(state, retries=GAVE_UP + 5, max_attempts=budget))
        assert known.reason is not HealthReason.GAVE_UP


def test_the_watchdog_close_is_held_50ms_later_and_restarted_one_ms_past_the_grace() -> None:
    closed_at = NOW - 50
    closing = snap("closing", closing_since_ms=closed_at, max_attempts=12)
    assert decide(closing).action is HOLD
    assert decide(closing, now=closed_at + GRACE).action is HOLD
    late = decide(closing, now=closed_at + GRACE + 1)
    assert (late.action, late.reason) == (R, HealthReason.DISCONNECTED)


# --- start-up grace ----------------------------------------------------------------------


def test_no_restart_during_the_monitor_start_up_grace() -> None:
    m = HealthMonitor(DEFAULT, started_at_ms=NOW - DEFAULT.startup_grace_ms + 500)
    d = m.evaluate(snap("idle"), NOW)
    assert (d.action, d.reason) == (HealthAction.HOLD, HealthReason.DISCONNECTED)
    assert d.detail == "monitor started 59.50s ago, within the 60s start-up grace"
    edge = HealthMonitor(DEFAULT, started_at_ms=NOW - DEFAULT.startup_grace_ms + 1)
    assert edge.evaluate(snap("idle"), NOW).action is HealthAction.HOLD


def test_restart_allowed_when_the_start_up_grace_has_elapsed() -> None:
    m = HealthMonitor(DEFAULT, started_at_ms=NOW - DEFAULT.startup_grace_ms)
    assert m.evaluate(snap("idle"), NOW).action is HealthAction.RESTART


# --- cooldown ----------------------------------------------------------------------------


def test_cooldown_holds_a_second_restart_of_the_same_account() -> None:
    m = monitor()
    m.record_restart("acct", NOW)
    held = m.evaluate(snap("idle"), NOW + DEFAULT.cooldown_ms - 1)
    assert (held.action, held.reason) == (HealthAction.HOLD, HealthReason.DISCONNECTED)
    assert held.detail == "last restart 600.00s ago, within the 600s cooldown"
    assert m.evaluate(snap("idle"), NOW + DEFAULT.cooldown_ms).action is HealthAction.RESTART


def test_cooldown_is_per_account() -> None:
    m = monitor()
    m.record_restart("other", NOW)
    assert m.evaluate(snap("idle"), NOW).action is HealthAction.RESTART


def test_a_failing_restart_is_not_retried_every_cycle() -> None:
    """openclaw restarts a failing controller on every 5-minute check; heirline waits."""
    m = monitor()
    interval = DEFAULT.check_interval_ms
    restarts = []
    for cycle in range(6):
        now = NOW + cycle * interval
        # the restart failed: the new generation is still disconnected at every check
        d = m.evaluate(snap("stopped", generation=cycle + 1), now)
        if d.action is HealthAction.RESTART:
            m.record_restart("acct", now)
            restarts.append(cycle)
        else:
            assert "cooldown" in d.detail
    assert restarts == [0, 2, 4]  # 10 min cooldown = every other 5 min cycle


# --- intensity over a rolling window -----------------------------------------------------


def test_intensity_limit_over_a_rolling_window() -> None:
    m = monitor(cooldown_ms=0, max_restarts=3, window_ms=1_000)
    for t in (NOW, NOW + 100, NOW + 200):
        assert m.evaluate(snap("idle"), t).action is HealthAction.RESTART
        m.record_restart("acct", t)
    held = m.evaluate(snap("idle"), NOW + 300)
    assert (held.action, held.reason) == (HealthAction.HOLD, HealthReason.DISCONNECTED)
    assert held.detail == "3 restarts in the last 1s, at the limit of 3"
    # one ms before the first restart leaves the window: still held
    assert m.restarts_in_window("acct", NOW + 999) == 3
    assert m.evaluate(snap("idle"), NOW + 999).action is HealthAction.HOLD
    # exactly window_ms later the first restart has left the (half-open) window
    assert m.restarts_in_window("acct", NOW + 1_000) == 2
    assert m.evaluate(snap("idle"), NOW + 1_000).action is HealthAction.RESTART


def test_intensity_history_is_pruned() -> None:
    m = monitor(cooldown_ms=0, max_restarts=2, window_ms=1_000)
    m.record_restart("acct", NOW)
    m.record_restart("acct", NOW + 5_000)  # prunes the first
    assert m.restarts_in_window("acct", NOW + 5_000) == 1
    assert m.restarts_in_window("never", NOW) == 0


def test_forget_drops_an_accounts_history_and_nothing_else() -> None:
    m = monitor(max_restarts=1)
    m.record_restart("acct", NOW)
    m.record_restart("other", NOW)
    assert m.evaluate(snap("idle"), NOW + 1).detail.startswith("last restart")
    m.forget("acct")
    # No cooldown, no intensity count, no "time went backwards" for the forgotten account ...
    assert m.restarts_in_window("acct", NOW) == 0
    assert m.evaluate(snap("idle"), NOW + 1).action is HealthAction.RESTART
    m.record_restart("acct", NOW - 5)
    # ... and the other account keeps all of its history.
    assert m.restarts_in_window("other", NOW) == 1
    assert m.evaluate(snap("idle", account="other"), NOW + 1).action is HealthAction.HOLD
    with pytest.raises(HealthInputError, match="before the last one"):
        m.record_restart("other", NOW - 1)
    m.forget("never")  # an account the monitor never saw: no error, nothing changes
    assert m.restarts_in_window("other", NOW) == 1


def test_max_restarts_zero_reports_but_never_restarts() -> None:
    d = decide(snap("idle"), max_restarts=0)
    assert (d.action, d.reason) == (HealthAction.HOLD, HealthReason.DISCONNECTED)


def test_restart_recorded_before_the_previous_one_is_rejected() -> None:
    m = monitor()
    m.record_restart("acct", NOW)
    with pytest.raises(HealthInputError, match="before the last one"):
        m.record_restart("acct", NOW - 1)


ACTIONS = st.lists(st.integers(0, 400_000), min_size=1, max_size=60)


@given(gaps=ACTIONS, cooldown=st.integers(0, 2_000_000), limit=st.integers(0, 5))
def test_an_owner_that_obeys_never_exceeds_cooldown_or_intensity(
    gaps: list[int], cooldown: int, limit: int
) -> None:
    cfg = dataclasses.replace(DEFAULT, cooldown_ms=cooldown, max_restarts=limit)
    m = HealthMonitor(cfg, BOOT)
    now = NOW
    done: list[int] = []
    for gap in gaps:
        now += gap
        if m.evaluate(snap("stopped"), now).action is HealthAction.RESTART:
            m.record_restart("acct", now)
            done.append(now)
    assert all(b - a >= cooldown for a, b in itertools.pairwise(done))
    for t in done:
        assert sum(1 for u in done if t - cfg.window_ms < u <= t) <= limit


# --- retry grace and the 114 ms incident -------------------------------------------------

CLOSED_408 = 12 * 3_600_000 + 2 * 60_000 + 27_820  # 12:02:27.820, "Retry 1/12 in 2.14s"
INCIDENT = snap(
    "backoff",
    started_at_ms=CLOSED_408 - 60 * 60_000,
    last_event_ms=CLOSED_408,
    opened_at_ms=CLOSED_408 - 59 * 60_000,
    retry_at_ms=CLOSED_408 + 2_140,
    retries=1,
    max_attempts=12,
)


def test_114ms_incident_reproduced_with_the_retry_grace_off() -> None:
    d = HealthMonitor(dataclasses.replace(DEFAULT, retry_grace_ms=None), BOOT).evaluate(
        INCIDENT, CLOSED_408 + 114
    )
    assert d == HealthDecision(
        HealthAction.RESTART, "acct", 1, HealthReason.DISCONNECTED, "backoff with no socket"
    )


def test_114ms_incident_held_by_the_default_retry_grace() -> None:
    d = HealthMonitor(DEFAULT, BOOT).evaluate(INCIDENT, CLOSED_408 + 114)
    assert d == HealthDecision(
        HealthAction.HOLD,
        "acct",
        1,
        HealthReason.DISCONNECTED,
        "retry due in 2.03s, within the 30s retry grace",
    )


def test_retry_grace_does_not_bypass_the_cooldown() -> None:
    m = monitor()
    m.record_restart("acct", NOW - 1)
    d = m.evaluate(snap("backoff", retry_at_ms=NOW + 60_000), NOW)
    assert "cooldown" in d.detail


# --- check and purity --------------------------------------------------------------------


def test_check_evaluates_every_snapshot_in_order_and_records_nothing() -> None:
    m = monitor()
    snaps = [snap("open"), snap("idle", account="b"), snap("replaced", account="c")]
    first = m.check(snaps, NOW)
    assert [d.action for d in first] == [
        HealthAction.HEALTHY,
        HealthAction.RESTART,
        HealthAction.HOLD,
    ]
    assert [d.account for d in first] == ["acct", "b", "c"]
    assert m.check(snaps, NOW) == first
    assert m.restarts_in_window("b", NOW) == 0
    assert m.config == DEFAULT


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("check_interval_ms", 0),
        ("startup_grace_ms", -1),
        ("connect_grace_ms", -5),
        ("stale_after_ms", 0),
        ("cooldown_ms", -1),
        ("max_restarts", -1),
        ("window_ms", 0),
        ("gave_up_attempts", 0),
        ("retry_grace_ms", -1),
    ],
)
def test_config_out_of_range_names_field_and_value(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"HealthConfig\.{field} must be >= \d+, got {value}"):
        HealthConfig(**{field: value})


def test_config_rejects_a_bool_posing_as_an_int() -> None:
    with pytest.raises(ConfigError, match=r"HealthConfig\.max_restarts must be an int, got True"):
        HealthConfig(max_restarts=True)


@pytest.mark.parametrize("value", [1.5, "10", None])
def test_config_type_check_holds_without_beartype(value: object) -> None:
    """The check itself, not only beartype in tests, rejects a value of the wrong type."""
    cfg = HealthConfig()
    object.__setattr__(cfg, "max_restarts", value)
    with pytest.raises(ConfigError, match=r"HealthConfig\.max_restarts must be an int, got "):
        cfg.__post_init__()


def test_config_edges_are_accepted() -> None:
    cfg = HealthConfig(startup_grace_ms=0, cooldown_ms=0, max_restarts=0, retry_grace_ms=None)
    assert cfg.retry_grace_ms is None
    assert HealthConfig(retry_grace_ms=0).retry_grace_ms == 0


@pytest.mark.parametrize("value", ["dancing", "OPEN", 5, None, ["open"]])
def test_snapshot_with_an_unknown_state_is_rejected(value: object) -> None:
    """The check itself, not only beartype in tests, rejects a state the machine does not have."""
    s = snap("open")
    object.__setattr__(s, "state", value)
    with pytest.raises(HealthInputError) as caught:
        s.__post_init__()
    assert str(caught.value) == f"snapshot of 'acct': unknown controller state {value!r}"


@pytest.mark.parametrize("state", list(State))
def test_a_snapshot_given_a_state_as_plain_text_is_judged_as_that_state(state: State) -> None:
    """Without beartype a caller may pass ``"backoff"``: it must get the retry grace of a
    backoff (not a restart, the 114 ms incident again) and never an internal error."""
    typed = snap(state, retry_at_ms=NOW + 1_000, closing_since_ms=NOW - 10)
    text = snap(state, retry_at_ms=NOW + 1_000, closing_since_ms=NOW - 10)
    object.__setattr__(text, "state", state.value)  # what an untyped caller builds
    text.__post_init__()
    assert text.state is state
    assert decide(text) == decide(typed)


def test_snapshot_with_negative_retries_is_rejected() -> None:
    with pytest.raises(HealthInputError, match="retries -1 < 0"):
        ControllerSnapshot("acct", 1, State.BACKOFF, started_at_ms=0, last_event_ms=0, retries=-1)


# --- the retry grace through the engine: its own watchdog close is not torn down -----------


def _health_logs(effects: list[Effect]) -> list[str]:
    return [e.code for e in effects if isinstance(e, Log) and e.code.startswith("health_")]


def test_a_health_check_50ms_after_a_watchdog_close_holds_and_one_past_the_grace_restarts() -> None:
    engine = Engine(EngineConfig(health_timer=False), random=lambda: 0.5)
    engine.handle(Start(account="a"), 0)
    pn = "4915123456789@s.whatsapp.net"
    engine.handle(SocketOpened(account="a", generation=1, attempt=1, pn=pn), 10)
    watchdog_ms = LifecycleConfig().watchdog_ms
    assert watchdog_ms is not None
    closed_at = 10 + watchdog_ms  # opened at 10, silent ever since
    effects = engine.handle(TimerFired(timer=WatchdogTimer("a", 1)), closed_at)
    assert any(isinstance(e, CloseSocket) and e.status == 499 for e in effects)
    assert engine.controller_state("a", 1) is State.CLOSING
    # The transport takes its time to report the close: the controller is closing.
    assert _health_logs(engine.handle(HealthCheck(), closed_at + 50)) == ["health_hold"]
    assert _health_logs(engine.handle(HealthCheck(), closed_at + GRACE)) == ["health_hold"]
    assert engine.controller_state("a", 1) is State.CLOSING
    restarted = engine.handle(HealthCheck(), closed_at + GRACE + 1)
    assert _health_logs(restarted) == ["health_restart"]
    assert engine.current("a") == 2


# --- a reference model of the rules: the policy agrees with it on random snapshots ---------


def reference(s: ControllerSnapshot, now: int, cfg: HealthConfig) -> tuple[str, str | None]:
    """The rules of docs/health.md, written again from the text (no history, monitor old)."""
    if not s.expected:
        return "healthy", None
    if s.state in ("logged_out", "replaced", "forbidden"):
        return "hold", {"logged_out": "logged-out"}.get(s.state, s.state)
    if s.state == "exhausted":
        return "restart", "gave-up"
    if s.state == "stopped":
        return "restart", "stopped"
    if s.state == "open":
        return (
            ("restart", "stale-socket")
            if now > s.last_event_ms + cfg.stale_after_ms
            else (
                "healthy",
                None,
            )
        )
    if now - s.started_at_ms <= cfg.connect_grace_ms:
        return "healthy", None
    if s.max_attempts is None and s.retries >= cfg.gave_up_attempts:
        return "restart", "gave-up"
    if s.state == "connecting":
        since = s.started_at_ms if s.connecting_since_ms is None else s.connecting_since_ms
        return ("restart", "stuck") if now - since > cfg.connect_grace_ms else ("healthy", None)
    grace = -1 if cfg.retry_grace_ms is None else cfg.retry_grace_ms  # None: nothing is graced
    if s.state == "backoff" and s.retry_at_ms is not None and abs(s.retry_at_ms - now) <= grace:
        return "hold", "disconnected"
    closing = s.closing_since_ms
    if s.state == "closing" and closing is not None and 0 <= now - closing <= grace:
        return "hold", "disconnected"
    return "restart", "disconnected"


_MS = st.integers(NOW - 3_000_000, NOW + 100_000)


@given(
    state=st.sampled_from(list(State)),
    started=_MS,
    event=_MS,
    retry_at=st.none() | _MS,
    since=st.none() | _MS,
    closing_since=st.none() | _MS,
    retries=st.integers(0, 20),
    max_attempts=st.none() | st.integers(0, 20),
    expected=st.booleans(),
    grace=st.none() | st.integers(0, 100_000),
)
def test_the_policy_agrees_with_the_reference_model(
    state: State,
    started: int,
    event: int,
    retry_at: int | None,
    since: int | None,
    closing_since: int | None,
    retries: int,
    max_attempts: int | None,
    expected: bool,
    grace: int | None,
) -> None:
    cfg = dataclasses.replace(DEFAULT, retry_grace_ms=grace)
    s = ControllerSnapshot(
        "acct",
        1,
        state,
        started_at_ms=started,
        last_event_ms=event,
        retry_at_ms=retry_at,
        retries=retries,
        connecting_since_ms=since,
        closing_since_ms=closing_since,
        max_attempts=max_attempts,
        expected=expected,
    )
    d = HealthMonitor(cfg, BOOT).evaluate(s, NOW)
    assert (d.action.value, None if d.reason is None else d.reason.value) == reference(s, NOW, cfg)
    assert d.detail
