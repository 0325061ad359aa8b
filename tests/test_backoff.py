"""Backoff: bounds for every attempt, determinism, validation, exact retry count, reset rule."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core.backoff import BackoffConfig, retry_delay_ms
from heirline.core.controller import AttemptCounter, Controller
from heirline.core.effects import Log, OpenSocket, StartTimer
from heirline.core.errors import ConfigError
from heirline.core.lifecycle import LifecycleConfig, State
from heirline.core.policy import DEFAULT_STATUS_POLICY, CloseAction, Status
from heirline.core.timers import RetryTimer

DEFAULT = BackoffConfig()
U = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def test_defaults_match_the_design() -> None:
    assert (
        DEFAULT.initial_ms,
        DEFAULT.factor,
        DEFAULT.max_ms,
        DEFAULT.jitter,
        DEFAULT.max_attempts,
        DEFAULT.healthy_after_ms,
    ) == (2000, 1.8, 30000, 0.25, 12, 60000)


@pytest.mark.parametrize("attempt", range(1, 16))
def test_bounds_for_every_attempt(attempt: int) -> None:
    base = DEFAULT.initial_ms * DEFAULT.factor ** (attempt - 1)
    low = min(DEFAULT.max_ms, round(base))
    high = min(DEFAULT.max_ms, round(base * 1.25))
    assert retry_delay_ms(DEFAULT, attempt, 0.0) == low
    assert retry_delay_ms(DEFAULT, attempt, math.nextafter(1.0, 0.0)) == high
    for u in (0.1, 0.5, 0.9):
        assert low <= retry_delay_ms(DEFAULT, attempt, u) <= high


def test_the_schedule_grows_by_the_factor_until_the_cap() -> None:
    assert [retry_delay_ms(DEFAULT, k, 0.0) for k in range(1, 8)] == [
        2000,
        3600,
        6480,
        11664,
        20995,
        30000,
        30000,
    ]


@given(attempt=st.integers(min_value=1, max_value=10_000), u=U)
def test_delay_is_within_base_and_base_plus_jitter_and_never_above_the_cap(
    attempt: int, u: float
) -> None:
    delay = retry_delay_ms(DEFAULT, attempt, u)
    assert DEFAULT.initial_ms <= delay <= DEFAULT.max_ms
    try:
        base = DEFAULT.initial_ms * DEFAULT.factor ** (attempt - 1)
    except OverflowError:
        base = math.inf
    cap = DEFAULT.max_ms
    assert round(min(cap, base)) <= delay <= round(min(cap, base * 1.25))


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    config = BackoffConfig(factor=1000.0)
    assert retry_delay_ms(config, 10**6, 0.5) == config.max_ms


def test_jitter_zero_gives_the_bare_base() -> None:
    config = BackoffConfig(jitter=0.0)
    assert [retry_delay_ms(config, k, 0.99) for k in (1, 2, 3)] == [2000, 3600, 6480]


def test_the_seed_line_delay_is_2140_ms_for_u_0_28() -> None:
    # 2000 * (1 + 0.25 * u) = 2140  <=>  u = 0.28
    assert retry_delay_ms(DEFAULT, 1, 0.28) == 2140


def _schedule(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [retry_delay_ms(DEFAULT, k, rng.random()) for k in range(1, DEFAULT.max_attempts + 1)]


def test_same_seed_same_schedule_and_another_seed_another() -> None:
    assert _schedule(7) == _schedule(7)
    assert _schedule(7) != _schedule(8)


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_is_one_based(attempt: int) -> None:
    with pytest.raises(ConfigError, match=r"attempt is 1-based"):
        retry_delay_ms(DEFAULT, attempt, 0.5)


@pytest.mark.parametrize("u", [-0.1, 1.0, 1.5, math.nan])
def test_u_must_be_in_the_unit_interval(u: float) -> None:
    with pytest.raises(ConfigError, match=r"u must be in \[0, 1\)"):
        retry_delay_ms(DEFAULT, 1, u)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_ms": 0}, "BackoffConfig.initial_ms must be >= 1, got 0"),
        ({"initial_ms": True}, "BackoffConfig.initial_ms must be an int, got True"),
        ({"factor": 0.5}, r"BackoffConfig.factor must be in \[1.0, 1000.0\], got 0.5"),
        ({"factor": math.inf}, "BackoffConfig.factor must be a finite number, got inf"),
        ({"factor": math.nan}, "BackoffConfig.factor must be a finite number, got nan"),
        ({"max_ms": 0}, "BackoffConfig.max_ms must be >= 1, got 0"),
        ({"max_ms": 1000}, r"BackoffConfig.max_ms must be >= initial_ms \(2000\), got 1000"),
        ({"jitter": -0.1}, r"BackoffConfig.jitter must be in \[0.0, 1.0\], got -0.1"),
        ({"jitter": 1.5}, r"BackoffConfig.jitter must be in \[0.0, 1.0\], got 1.5"),
        ({"max_attempts": -1}, "BackoffConfig.max_attempts must be >= 0, got -1"),
        ({"healthy_after_ms": -5}, "BackoffConfig.healthy_after_ms must be >= 0, got -5"),
    ],
)
def test_bad_config_is_a_clear_error_naming_field_and_value(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        BackoffConfig(**kwargs)  # type: ignore[arg-type]


# -- retry count and reset rule, through the controller ------------------------------------


def _retries_until_ended(
    max_attempts: int, status: int | None = 408, open_for_ms: int | None = None
) -> tuple[int, State]:
    """Start, then close every connection until the controller ends: (retries, final state).

    ``open_for_ms``: each socket opens and stays open this long before it closes
    (``None``: it never opens).
    """
    config = LifecycleConfig(backoff=BackoffConfig(max_attempts=max_attempts))
    controller = Controller("acct", 1, config, AttemptCounter())
    controller.start(0)
    retries = 0
    now = 0
    for _ in range(max_attempts + 2):  # bounded: one more close than the budget, and a spare
        now += 10
        if open_for_ms is not None:
            controller.opened(now)
            now += open_for_ms
        effects = controller.closed(status, now, 0.5)
        if controller.is_terminal:
            assert not any(isinstance(e, StartTimer | OpenSocket) for e in effects)
            break
        retries += 1
        assert controller.retries == retries
        delay = retry_delay_ms(config.backoff, retries, 0.5)
        timers = [e for e in effects if isinstance(e, StartTimer)]
        assert timers == [StartTimer(timer=RetryTimer("acct", 1), deadline_ms=now + delay)]
        now += delay
        controller.retry_due(now)
    return retries, controller.state


def test_exactly_twelve_retries_by_default_not_eleven() -> None:
    # openclaw's `attempts >= max` check gives up after 11 of 12; this would catch it.
    assert _retries_until_ended(12) == (12, State.EXHAUSTED)


def test_exactly_twelve_retries_when_every_socket_opens_and_flaps() -> None:
    # Open for 59 s (less than healthy_after_ms) each time: the count is never reset.
    assert _retries_until_ended(12, 408, open_for_ms=59_000) == (12, State.EXHAUSTED)
    assert _retries_until_ended(12, Status.WATCHDOG, open_for_ms=1_000) == (12, State.EXHAUSTED)


#: Statuses a close of a socket that never opened retries on (515 included: it never opened).
RETRIED = [None, 408, 428, 499, 500, 503, 515, 777]
TERMINAL = {401: State.LOGGED_OUT, 403: State.FORBIDDEN, 411: State.LOGGED_OUT, 440: State.REPLACED}


@given(st.integers(min_value=0, max_value=20), st.sampled_from([*RETRIED, *Status]))
def test_exactly_n_retries_for_max_attempts_n(n: int, status: int | None) -> None:
    if status in TERMINAL:
        assert _retries_until_ended(n, status) == (0, TERMINAL[status])
    else:
        assert _retries_until_ended(n, status) == (n, State.EXHAUSTED)


def test_every_named_status_is_either_retried_or_terminal() -> None:
    assert {int(s) for s in Status} == (set(RETRIED) - {None, 777}) | set(TERMINAL)
    for status in RETRIED:
        action = DEFAULT_STATUS_POLICY.decide(status).action
        assert action in (CloseAction.RETRY, CloseAction.RECONNECT)


def test_the_last_retry_is_announced_as_n_of_n_and_exhaustion_says_so() -> None:
    controller = Controller(
        "a", 1, LifecycleConfig(backoff=BackoffConfig(max_attempts=2)), AttemptCounter()
    )
    controller.start(0)
    messages: list[str] = []
    for now in (100, 20_000, 40_000):
        effects = controller.closed(408, now, 0.0)
        messages += [e.message for e in effects if isinstance(e, Log)]
        if controller.state == "backoff":
            controller.retry_due(now + 10_000)
    assert messages == [
        "Web connection closed (status 408). Retry 1/2 in 2.00s…",
        "Web connection closed (status 408). Retry 2/2 in 3.60s…",
        "Web connection closed (status 408). Giving up after 2/2 retries.",
    ]


def _controller_with_retries(spent: int, healthy_after_ms: int = 60_000) -> Controller:
    config = LifecycleConfig(backoff=BackoffConfig(healthy_after_ms=healthy_after_ms))
    controller = Controller("a", 1, config, AttemptCounter())
    controller.start(0)
    now = 0
    for _ in range(spent):
        controller.closed(408, now, 0.0)
        now = controller.retry_at_ms or 0
        controller.retry_due(now)
    assert controller.retries == spent
    return controller


def test_open_longer_than_healthy_period_resets_the_attempts() -> None:
    controller = _controller_with_retries(5)
    controller.opened(1_000_000)
    effects = controller.closed(408, 1_000_000 + 60_001, 0.0)
    assert controller.retries == 1
    timers = [e for e in effects if isinstance(e, StartTimer)]
    assert timers == [StartTimer(timer=RetryTimer("a", 1), deadline_ms=1_060_001 + 2000)]


def test_open_exactly_the_healthy_period_does_not_reset() -> None:
    controller = _controller_with_retries(5)
    controller.opened(1_000_000)
    controller.closed(408, 1_000_000 + 60_000, 0.0)
    assert controller.retries == 6


def test_open_shorter_than_healthy_period_keeps_counting() -> None:
    controller = _controller_with_retries(5)
    controller.opened(1_000_000)
    controller.closed(408, 1_000_000 + 59_000, 0.0)
    assert controller.retries == 6


def test_a_healthy_connection_resets_even_a_spent_budget() -> None:
    controller = _controller_with_retries(12)
    controller.opened(1_000_000)
    controller.closed(408, 1_000_000 + 120_000, 0.0)
    assert controller.state == "backoff"
    assert controller.retries == 1


def test_an_unhealthy_connection_with_a_spent_budget_is_exhausted() -> None:
    controller = _controller_with_retries(12)
    controller.opened(1_000_000)
    controller.closed(408, 1_000_000 + 1_000, 0.0)
    assert controller.state == "exhausted"
    assert controller.retries == 12


def test_reconnect_515_does_not_spend_an_attempt() -> None:
    controller = _controller_with_retries(3)
    controller.opened(1_000_000)
    controller.closed(515, 1_000_100, 0.0)
    assert (controller.state, controller.retries) == ("connecting", 3)
