"""Timer identities: small frozen values, equal and hashed by kind and fields, so a runtime can
key its pending timers by them and a restart of the same timer replaces it."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from heirline.core.timers import (
    HEALTH,
    TIMER_TYPES,
    DeadlineTimer,
    HealthTimer,
    RetryTimer,
    Timer,
    WatchdogTimer,
)

EXAMPLES: list[Timer] = [HEALTH, RetryTimer("a", 1), WatchdogTimer("a", 1), DeadlineTimer("a")]


def test_the_four_kinds_and_their_fields() -> None:
    assert set(typing.get_args(Timer)) == set(TIMER_TYPES)
    assert {t.kind: [f.name for f in dataclasses.fields(t)] for t in TIMER_TYPES} == {
        "health": [],
        "retry": ["account", "generation"],
        "watchdog": ["account", "attempt"],
        "deadline": ["reply_id"],
    }


@pytest.mark.parametrize("timer", EXAMPLES, ids=lambda t: t.kind)
def test_a_timer_is_frozen_and_slotted(timer: Timer) -> None:
    assert not hasattr(timer, "__dict__")
    for field in dataclasses.fields(timer):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(timer, field.name, field.type)


def test_timers_are_equal_by_kind_and_fields_and_key_a_dict() -> None:
    assert HealthTimer() == HEALTH
    assert RetryTimer("a", 1) == RetryTimer("a", 1)
    assert RetryTimer("a", 1) != RetryTimer("a", 2)
    assert RetryTimer("a", 1) != RetryTimer("b", 1)
    # Same field values, another kind: another timer (a watchdog never cancels a retry).
    retry: object = RetryTimer("a", 1)
    deadline: object = DeadlineTimer("health")
    assert retry != WatchdogTimer("a", 1)
    assert deadline != HEALTH
    pending: dict[Timer, int] = {}
    for deadline, timer in enumerate([*EXAMPLES, RetryTimer("a", 1), HealthTimer()]):
        pending[timer] = deadline  # starting a pending timer again replaces it
    assert pending == {
        HEALTH: 5,
        RetryTimer("a", 1): 4,
        WatchdogTimer("a", 1): 2,
        DeadlineTimer("a"): 3,
    }
