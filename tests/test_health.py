"""The health policy: each reason, graces, cooldown, intensity and the 114 ms incident."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core.errors import ConfigError
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

DEFAULT = HealthConfig()
BOOT = 0  # the monitor starts here
NOW = 10_000_000  # long after every start-up grace
OLD = NOW - 1_000_000  # a controller generation started long before NOW


def snap(state: str, account: str = "acct", **kw: Any) -> ControllerSnapshot:
    """An old controller of ``account`` in ``state``, last seen just now."""
    base = ControllerSnapshot(account, 1, state, started_at_ms=OLD, last_event_ms=NOW)
    return dataclasses.replace(base, **kw)


def monitor(**kw: Any) -> HealthMonitor:
    return HealthMonitor(dataclasses.replace(DEFAULT, **kw), BOOT)


def decide(s: ControllerSnapshot, now: int = NOW, **kw: Any) -> HealthDecision:
    return monitor(**kw).evaluate(s, now)


# --- each reason -------------------------------------------------------------------------


def test_open_with_recent_traffic_is_healthy() -> None:
    d = decide(snap("open", last_event_ms=NOW - 5_000))
    assert d == HealthDecision(HealthAction.HEALTHY, "acct", 1, None, "open, last event 5s ago")


def test_open_but_silent_past_the_threshold_is_restarted_as_stale() -> None:
    d = decide(snap("open", last_event_ms=NOW - DEFAULT.stale_after_ms - 1))
    assert (d.action, d.reason) == (HealthAction.RESTART, HealthReason.STALE)
    assert "1800s limit" in d.detail


def test_open_silent_exactly_the_threshold_is_not_yet_stale() -> None:
    d = decide(snap("open", last_event_ms=NOW - DEFAULT.stale_after_ms))
    assert d.action is HealthAction.HEALTHY


def test_connecting_longer_than_connect_grace_is_stuck() -> None:
    d = decide(snap("connecting", connecting_since_ms=NOW - DEFAULT.connect_grace_ms - 1))
    assert (d.action, d.reason) == (HealthAction.RESTART, HealthReason.STUCK)


def test_connecting_within_connect_grace_is_healthy() -> None:
    d = decide(snap("connecting", connecting_since_ms=NOW - DEFAULT.connect_grace_ms))
    assert d.action is HealthAction.HEALTHY
    assert d.reason is None


def test_connecting_since_defaults_to_the_controller_start() -> None:
    d = decide(snap("connecting"))
    assert (d.action, d.reason) == (HealthAction.RESTART, HealthReason.STUCK)
    assert "connecting for 1000s" in d.detail


@pytest.mark.parametrize("state", ["backoff", "closing", "idle"])
def test_no_socket_is_disconnected(state: str) -> None:
    d = decide(snap(state))
    assert (d.action, d.reason) == (HealthAction.RESTART, HealthReason.DISCONNECTED)
    assert d.detail == f"{state} with no socket"


@pytest.mark.parametrize("state", ["backoff", "idle", "connecting"])
def test_a_freshly_started_controller_gets_the_connect_grace(state: str) -> None:
    d = decide(snap(state, started_at_ms=NOW - DEFAULT.connect_grace_ms))
    assert d.action is HealthAction.HEALTHY
    assert "connect grace" in d.detail


@pytest.mark.parametrize("state", ["backoff", "connecting", "closing"])
def test_too_many_reconnect_attempts_is_gave_up(state: str) -> None:
    d = decide(snap(state, attempt=DEFAULT.gave_up_attempts))
    assert (d.action, d.reason) == (HealthAction.RESTART, HealthReason.GAVE_UP)
    below = decide(snap(state, attempt=DEFAULT.gave_up_attempts - 1))
    assert below.reason is not HealthReason.GAVE_UP


def test_exhausted_is_gave_up() -> None:
    d = decide(snap("exhausted"))
    assert (d.action, d.reason) == (HealthAction.RESTART, HealthReason.GAVE_UP)


def test_stopped_while_expected_is_restarted() -> None:
    d = decide(snap("stopped"))
    assert (d.action, d.reason) == (HealthAction.RESTART, HealthReason.STOPPED)


@pytest.mark.parametrize("state", sorted(CONTROLLER_STATES))
def test_an_account_that_is_not_expected_is_left_alone(state: str) -> None:
    d = decide(snap(state, expected=False, attempt=50, last_event_ms=0))
    assert d.action is HealthAction.HEALTHY


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("logged_out", HealthReason.LOGGED_OUT),
        ("replaced", HealthReason.REPLACED),
        ("forbidden", HealthReason.FORBIDDEN),
    ],
)
def test_states_a_restart_cannot_fix_are_held_never_restarted(
    state: str, reason: HealthReason
) -> None:
    d = decide(snap(state, attempt=50, last_event_ms=0))
    assert (d.action, d.reason) == (HealthAction.HOLD, reason)
    assert "a restart cannot fix this" in d.detail


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


def test_intensity_history_is_pruned_and_forgettable() -> None:
    m = monitor(cooldown_ms=0, max_restarts=2, window_ms=1_000)
    m.record_restart("acct", NOW)
    m.record_restart("acct", NOW + 5_000)  # prunes the first
    assert m.restarts_in_window("acct", NOW + 5_000) == 1
    m.forget("acct")
    assert m.restarts_in_window("acct", NOW + 5_000) == 0
    assert m.restarts_in_window("never", NOW) == 0
    m.forget("never")  # no error


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
    attempt=1,
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


@pytest.mark.parametrize(
    ("retry_in", "action"),
    [
        (30_000, HealthAction.HOLD),  # due exactly at the edge of the grace
        (30_001, HealthAction.RESTART),  # due too far away: the policy may step in
        (0, HealthAction.HOLD),
        (-30_000, HealthAction.HOLD),  # just overdue: its timer may be firing
        (-30_001, HealthAction.RESTART),  # long overdue: the retry is lost
    ],
)
def test_retry_grace_window(retry_in: int, action: HealthAction) -> None:
    d = decide(snap("backoff", retry_at_ms=NOW + retry_in))
    assert d.action is action
    assert d.reason is HealthReason.DISCONNECTED


def test_retry_grace_detail_for_an_overdue_retry() -> None:
    d = decide(snap("backoff", retry_at_ms=NOW - 1_500))
    assert d.detail == "retry overdue by 1.50s, within the 30s retry grace"


def test_retry_grace_off_never_holds() -> None:
    d = decide(snap("backoff", retry_at_ms=NOW + 1), retry_grace_ms=None)
    assert d.action is HealthAction.RESTART


@pytest.mark.parametrize(
    "s",
    [
        snap("closing", retry_at_ms=NOW + 1_000),  # only a controller in backoff is graced
        snap("backoff"),  # no retry scheduled
        snap("backoff", retry_at_ms=NOW + 1_000, attempt=DEFAULT.gave_up_attempts),  # gave up
    ],
)
def test_retry_grace_applies_only_to_a_scheduled_retry_in_backoff(
    s: ControllerSnapshot,
) -> None:
    assert decide(s).action is HealthAction.RESTART


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


def test_snapshot_with_an_unknown_state_is_rejected() -> None:
    with pytest.raises(HealthInputError, match="unknown controller state 'dancing'"):
        ControllerSnapshot("acct", 1, "dancing", started_at_ms=0, last_event_ms=0)


def test_snapshot_with_a_negative_attempt_is_rejected() -> None:
    with pytest.raises(HealthInputError, match="attempt -1"):
        ControllerSnapshot("acct", 1, "backoff", started_at_ms=0, last_event_ms=0, attempt=-1)
