"""The shared gateway boots accounts from their auth dirs: every PN<->LID pair reaches the
engine once, however often the account reconnects, retries or is restarted."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from heirline.adapters import gateway as gateway_mod
from heirline.adapters.authdir import AuthDir, read_auth_dir
from heirline.adapters.fake import FakeGateway
from heirline.core.engine import EngineConfig
from heirline.core.events import Event, HealthCheck, MappingLearned, Start
from heirline.core.health import HealthConfig

ACCOUNTS = 40
PAIRS = 25  # per account's auth dir; the first five are shared by every account
STORM = 12  # disconnects per account


class CountingGateway(FakeGateway):
    """A fake gateway that counts the MappingLearned events it feeds."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.learned: list[tuple[str, str]] = []

    def feed(self, event: Event) -> None:
        if isinstance(event, MappingLearned):
            self.learned.append((event.pn, event.lid))
        super().feed(event)


def _pairs(k: int) -> list[tuple[str, str]]:
    shared = [(f"49150000000{i:02d}", f"9000000000000{i:02d}") for i in range(5)]
    own = [(f"4916{k:03d}{i:05d}", f"8{k:03d}{i:011d}") for i in range(PAIRS - 5)]
    return shared + own


def _config() -> EngineConfig:
    health = HealthConfig(
        retry_grace_ms=None, startup_grace_ms=0, connect_grace_ms=0, cooldown_ms=0, max_restarts=100
    )
    return EngineConfig(health=health, health_timer=False)


def test_a_restart_storm_of_many_accounts_feeds_each_pair_once() -> None:
    accounts = [f"a{k}" for k in range(ACCOUNTS)]
    gw = CountingGateway(
        _config(),
        random=random.Random(5).random,
        auth_dir={a: _pairs(k) for k, a in enumerate(accounts)},
        boot_ms=10,
    )
    for k, account in enumerate(accounts):
        gw.channel.add_account(account, pn=f"4917{k:08d}@s.whatsapp.net")
        gw.feed(Start(account=account))
    gw.run_until(1_000)
    boots_before = sum(1 for e in gw.timeline if e.code == "note" and "auth dir" in e.message)
    for round_ in range(STORM):
        for account in accounts:  # 515: reconnect at once; 408: retry; every one boots again
            gw.channel.close_account(account, 515 if round_ % 2 else 408)
        gw.run_until(gw.now_ms() + 500)
        gw.feed(HealthCheck())  # retry grace off: an account in backoff is restarted
        gw.run_until(gw.now_ms() + 5_000)
    opened = sum(1 for e in gw.timeline if e.code == "socket_opened")
    assert opened >= ACCOUNTS * (STORM + 1)  # every account reconnected every round
    restarted = [a for a in accounts if (gw.engine.current(a) or 0) > 1]
    assert len(restarted) == ACCOUNTS  # and the health monitor restarted each (new generations)
    distinct = {pair for k in range(ACCOUNTS) for pair in _pairs(k)}
    assert len(gw.learned) == len(distinct) == 5 + ACCOUNTS * (PAIRS - 5)
    assert sorted(gw.learned) == sorted(distinct)
    notes = sum(1 for e in gw.timeline if e.code == "note" and "auth dir" in e.message)
    assert notes == boots_before == len(distinct)  # nothing noted again after the first boots
    for pn, lid in distinct:
        assert gw.engine.mapping.lid_for(pn) == lid


def test_a_pair_the_auth_dir_gains_later_is_fed_at_the_next_boot() -> None:
    gw = CountingGateway(_config(), random=random.Random(1).random, auth_dir={"a": []})
    gw.channel.add_account("a", pn="4915123456789@s.whatsapp.net")
    gw.feed(Start(account="a"))
    gw.run_until(100)
    assert gw.learned == []
    gw.auth_dir["a"] = [("4915123456789", "123456789012345")]  # Baileys wrote a mapping file
    gw.channel.close_account("a", 515)
    gw.run_until(200)
    gw.channel.close_account("a", 515)
    gw.run_until(300)
    assert gw.learned == [("4915123456789", "123456789012345")]


def _baileys_dir(root: Path) -> Path:
    root.mkdir()
    me = {"id": "4915123456789:12@s.whatsapp.net", "lid": "123456789012345:12@lid"}
    (root / "creds.json").write_text(json.dumps({"me": me}))
    (root / "lid-mapping-4917000000001.json").write_text(json.dumps("987654321098765"))
    (root / "lid-mapping-987654321098765_reverse.json").write_text(json.dumps("4917000000001"))
    return root


def test_a_named_auth_dir_is_read_once_at_the_first_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []

    def counting_read(path: object) -> AuthDir:
        reads.append(str(path))
        return read_auth_dir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(gateway_mod, "read_auth_dir", counting_read)
    auth = _baileys_dir(tmp_path / "auth")
    gw = CountingGateway(_config(), random=random.Random(1).random, auth_dirs={"a": auth})
    gw.channel.add_account("a", lid="123456789012345@lid")
    for _ in range(5):
        gw.feed(Start(account="a"))  # five generations, five boots
        gw.run_until(gw.now_ms() + 100)
    assert reads == [str(auth)]
    # the account's own pair (creds.json) first, then its lid-mapping files, each once
    assert gw.learned == [
        ("4915123456789", "123456789012345"),
        ("4917000000001", "987654321098765"),
    ]
    assert gw.engine.mapping.pn_for("123456789012345") == "4915123456789"


def test_an_unreadable_auth_dir_is_on_the_timeline_and_the_socket_still_opens(
    tmp_path: Path,
) -> None:
    gw = CountingGateway(
        _config(), random=random.Random(1).random, auth_dirs={"a": tmp_path / "missing"}
    )
    gw.channel.add_account("a", pn="4915123456789@s.whatsapp.net")
    gw.feed(Start(account="a"))
    gw.run_until(100)
    (error,) = [e for e in gw.timeline if e.code == "auth_dir"]
    assert "auth dir does not exist" in error.message
    assert gw.engine.controller_state("a", 1) == "open"
    assert gw.learned == []
