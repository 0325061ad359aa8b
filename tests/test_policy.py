"""The close status policy: each Baileys code, the watchdog, no status, unknown codes."""

from __future__ import annotations

import pytest

from heirline.core.errors import ConfigError
from heirline.core.policy import (
    DEFAULT_STATUS_POLICY,
    CloseAction,
    CloseDecision,
    StatusPolicy,
)

decide = DEFAULT_STATUS_POLICY.decide


def test_401_logged_out_is_terminal() -> None:
    assert decide(401) == CloseDecision(CloseAction.LOGGED_OUT, "logged out")


def test_403_forbidden_is_terminal() -> None:
    assert decide(403) == CloseDecision(CloseAction.FORBIDDEN, "forbidden")


def test_408_connection_lost_retries_with_backoff() -> None:
    assert decide(408) == CloseDecision(CloseAction.RETRY, "connection lost")


def test_411_multidevice_mismatch_needs_a_relink() -> None:
    assert decide(411) == CloseDecision(
        CloseAction.LOGGED_OUT, "multi-device mismatch: relink required"
    )


def test_428_connection_closed_retries_with_backoff() -> None:
    assert decide(428) == CloseDecision(CloseAction.RETRY, "connection closed")


def test_440_replaced_is_terminal_never_reconnects() -> None:
    decision = decide(440)
    assert decision.action is CloseAction.REPLACED
    assert decision.action not in (CloseAction.RETRY, CloseAction.RECONNECT)


def test_499_watchdog_retries_with_backoff() -> None:
    assert decide(499) == CloseDecision(CloseAction.RETRY, "closed by the watchdog")


def test_500_bad_session_retries_bounded() -> None:
    assert decide(500) == CloseDecision(CloseAction.RETRY, "bad session or stream error")


def test_503_unavailable_retries_with_backoff() -> None:
    assert decide(503) == CloseDecision(CloseAction.RETRY, "service unavailable")


def test_515_restart_required_reconnects_at_once() -> None:
    assert decide(515) == CloseDecision(CloseAction.RECONNECT, "restart required")


def test_no_status_retries() -> None:
    assert decide(None) == CloseDecision(CloseAction.RETRY, "closed without a status")


@pytest.mark.parametrize("status", [0, 200, 402, 406, 501, 999, -1])
def test_unknown_status_retries(status: int) -> None:
    assert decide(status) == CloseDecision(CloseAction.RETRY, "unknown status")


def test_default_table_covers_every_baileys_code_and_the_watchdog() -> None:
    assert set(DEFAULT_STATUS_POLICY.by_status) == {
        401,
        403,
        408,
        411,
        428,
        440,
        499,
        500,
        503,
        515,
    }


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
