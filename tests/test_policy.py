"""The close status policy: each Baileys code, the watchdog, no status, unknown codes; the
``Status`` names against Baileys' ``DisconnectReason`` numbers, written out by hand."""

from __future__ import annotations

from enum import IntEnum

import pytest

from heirline.core.errors import ConfigError
from heirline.core.policy import (
    DEFAULT_STATUS_POLICY,
    CloseAction,
    CloseDecision,
    Status,
    StatusPolicy,
)

decide = DEFAULT_STATUS_POLICY.decide

#: Baileys' DisconnectReason (src/Types/index.ts), and heirline's watchdog close, by hand.
BAILEYS = {
    "LOGGED_OUT": 401,  # loggedOut
    "FORBIDDEN": 403,  # forbidden
    "CONNECTION_LOST": 408,  # connectionLost (timedOut is 408 too)
    "MULTIDEVICE_MISMATCH": 411,  # multideviceMismatch
    "CONNECTION_CLOSED": 428,  # connectionClosed
    "CONNECTION_REPLACED": 440,  # connectionReplaced
    "WATCHDOG": 499,  # not Baileys: heirline's (and openclaw's) watchdog close
    "BAD_SESSION": 500,  # badSession
    "UNAVAILABLE_SERVICE": 503,  # unavailableService
    "RESTART_REQUIRED": 515,  # restartRequired
}

#: The default decision for each code, by hand: (action, reason).
DEFAULTS = {
    401: (CloseAction.LOGGED_OUT, "logged out"),
    403: (CloseAction.FORBIDDEN, "forbidden"),
    408: (CloseAction.RETRY, "connection lost"),
    411: (CloseAction.LOGGED_OUT, "multi-device mismatch: relink required"),
    428: (CloseAction.RETRY, "connection closed"),
    440: (CloseAction.REPLACED, "connection replaced by another client"),
    499: (CloseAction.RETRY, "closed by the watchdog"),
    500: (CloseAction.RETRY, "bad session or stream error"),
    503: (CloseAction.RETRY, "service unavailable"),
    515: (CloseAction.RECONNECT, "restart required"),
}


def test_status_names_and_numbers_are_baileys_disconnect_reasons() -> None:
    assert {s.name: s.value for s in Status} == BAILEYS
    assert [s.value for s in Status] == sorted(BAILEYS.values())  # declared in order
    assert issubclass(Status, IntEnum)


@pytest.mark.parametrize(("name", "number"), BAILEYS.items())
def test_a_status_member_is_its_number(name: str, number: int) -> None:
    member = Status[name]
    assert member == number
    assert Status(number) is member
    assert hash(member) == hash(number)
    assert int(member) == number
    assert f"{member:d}" == str(number)


@pytest.mark.parametrize(("number", "expected"), DEFAULTS.items())
def test_default_decisions_by_plain_int_and_by_status_member(
    number: int, expected: tuple[CloseAction, str]
) -> None:
    decision = CloseDecision(*expected)
    assert decide(number) == decision
    assert decide(Status(number)) == decision
    assert decide(Status(number)) is decide(number)  # one table, whichever key is used


def test_the_default_table_is_exactly_the_named_statuses() -> None:
    assert set(DEFAULT_STATUS_POLICY.by_status) == set(DEFAULTS) == {int(s) for s in Status}
    assert all(isinstance(k, Status) for k in DEFAULT_STATUS_POLICY.by_status)


def test_overrides_keyed_by_plain_ints_replace_the_named_defaults() -> None:
    stop = CloseDecision(CloseAction.LOGGED_OUT, "bad session: rescan")
    custom = DEFAULT_STATUS_POLICY.with_overrides({500: stop})
    assert custom.decide(Status.BAD_SESSION) is stop
    assert custom.decide(500) is stop
    assert len(custom.by_status) == len(DEFAULTS)  # replaced, not added beside it
    by_member = DEFAULT_STATUS_POLICY.with_overrides({Status.BAD_SESSION: stop})
    assert by_member.decide(500) is stop


def test_440_replaced_is_terminal_never_reconnects() -> None:
    decision = decide(440)
    assert decision.action is CloseAction.REPLACED
    assert decision.action not in (CloseAction.RETRY, CloseAction.RECONNECT)


def test_no_status_retries() -> None:
    assert decide(None) == CloseDecision(CloseAction.RETRY, "closed without a status")


@pytest.mark.parametrize("status", [0, 200, 402, 406, 501, 999, -1])
def test_unknown_status_retries(status: int) -> None:
    assert decide(status) == CloseDecision(CloseAction.RETRY, "unknown status")


def test_overrides_replace_single_codes_and_leave_the_original_alone() -> None:
    stop_500 = CloseDecision(CloseAction.LOGGED_OUT, "bad session: rescan")
    custom = DEFAULT_STATUS_POLICY.with_overrides({500: stop_500, 777: stop_500})
    assert custom.decide(500) is stop_500
    assert custom.decide(777) is stop_500
    assert custom.decide(408) == decide(408)
    assert custom.decide(None) == decide(None)
    assert custom.decide(12345) == decide(12345)
    assert decide(500).action is CloseAction.RETRY


def test_policy_copies_its_table() -> None:
    table = {408: CloseDecision(CloseAction.RETRY, "lost")}
    fallback = CloseDecision(CloseAction.RETRY, "x")
    policy = StatusPolicy(by_status=table, no_status=fallback, unknown=fallback)
    table[408] = CloseDecision(CloseAction.FORBIDDEN, "changed")
    assert policy.decide(408).reason == "lost"
    with pytest.raises(TypeError):
        policy.by_status[408] = fallback  # type: ignore[index]


def test_policy_rejects_a_non_int_status_key() -> None:
    fallback = CloseDecision(CloseAction.RETRY, "x")
    with pytest.raises(ConfigError, match=r"key True is not an int status"):
        StatusPolicy(by_status={True: fallback}, no_status=fallback, unknown=fallback)
