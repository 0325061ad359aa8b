"""Stop means stop: the owner's Stop of the newest generation takes the account off health watch.

Issue 10 found two mutants that survived the whole suite: a Stop of the newest
generation that leaves the account on health watch (the health policy then
restarts it as "stopped"), and a socket that opens after its generation was
stopped being rejected instead of closed (leaking a logged-in session).
"""

from __future__ import annotations

from engine_support import ACCOUNT, PN, Driver, Run, codes, of

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.engine import EngineConfig
from heirline.core.health import HealthConfig
from heirline.core.lifecycle import State

HOUR = 3_600_000


def test_a_stop_of_the_newest_generation_takes_the_account_off_health_watch() -> None:
    d = Driver()  # default health: a check every 5 min by the engine's own timer
    d.at(0, ev.Start(account=ACCOUNT))
    d.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    assert d.engine.watched() == (ACCOUNT,)
    stopped = d.at(10_000, ev.Stop(account=ACCOUNT, generation=1))
    assert fx.CloseSocket(account=ACCOUNT, generation=1, attempt=1, reason="owner") in stopped
    assert d.engine.watched() == ()
    d.run_until(6 * HOUR)
    # 72 health checks ran, and none of them brought the account back.
    assert len([1 for _, e, _ in d.fed if isinstance(e, ev.TimerFired)]) >= 72
    assert d.logs("health_restart") == []
    assert d.logs("health_hold") == []
    assert [o for _, o in d.emitted(fx.OpenSocket)] == [
        fx.OpenSocket(account=ACCOUNT, generation=1, attempt=1)
    ]
    assert d.engine.generations(ACCOUNT) == (1,)
    assert d.engine.controller_state(ACCOUNT, 1) is State.STOPPED


def test_a_start_after_the_stop_puts_the_account_back_on_watch() -> None:
    run = Run()
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(10, ev.Stop(account=ACCOUNT, generation=1))
    assert run.engine.watched() == ()
    run.at(20, ev.Start(account=ACCOUNT))
    assert run.engine.watched() == (ACCOUNT,)


def test_a_stop_of_the_newest_forgets_the_accounts_restart_history() -> None:
    config = EngineConfig(health=HealthConfig(startup_grace_ms=0), health_timer=False)
    run = Run(config)
    run.at(0, ev.Start(account=ACCOUNT))  # never opens
    out = run.at(200_000, ev.HealthCheck())  # connecting for 200 s: stuck, restarted
    assert codes(out)[0] == "health_restart"
    assert run.engine.current(ACCOUNT) == 2
    run.at(210_000, ev.Stop(account=ACCOUNT, generation=2))
    run.at(220_000, ev.Start(account=ACCOUNT))  # generation 3, never opens either
    # 130 s later it is stuck again. The restart at 200 000 would hold it in the 10 min
    # cooldown -- but the Stop forgot that history.
    out = run.at(350_000, ev.HealthCheck())
    assert codes(out)[0] == "health_restart"
    assert run.engine.current(ACCOUNT) == 4


def test_a_stop_of_an_older_generation_does_not_unwatch() -> None:
    config = EngineConfig(health=HealthConfig(startup_grace_ms=0), health_timer=False)
    run = Run(config)
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(1_000, ev.Start(account=ACCOUNT))  # 1 is superseded (stopped by the engine)
    late = run.at(2_000, ev.Stop(account=ACCOUNT, generation=1))
    assert codes(late) == ["stop_ignored"]
    assert run.engine.watched() == (ACCOUNT,)
    # Generation 2 never opens: the health policy still restarts it (stuck).
    out = run.at(300_000, ev.HealthCheck())
    assert [
        log.fields.get("reason") for log in of(fx.Log, out) if log.code == "health_restart"
    ] == ["stuck"]


def test_a_stop_of_an_older_running_generation_does_not_unwatch() -> None:
    # With an external registry, generation 1 keeps running until 2 is granted.
    run = Run(EngineConfig(external_registry=True))
    run.at(0, ev.Start(account=ACCOUNT))
    run.at(10, ev.RegistryAnswer(account=ACCOUNT, generation=1, granted=True))
    run.at(1_000, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    run.at(2_000, ev.Start(account=ACCOUNT))
    assert run.engine.controller_state(ACCOUNT, 1) is State.OPEN
    out = run.at(3_000, ev.Stop(account=ACCOUNT, generation=1))
    assert fx.CloseSocket(account=ACCOUNT, generation=1, attempt=1, reason="owner") in out
    assert run.engine.generations(ACCOUNT) == (2,)  # 1 is over and nothing names it
    assert run.engine.watched() == (ACCOUNT,)


def test_a_socket_that_opens_after_its_generation_was_stopped_is_closed_not_rejected() -> None:
    run = Run()
    run.at(0, ev.Start(account=ACCOUNT))  # socket 1 connecting
    stopped = run.at(100, ev.Stop(account=ACCOUNT, generation=1, reason="owner"))
    assert fx.CloseSocket(account=ACCOUNT, generation=1, attempt=1, reason="owner") in stopped
    # The connect raced the stop: the socket reports open anyway.
    out = run.at(200, ev.SocketOpened(account=ACCOUNT, generation=1, attempt=1, pn=PN))
    assert out == [
        fx.CloseSocket(
            account=ACCOUNT, generation=1, attempt=1, reason="stale socket: generation 1 is over"
        )
    ]
    assert run.engine.controller_state(ACCOUNT, 1) is State.STOPPED
    assert run.engine.controller_identity(ACCOUNT, 1) is None
