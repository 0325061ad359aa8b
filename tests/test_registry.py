"""The registry: replace, stale unregister, generations never reused (unit + property)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core.registry import ChangeKind, Registry, RegistryChange


def test_generations_count_up_per_account() -> None:
    reg = Registry()
    assert [reg.next_generation("a") for _ in range(3)] == [1, 2, 3]
    assert reg.next_generation("b") == 1


def test_generations_are_never_reused_even_after_unregister() -> None:
    reg = Registry()
    g1 = reg.next_generation("a")
    reg.register("a", g1)
    reg.unregister("a", g1)
    assert reg.current("a") is None
    assert reg.next_generation("a") == 2


def test_first_register_has_no_predecessor() -> None:
    reg = Registry()
    g = reg.next_generation("a")
    assert reg.register("a", g) == RegistryChange(ChangeKind.REGISTERED, "a", 1)
    assert reg.current("a") == 1


def test_register_replaces_and_reports_predecessor() -> None:
    reg = Registry()
    a, b = reg.next_generation("acct"), reg.next_generation("acct")
    reg.register("acct", a)
    change = reg.register("acct", b)
    assert change.kind is ChangeKind.REGISTERED
    assert change.predecessor == a
    assert change.generation == b
    assert reg.current("acct") == b


def test_stale_unregister_after_successor_registered_never_removes_successor() -> None:
    reg = Registry()
    a, b = reg.next_generation("acct"), reg.next_generation("acct")
    reg.register("acct", a)
    reg.register("acct", b)
    change = reg.unregister("acct", a)
    assert change == RegistryChange(
        ChangeKind.IGNORED, "acct", a, reason="stale: current is generation 2"
    )
    assert reg.current("acct") == b
    assert reg.accounts() == ("acct",)


def test_unregister_of_current_removes_it() -> None:
    reg = Registry()
    g = reg.next_generation("acct")
    reg.register("acct", g)
    assert reg.unregister("acct", g) == RegistryChange(ChangeKind.UNREGISTERED, "acct", g)
    assert reg.current("acct") is None
    assert reg.accounts() == ()


def test_unregister_without_current_is_ignored() -> None:
    reg = Registry()
    change = reg.unregister("acct", 1)
    assert change.kind is ChangeKind.IGNORED
    assert change.reason.startswith("not registered")


def test_unregister_of_a_newer_never_registered_generation_is_ignored() -> None:
    reg = Registry()
    a, b = reg.next_generation("acct"), reg.next_generation("acct")
    reg.register("acct", a)
    change = reg.unregister("acct", b)
    assert change.kind is ChangeKind.IGNORED
    assert change.reason == "not registered: current is generation 1"
    assert reg.current("acct") == a


def test_re_register_of_a_new_generation_after_unregister() -> None:
    reg = Registry()
    a = reg.next_generation("acct")
    reg.register("acct", a)
    reg.unregister("acct", a)
    b = reg.next_generation("acct")
    change = reg.register("acct", b)
    assert change == RegistryChange(ChangeKind.REGISTERED, "acct", b, predecessor=None)
    assert reg.current("acct") == b


@pytest.mark.parametrize("generation", [0, -1, 3])
def test_register_of_a_never_issued_generation_is_ignored(generation: int) -> None:
    reg = Registry()
    reg.next_generation("acct")
    reg.next_generation("acct")
    change = reg.register("acct", generation)
    assert change.kind is ChangeKind.IGNORED
    assert change.reason == "never issued: highest issued generation is 2"
    assert reg.current("acct") is None


def test_generation_issued_for_another_account_is_not_valid_here() -> None:
    reg = Registry()
    g = reg.next_generation("a")
    assert reg.register("b", g).kind is ChangeKind.IGNORED
    assert reg.current("b") is None


def test_late_register_of_an_older_generation_never_takes_the_account_back() -> None:
    reg = Registry()
    a, b = reg.next_generation("acct"), reg.next_generation("acct")
    reg.register("acct", b)
    change = reg.register("acct", a)
    assert change.kind is ChangeKind.IGNORED
    assert change.reason == "superseded: generation 2 was already registered"
    assert reg.current("acct") == b


def test_old_generation_cannot_come_back_after_its_successor_left() -> None:
    reg = Registry()
    a, b = reg.next_generation("acct"), reg.next_generation("acct")
    reg.register("acct", a)
    reg.register("acct", b)
    reg.unregister("acct", b)
    assert reg.register("acct", a).kind is ChangeKind.IGNORED
    assert reg.register("acct", b).kind is ChangeKind.IGNORED
    assert reg.current("acct") is None


def test_registering_the_current_generation_again_is_ignored() -> None:
    reg = Registry()
    g = reg.next_generation("acct")
    reg.register("acct", g)
    change = reg.register("acct", g)
    assert change == RegistryChange(ChangeKind.IGNORED, "acct", g, reason="already current")
    assert reg.current("acct") == g


def test_accounts_are_sorted_and_independent() -> None:
    reg = Registry()
    for account in ("zed", "amy", "mid"):
        reg.register(account, reg.next_generation(account))
    reg.unregister("mid", 1)
    assert reg.accounts() == ("amy", "zed")


# --- property: the registry agrees with a naive reference model -------------------------


@dataclass
class Model:
    """Reference: current = last generation whose register was accepted, unless unregistered."""

    issued: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[int]] = field(default_factory=dict)  # accepted registers, in order
    removed: dict[str, set[int]] = field(default_factory=dict)  # accepted unregisters

    def current(self, account: str) -> int | None:
        accepted = self.history.get(account, [])
        if not accepted or accepted[-1] in self.removed.get(account, set()):
            return None
        return accepted[-1]


ACCOUNTS = st.sampled_from(["a", "b"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("next"), ACCOUNTS, st.just(0)),
        st.tuples(st.just("register"), ACCOUNTS, st.integers(-1, 8)),
        st.tuples(st.just("unregister"), ACCOUNTS, st.integers(-1, 8)),
    ),
    max_size=40,
)


@given(OPS)
def test_current_is_the_last_registered_unless_it_was_unregistered(
    ops: list[tuple[str, str, int]],
) -> None:
    reg = Registry()
    model = Model()
    for op, account, generation in ops:
        if op == "next":
            issued = reg.next_generation(account)
            model.issued[account] = model.issued.get(account, 0) + 1
            assert issued == model.issued[account]
        elif op == "register":
            accepted = model.history.setdefault(account, [])
            ok = 1 <= generation <= model.issued.get(account, 0) and all(
                generation > g for g in accepted
            )
            change = reg.register(account, generation)
            if ok:
                assert change.kind is ChangeKind.REGISTERED
                assert change.predecessor == model.current(account)
                accepted.append(generation)
            else:
                assert change.kind is ChangeKind.IGNORED
                assert change.reason
        else:
            ok = generation == model.current(account)
            change = reg.unregister(account, generation)
            if ok:
                assert change.kind is ChangeKind.UNREGISTERED
                model.removed.setdefault(account, set()).add(generation)
            else:
                assert change.kind is ChangeKind.IGNORED
                assert change.reason
        for acct in ("a", "b"):
            assert reg.current(acct) == model.current(acct)
        assert reg.accounts() == tuple(a for a in ("a", "b") if model.current(a) is not None)
