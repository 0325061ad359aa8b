"""Self identities, the PN<->LID mapping, resolution and the overlap guard.

The unit tests pin every rule of issue 3, including openclaw's known pitfalls;
the properties check symmetry, invariance under device/agent suffixes and
server-name case, idempotent resolution and "same never with a contradiction".
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core.errors import JidError, MappingConflictError
from heirline.core.identity import (
    EMPTY_MAPPING,
    FORMS,
    UNAUTHENTICATED,
    LidMapping,
    SelfIdentity,
    Verdict,
    VerdictKind,
    compare,
    resolve,
)
from heirline.core.jid import Jid, parse_jid

PN_USER = "4915123456789"
LID_USER = "123456789012345"
PN = f"{PN_USER}@s.whatsapp.net"
LID = f"{LID_USER}@lid"
E164 = f"+{PN_USER}"
OTHER_PN_USER = "4915987654321"
OTHER_LID_USER = "987654321098765"
OTHER_PN = f"{OTHER_PN_USER}@s.whatsapp.net"
OTHER_LID = f"{OTHER_LID_USER}@lid"

MAPPING = LidMapping.from_pairs([(PN_USER, LID_USER)])
BOTH_MAPPINGS = MAPPING.with_pair(OTHER_PN_USER, OTHER_LID_USER)

SAME = VerdictKind.SAME
DIFFERENT = VerdictKind.DIFFERENT
CONFLICTING = VerdictKind.CONFLICTING
NOT_COMPARABLE = VerdictKind.NOT_COMPARABLE


def ident(pn: str | None = None, lid: str | None = None, e164: str | None = None) -> SelfIdentity:
    return SelfIdentity.parse(pn=pn, lid=lid, e164=e164)


# --- SelfIdentity -----------------------------------------------------------


def test_parse_stores_normalized_forms() -> None:
    identity = ident(pn=f"{PN_USER}_1:12@C.US", lid=f"{LID_USER}:3@LID", e164=PN_USER)
    assert identity.pn == Jid(PN_USER, "s.whatsapp.net")
    assert identity.lid == Jid(LID_USER, "lid")
    assert identity.e164 == E164


def test_constructor_normalizes_and_validates_like_parse() -> None:
    identity = SelfIdentity(pn=parse_jid(f"{PN_USER}:5@c.us"), lid=parse_jid(f"{LID_USER}:1@lid"))
    assert identity == ident(pn=PN, lid=LID)
    with pytest.raises(JidError, match="never a self identity"):
        SelfIdentity(pn=parse_jid("120363025246125486@g.us"))


@pytest.mark.parametrize(
    "jid", ["120363025246125486@g.us", "status@broadcast", "120363144038483540@newsletter"]
)
@pytest.mark.parametrize("role", ["pn", "lid"])
def test_group_broadcast_newsletter_is_never_a_self_identity(jid: str, role: str) -> None:
    with pytest.raises(JidError, match="never a self identity"):
        SelfIdentity.parse(**{role: jid})


def test_lid_given_as_pn_is_an_error() -> None:
    with pytest.raises(JidError, match="is a LID, but was given as the phone-number JID"):
        ident(pn=LID)


def test_pn_given_as_lid_is_an_error() -> None:
    with pytest.raises(JidError, match="is a phone-number JID, but was given as the LID"):
        ident(lid=PN)


@pytest.mark.parametrize("role", ["pn", "lid", "e164"])
def test_empty_string_is_an_error_not_absent(role: str) -> None:
    with pytest.raises(JidError):
        SelfIdentity.parse(**{role: ""})


def test_malformed_jid_is_an_error_not_absent() -> None:
    with pytest.raises(JidError, match="whitespace"):
        ident(pn=f" {PN}")


def test_e164_inconsistent_with_pn_is_an_error() -> None:
    with pytest.raises(JidError, match="does not match"):
        ident(pn=PN, e164=f"+{OTHER_PN_USER}")


def test_e164_with_a_pn_that_has_no_valid_e164_is_an_error() -> None:
    with pytest.raises(JidError, match="does not match"):
        ident(pn="12345@s.whatsapp.net", e164="+1234567")


def test_e164_consistent_with_hosted_pn() -> None:
    assert ident(pn=f"{PN_USER}@hosted", e164=E164).e164 == E164


@pytest.mark.parametrize(
    ("identity", "authenticated"),
    [
        (SelfIdentity(), False),
        (UNAUTHENTICATED, False),
        (ident(pn=PN), True),
        (ident(lid=LID), True),
        (ident(e164=E164), True),
    ],
)
def test_authenticated_means_at_least_one_form(identity: SelfIdentity, authenticated: bool) -> None:
    assert identity.authenticated is authenticated


def test_describe() -> None:
    assert ident(pn=f"{PN_USER}:3@c.us", lid=LID).describe() == f"pn={PN} lid={LID}"
    assert ident(e164=E164).describe() == f"e164={E164}"
    assert UNAUTHENTICATED.describe() == "unauthenticated"


# --- LidMapping ---------------------------------------------------------------


def test_mapping_accepts_users_and_jids_and_identical_repeats() -> None:
    mapping = LidMapping.from_pairs(
        [(PN_USER, LID_USER), (f"{PN_USER}:2@c.us", f"{LID_USER}:9@lid"), (PN, LID)]
    )
    assert mapping == MAPPING
    assert len(mapping) == 1
    assert mapping.pairs == ((PN_USER, LID_USER),)
    assert mapping.lid_for(PN_USER) == LID_USER
    assert mapping.pn_for(LID_USER) == PN_USER
    assert mapping.lid_for(OTHER_PN_USER) is None
    assert mapping.pn_for(OTHER_LID_USER) is None


def test_mapping_is_order_independent_and_hashable() -> None:
    a = LidMapping.from_pairs([(PN_USER, LID_USER), (OTHER_PN_USER, OTHER_LID_USER)])
    b = LidMapping.from_pairs([(OTHER_PN_USER, OTHER_LID_USER), (PN_USER, LID_USER)])
    assert a == b
    assert hash(a) == hash(b)
    assert a == BOTH_MAPPINGS


def test_one_lid_claimed_by_two_numbers_names_both_pairs() -> None:
    with pytest.raises(MappingConflictError) as info:
        LidMapping.from_pairs([(PN_USER, LID_USER), (OTHER_PN_USER, LID_USER)])
    message = str(info.value)
    assert f"(pn={PN_USER}, lid={LID_USER})" in message
    assert f"(pn={OTHER_PN_USER}, lid={LID_USER})" in message
    assert "claimed by two phone numbers" in message


def test_one_number_claimed_by_two_lids_names_both_pairs() -> None:
    with pytest.raises(MappingConflictError) as info:
        LidMapping.from_pairs([(PN_USER, LID_USER), (PN_USER, OTHER_LID_USER)])
    message = str(info.value)
    assert f"(pn={PN_USER}, lid={LID_USER})" in message
    assert f"(pn={PN_USER}, lid={OTHER_LID_USER})" in message
    assert "claimed by two LIDs" in message


def test_with_pair_returns_a_new_mapping_with_the_same_conflict_rule() -> None:
    bigger = MAPPING.with_pair(OTHER_PN, OTHER_LID)
    assert len(MAPPING) == 1
    assert len(bigger) == 2
    assert bigger.pn_for(OTHER_LID_USER) == OTHER_PN_USER
    assert MAPPING.with_pair(PN_USER, LID_USER) == MAPPING
    with pytest.raises(MappingConflictError):
        MAPPING.with_pair(OTHER_PN_USER, LID_USER)


@pytest.mark.parametrize(
    ("pn", "lid", "fragment"),
    [
        (LID, LID_USER, "not a phone-number JID"),
        (PN_USER, PN, "not a LID JID"),
        ("120363025246125486@g.us", LID_USER, "not a phone-number JID"),
        ("+4915123456789", LID_USER, "ASCII digits"),
        (PN_USER, "", "ASCII digits"),
        (PN_USER, " 1", "ASCII digits"),
        ("../1", LID_USER, "ASCII digits"),
        ("1@example.com", LID_USER, "unknown JID server"),
    ],
)
def test_mapping_rejects_malformed_pairs(pn: str, lid: str, fragment: str) -> None:
    with pytest.raises(JidError) as info:
        LidMapping.from_pairs([(pn, lid)])
    assert fragment in str(info.value)


def test_the_empty_mapping() -> None:
    assert LidMapping.empty() is EMPTY_MAPPING
    assert LidMapping.EMPTY is EMPTY_MAPPING
    assert len(EMPTY_MAPPING) == 0
    assert LidMapping() == EMPTY_MAPPING


# --- resolve ------------------------------------------------------------------


@pytest.mark.parametrize(
    "partial", [ident(pn=PN), ident(lid=LID), ident(e164=E164), ident(pn=PN, lid=LID)]
)
def test_resolve_fills_every_missing_form_through_the_mapping(partial: SelfIdentity) -> None:
    assert resolve(partial, MAPPING) == ident(pn=PN, lid=LID, e164=E164)


def test_resolve_without_mapping_fills_only_e164_and_pn() -> None:
    assert resolve(ident(pn=PN), EMPTY_MAPPING) == ident(pn=PN, e164=E164)
    assert resolve(ident(e164=E164), EMPTY_MAPPING) == ident(pn=PN, e164=E164)
    lid_only = ident(lid=LID)
    assert resolve(lid_only, EMPTY_MAPPING) is lid_only


def test_resolve_keeps_hosted_domains() -> None:
    resolved = resolve(ident(pn=f"{PN_USER}@hosted"), MAPPING)
    assert resolved.lid == Jid(LID_USER, "hosted.lid")
    resolved = resolve(ident(lid=f"{LID_USER}@hosted.lid"), MAPPING)
    assert resolved.pn == Jid(PN_USER, "hosted")
    assert resolved.e164 == E164


def test_resolve_never_overwrites_a_present_form() -> None:
    contradicting = ident(pn=PN, lid=OTHER_LID)
    assert resolve(contradicting, MAPPING) == ident(pn=PN, lid=OTHER_LID, e164=E164)


def test_resolve_leaves_e164_empty_when_the_pn_user_is_no_e164() -> None:
    short = ident(pn="12345@s.whatsapp.net")
    assert resolve(short, EMPTY_MAPPING) is short


# --- compare: the rules of issue 3 -------------------------------------------


def test_pn_only_original_vs_lid_only_successor_with_mapping_is_same() -> None:
    verdict = compare(ident(pn=PN), ident(lid=LID), MAPPING)
    assert verdict.kind is SAME
    assert verdict.matched == ("pn", "lid", "e164")
    assert verdict.contradicted == ()
    assert verdict.permits_handoff
    assert verdict.reason == "same identity: pn, lid, e164 matched"


def test_pn_only_vs_lid_only_without_mapping_is_not_comparable() -> None:
    verdict = compare(ident(pn=PN), ident(lid=LID))
    assert verdict.kind is NOT_COMPARABLE
    assert not verdict.permits_handoff
    assert "no form present on both sides" in verdict.reason
    assert "original has pn, e164; successor has lid" in verdict.reason


def test_relinked_number_is_different() -> None:
    verdict = compare(ident(pn=PN, lid=LID), ident(pn=OTHER_PN, lid=OTHER_LID), BOTH_MAPPINGS)
    assert verdict.kind is DIFFERENT
    assert verdict.matched == ()
    assert verdict.contradicted == ("pn", "lid", "e164")
    assert not verdict.permits_handoff
    assert verdict.reason.startswith("different identity: pn, lid, e164 differ")


def test_same_lid_but_different_phone_number_is_conflicting() -> None:
    verdict = compare(ident(pn=PN, lid=LID), ident(pn=OTHER_PN, lid=LID))
    assert verdict.kind is CONFLICTING
    assert verdict.matched == ("lid",)
    assert verdict.contradicted == ("pn", "e164")
    assert not verdict.permits_handoff
    assert "fail closed" in verdict.reason


def test_unauthenticated_successor_is_not_comparable() -> None:
    verdict = compare(ident(pn=PN), UNAUTHENTICATED, MAPPING)
    assert verdict == Verdict(
        NOT_COMPARABLE, (), (), "not comparable: successor is unauthenticated"
    )


def test_unauthenticated_original_is_not_comparable() -> None:
    verdict = compare(UNAUTHENTICATED, ident(pn=PN), MAPPING)
    assert verdict.kind is NOT_COMPARABLE
    assert verdict.reason == "not comparable: original is unauthenticated"


def test_both_unauthenticated_is_not_comparable() -> None:
    verdict = compare(UNAUTHENTICATED, SelfIdentity())
    assert verdict.kind is NOT_COMPARABLE
    assert verdict.reason == "not comparable: original and successor are unauthenticated"


def test_device_12_vs_device_0_is_same() -> None:
    verdict = compare(
        ident(pn=f"{PN_USER}:12@s.whatsapp.net"), ident(pn=f"{PN_USER}:0@s.whatsapp.net")
    )
    assert verdict.kind is SAME


def test_c_us_vs_s_whatsapp_net_is_same() -> None:
    verdict = compare(ident(pn=f"{PN_USER}@c.us"), ident(pn=PN))
    assert verdict.kind is SAME
    assert verdict.matched == ("pn", "e164")


def test_hosted_is_the_phone_number_domain_compared_on_user() -> None:
    assert compare(ident(pn=f"{PN_USER}@hosted"), ident(pn=PN)).kind is SAME
    assert compare(ident(pn=f"{PN_USER}@hosted"), ident(pn=OTHER_PN)).kind is DIFFERENT


def test_hosted_lid_is_the_lid_domain_compared_on_user() -> None:
    verdict = compare(ident(lid=f"{LID_USER}@hosted.lid"), ident(lid=LID))
    assert verdict.kind is SAME
    assert verdict.matched == ("lid",)


def test_e164_only_original_vs_lid_only_successor_with_mapping_is_same() -> None:
    assert compare(ident(e164=E164), ident(lid=LID), MAPPING).kind is SAME


def test_e164_only_vs_pn_only_is_same_without_mapping() -> None:
    verdict = compare(ident(e164=E164), ident(pn=f"{PN_USER}:4@c.us"))
    assert verdict.kind is SAME
    assert verdict.matched == ("pn", "e164")


def test_lid_only_relinked_is_different() -> None:
    assert compare(ident(lid=LID), ident(lid=OTHER_LID)).kind is DIFFERENT


# --- compare: openclaw's pitfalls, pinned -------------------------------------


def test_pitfall_one_equal_e164_does_not_win_over_a_contradicting_lid() -> None:
    """openclaw: any single equal string => overlap. heirline: conflicting."""
    verdict = compare(ident(e164=E164, lid=LID), ident(e164=E164, lid=OTHER_LID))
    assert verdict.kind is CONFLICTING
    assert not verdict.permits_handoff
    assert "lid" in verdict.contradicted


def test_pitfall_one_equal_lid_does_not_win_over_a_contradicting_pn() -> None:
    verdict = compare(ident(pn=PN, lid=LID), ident(pn=OTHER_PN, lid=LID))
    assert verdict.kind is CONFLICTING
    assert not verdict.permits_handoff


def test_pitfall_mapping_contradicts_the_successor_s_own_lid() -> None:
    """The original's mapped LID differs from the LID the successor shows: fail closed."""
    verdict = compare(ident(pn=PN), ident(pn=PN, lid=OTHER_LID), MAPPING)
    assert verdict.kind is CONFLICTING
    assert verdict.matched == ("pn", "e164")
    assert verdict.contradicted == ("lid",)


def test_pitfall_c_us_is_normalized() -> None:
    """openclaw compares '...@c.us' and '...@s.whatsapp.net' as different strings."""
    verdict = compare(ident(pn=f"{PN_USER}:3@c.us"), ident(pn=f"{PN_USER}:7@s.whatsapp.net"))
    assert verdict.kind is SAME


def test_pitfall_resolution_uses_the_mapping() -> None:
    """openclaw resolves without the mapping, so PN-only vs LID-only never match."""
    assert compare(ident(pn=PN), ident(lid=LID), MAPPING).kind is SAME
    assert compare(ident(lid=LID), ident(pn=PN), MAPPING).kind is SAME


@pytest.mark.parametrize("kind", list(VerdictKind))
def test_only_same_permits_handoff(kind: VerdictKind) -> None:
    assert Verdict(kind, (), (), "x").permits_handoff is (kind is SAME)


# --- properties -----------------------------------------------------------------

PN_POOL = ("4915123456789", "4915987654321", "14155550100", "12345")  # 12345: no E.164
LID_POOL = ("111111111111111", "222222222222222", "333333333333333", "444")


@dataclass(frozen=True)
class Spec:
    """An identity before decoration: which user for each form, and which server family."""

    pn: str | None
    pn_hosted: bool
    lid: str | None
    lid_hosted: bool
    e164: bool  # show the E.164 (of pn if present, else of e164_user)
    e164_user: str


specs = st.builds(
    Spec,
    pn=st.none() | st.sampled_from(PN_POOL),
    pn_hosted=st.booleans(),
    lid=st.none() | st.sampled_from(LID_POOL),
    lid_hosted=st.booleans(),
    e164=st.booleans(),
    e164_user=st.sampled_from(PN_POOL[:3]),
)


@st.composite
def mappings(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    """Pairs of a consistent random partial one-to-one mapping over the pools.

    The tests build the LidMapping themselves: beartype samples containers with
    ``random``, which hypothesis forbids inside strategies.
    """
    lids = draw(st.permutations(LID_POOL))
    keep = draw(st.lists(st.booleans(), min_size=len(PN_POOL), max_size=len(PN_POOL)))
    return tuple((pn, lid) for pn, lid, k in zip(PN_POOL, lids, keep, strict=True) if k)


Pairs = tuple[tuple[str, str], ...]


suffixes = st.tuples(st.none() | st.integers(0, 99), st.none() | st.integers(0, 99), st.booleans())


def _decorate(user: str, server: str, suffix: tuple[int | None, int | None, bool]) -> str:
    agent, device, shout = suffix
    text = user + ("" if agent is None else f"_{agent}") + ("" if device is None else f":{device}")
    return f"{text}@{server.upper() if shout else server}"


def render(
    spec: Spec,
    pn_suffix: tuple[int | None, int | None, bool] = (None, None, False),
    lid_suffix: tuple[int | None, int | None, bool] = (None, None, False),
    legacy: bool = False,
) -> SelfIdentity | None:
    """The identity a spec describes, decorated; None when the spec is not a valid identity."""
    pn_server = "hosted" if spec.pn_hosted else ("c.us" if legacy else "s.whatsapp.net")
    pn = None if spec.pn is None else _decorate(spec.pn, pn_server, pn_suffix)
    lid_server = "hosted.lid" if spec.lid_hosted else "lid"
    lid = None if spec.lid is None else _decorate(spec.lid, lid_server, lid_suffix)
    e164_user = spec.pn if spec.pn is not None else spec.e164_user
    e164 = f"+{e164_user}" if spec.e164 else None
    try:
        return SelfIdentity.parse(pn=pn, lid=lid, e164=e164)
    except JidError:
        return None  # e.g. e164 shown for a pn user that has no E.164


identities = specs.map(render).filter(lambda i: i is not None)


def _key(verdict: Verdict) -> tuple[VerdictKind, tuple[str, ...], tuple[str, ...]]:
    return verdict.kind, verdict.matched, verdict.contradicted


def _form_keys(identity: SelfIdentity) -> dict[str, str]:
    """An independent oracle: the comparison key of each present form."""
    keys = {}
    if identity.pn is not None:
        keys["pn"] = identity.pn.user
    if identity.lid is not None:
        keys["lid"] = identity.lid.user
    if identity.e164 is not None:
        keys["e164"] = identity.e164
    return keys


@given(identities, identities, mappings())
def test_verdict_is_symmetric(a: SelfIdentity, b: SelfIdentity, pairs: Pairs) -> None:
    mapping = LidMapping.from_pairs(pairs)
    assert _key(compare(a, b, mapping)) == _key(compare(b, a, mapping))


@given(
    specs, specs, mappings(), suffixes, suffixes, suffixes, suffixes, st.booleans(), st.booleans()
)
def test_verdict_ignores_device_agent_suffixes_and_server_case(
    sa: Spec,
    sb: Spec,
    pairs: Pairs,
    pa: tuple[int | None, int | None, bool],
    la: tuple[int | None, int | None, bool],
    pb: tuple[int | None, int | None, bool],
    lb: tuple[int | None, int | None, bool],
    legacy_a: bool,
    legacy_b: bool,
) -> None:
    mapping = LidMapping.from_pairs(pairs)
    plain_a, plain_b = render(sa), render(sb)
    if plain_a is None or plain_b is None:
        return
    fancy_a, fancy_b = render(sa, pa, la, legacy_a), render(sb, pb, lb, legacy_b)
    assert fancy_a == plain_a
    assert fancy_b == plain_b
    assert _key(compare(fancy_a, fancy_b, mapping)) == _key(compare(plain_a, plain_b, mapping))


@given(identities, mappings())
def test_resolve_is_idempotent_and_only_fills(identity: SelfIdentity, pairs: Pairs) -> None:
    mapping = LidMapping.from_pairs(pairs)
    once = resolve(identity, mapping)
    assert resolve(once, mapping) == once
    for form in FORMS:
        if getattr(identity, form) is not None:
            assert getattr(once, form) == getattr(identity, form)
    assert once.authenticated == identity.authenticated


@given(identities, identities, mappings())
def test_same_is_never_returned_when_a_resolved_form_contradicts(
    a: SelfIdentity, b: SelfIdentity, pairs: Pairs
) -> None:
    mapping = LidMapping.from_pairs(pairs)
    verdict = compare(a, b, mapping)
    left, right = _form_keys(resolve(a, mapping)), _form_keys(resolve(b, mapping))
    shared = [f for f in FORMS if f in left and f in right]
    contradicts = [f for f in shared if left[f] != right[f]]
    equal = [f for f in shared if left[f] == right[f]]
    if contradicts:
        assert verdict.kind is not SAME
        assert not verdict.permits_handoff
    assert verdict.contradicted == tuple(contradicts)
    assert verdict.matched == tuple(equal)
    expected = (
        CONFLICTING
        if equal and contradicts
        else SAME
        if equal
        else DIFFERENT
        if contradicts
        else NOT_COMPARABLE
    )
    assert verdict.kind is expected


@given(identities)
def test_an_identity_is_the_same_as_itself_whenever_authenticated(identity: SelfIdentity) -> None:
    verdict = compare(identity, identity)
    assert verdict.permits_handoff is identity.authenticated


@given(identities)
def test_self_identity_round_trips_through_strings(identity: SelfIdentity) -> None:
    again = SelfIdentity.parse(
        pn=None if identity.pn is None else str(identity.pn),
        lid=None if identity.lid is None else str(identity.lid),
        e164=identity.e164,
    )
    assert again == identity


@given(st.permutations([*BOTH_MAPPINGS.pairs, (PN_USER, LID_USER)]))
def test_mapping_does_not_depend_on_pair_order(pairs: list[tuple[str, str]]) -> None:
    assert LidMapping.from_pairs(pairs) == BOTH_MAPPINGS


_JID_TEXT = st.one_of(
    st.from_regex(
        r"[0-9]{1,16}(_(0|[1-9][0-9]{0,10}))?(:(0|[0-9]{1,11}))?@(s\.whatsapp\.net|c\.us|hosted|"
        r"lid|hosted\.lid|LID|S\.WhatsApp\.Net|g\.us)",
        fullmatch=True,
    ),
    st.text(max_size=30),
)


def _slow(pn: str | None, lid: str | None) -> SelfIdentity:
    """The validating constructor alone (what parse's fast path must agree with)."""
    return SelfIdentity(
        pn=None if pn is None else parse_jid(pn), lid=None if lid is None else parse_jid(lid)
    )


@given(pn=st.none() | _JID_TEXT, lid=st.none() | _JID_TEXT)
def test_the_parse_fast_path_agrees_with_the_validating_parser(
    pn: str | None, lid: str | None
) -> None:
    try:
        expected: SelfIdentity | str = _slow(pn, lid)
    except JidError as err:
        expected = f"error: {err}"
    try:
        got: SelfIdentity | str = SelfIdentity.parse(pn=pn, lid=lid)
    except JidError as err:
        got = f"error: {err}"
    assert got == expected
    if isinstance(got, SelfIdentity) and isinstance(expected, SelfIdentity):
        assert (got.pn, got.lid, got.e164) == (expected.pn, expected.lid, expected.e164)
        assert got.pn is None or got.pn.server in {"s.whatsapp.net", "hosted"}
