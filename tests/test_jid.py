"""JID grammar, normalization and E.164: unit tests and round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core.errors import HeirlineError, JidError
from heirline.core.jid import (
    LID_SERVERS,
    PN_SERVERS,
    SERVERS,
    Jid,
    e164_from_pn,
    parse_e164,
    parse_jid,
)

# --- parsing: accepted forms -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4915123456789@s.whatsapp.net", Jid("4915123456789", "s.whatsapp.net")),
        ("4915123456789:12@s.whatsapp.net", Jid("4915123456789", "s.whatsapp.net", device=12)),
        ("4915123456789:0@s.whatsapp.net", Jid("4915123456789", "s.whatsapp.net", device=0)),
        ("4915123456789_1:3@c.us", Jid("4915123456789", "c.us", agent=1, device=3)),
        ("123456789012345@lid", Jid("123456789012345", "lid")),
        ("123456789012345:7@lid", Jid("123456789012345", "lid", device=7)),
        ("4915123456789@hosted", Jid("4915123456789", "hosted")),
        ("123@hosted.lid", Jid("123", "hosted.lid")),
        ("120363025246125486@g.us", Jid("120363025246125486", "g.us")),
        ("4915123456789-1601234567@g.us", Jid("4915123456789-1601234567", "g.us")),
        ("status@broadcast", Jid("status", "broadcast")),
        ("120363144038483540@newsletter", Jid("120363144038483540", "newsletter")),
    ],
)
def test_parse_accepts_every_known_server(text: str, expected: Jid) -> None:
    assert parse_jid(text) == expected
    assert str(parse_jid(text)) == text


@pytest.mark.parametrize("server", ["S.WhatsApp.Net", "LID", "C.US", "Hosted.Lid", "G.US"])
def test_server_is_case_insensitive_and_stored_lower_case(server: str) -> None:
    jid = parse_jid(f"123@{server}")
    assert jid.server == server.lower()
    assert Jid("123", server).server == server.lower()


# --- parsing: every rejection names what is wrong ---------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty JID"),
        ("4915123456789", "exactly one '@'"),
        ("a@b@s.whatsapp.net", "exactly one '@'"),
        ("@s.whatsapp.net", "empty user"),
        ("4915123456789@", "empty server"),
        ("4915123456789@example.com", "unknown JID server"),
        ("4915123456789@whatsapp.net", "unknown JID server"),
        (" 4915123456789@s.whatsapp.net", "whitespace"),
        ("4915123456789@s.whatsapp.net\n", "whitespace"),
        ("49151 23456789@s.whatsapp.net", "whitespace"),
        ("4915123456789\u00a0@lid", "whitespace"),
        ("4915123456789:@s.whatsapp.net", "empty device"),
        ("4915123456789_@s.whatsapp.net", "empty agent"),
        ("4915123456789:x@s.whatsapp.net", "device 'x'"),
        ("4915123456789:-1@s.whatsapp.net", "device '-1'"),
        ("4915123456789:01@s.whatsapp.net", "leading zeros"),
        ("4915123456789:12345678901@s.whatsapp.net", "at most 10 digits"),
        ("4915123456789:1:2@s.whatsapp.net", "more than one ':'"),
        ("4915123456789_1_2@s.whatsapp.net", "more than one '_'"),
        ("4915123456789_a@s.whatsapp.net", "agent 'a'"),
        ("49151abc@s.whatsapp.net", "ASCII digits"),
        ("+4915123456789@s.whatsapp.net", "ASCII digits"),
        ("\u0664\u0669@s.whatsapp.net", "ASCII digits"),
        ("abc@lid", "ASCII digits"),
        ("_1@lid", "empty user"),
        ("a/b@g.us", "cannot have"),
        ("..@g.us", "cannot have"),
    ],
)
def test_parse_rejects_with_a_message_saying_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(JidError) as info:
        parse_jid(text)
    assert fragment in str(info.value)


def test_jid_error_is_a_heirline_error_and_a_value_error() -> None:
    with pytest.raises(HeirlineError):
        parse_jid("nope")
    with pytest.raises(ValueError, match="exactly one"):
        parse_jid("nope")


@pytest.mark.parametrize(
    ("user", "server", "agent", "device", "fragment"),
    [
        ("", "lid", None, None, "empty user"),
        ("1", "", None, None, "empty server"),
        ("1", "example", None, None, "unknown JID server"),
        ("1", "lid", None, -1, "device -1 is out of range"),
        ("1", "lid", 10**10, None, "agent 10000000000 is out of range"),
        ("1a", "s.whatsapp.net", None, None, "ASCII digits"),
    ],
)
def test_constructor_validates_like_the_parser(
    user: str, server: str, agent: int | None, device: int | None, fragment: str
) -> None:
    with pytest.raises(JidError) as info:
        Jid(user, server, agent, device)
    assert fragment in str(info.value)


# --- normalization and domains ----------------------------------------------


def test_normalized_drops_agent_and_device_and_maps_c_us() -> None:
    assert parse_jid("4915123456789_1:12@C.US").normalized == Jid("4915123456789", "s.whatsapp.net")
    assert parse_jid("123:4@hosted.lid").normalized == Jid("123", "hosted.lid")
    assert parse_jid("4915123456789:4@hosted").normalized == Jid("4915123456789", "hosted")


def test_device_12_and_device_0_normalize_to_the_same_account() -> None:
    a = parse_jid("4915123456789:12@s.whatsapp.net")
    b = parse_jid("4915123456789:0@s.whatsapp.net")
    assert a != b
    assert a.normalized == b.normalized


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_domains_partition_the_servers(server: str) -> None:
    user = "status" if server == "broadcast" else "123"
    jid = Jid(user, server)
    assert jid.is_pn == (server in {"s.whatsapp.net", "c.us", "hosted"})
    assert jid.is_lid == (server in {"lid", "hosted.lid"})
    assert not (jid.is_pn and jid.is_lid)


# --- E.164 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+4915123456789", "+4915123456789"),
        ("4915123456789", "+4915123456789"),
        ("+1234567", "+1234567"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_parse_e164_accepts_and_normalizes(text: str, expected: str) -> None:
    assert parse_e164(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "+123456",  # 6 digits
        "+1234567890123456",  # 16 digits
        "+0123456789",  # leading zero
        "++4915123456789",
        "+49 151 23456789",
        "+49-15123456789",
        " +4915123456789",
        "+4915123456789 ",
        "+49151234567a9",
        "+\u0664\u0669\u0661\u0665\u0661\u0662\u0663\u0664",
    ],
)
def test_parse_e164_rejects(text: str) -> None:
    with pytest.raises(JidError, match=r"E\.164"):
        parse_e164(text)


def test_e164_from_pn_for_every_phone_number_server() -> None:
    for server in sorted(PN_SERVERS):
        assert e164_from_pn(Jid("4915123456789", server, device=3)) == "+4915123456789"


@pytest.mark.parametrize("text", ["123456789@lid", "120363@g.us", "status@broadcast"])
def test_e164_from_non_pn_jid_is_an_error(text: str) -> None:
    with pytest.raises(JidError, match="not a phone-number JID"):
        e164_from_pn(parse_jid(text))


@pytest.mark.parametrize("user", ["123456", "1234567890123456", "0491512345678"])
def test_e164_from_pn_validates_the_digits(user: str) -> None:
    with pytest.raises(JidError, match="7-15"):
        e164_from_pn(Jid(user, "s.whatsapp.net"))


# --- properties -------------------------------------------------------------

numbers = st.integers(min_value=0, max_value=9_999_999_999)
numeric_users = st.from_regex(r"[0-9]{1,20}", fullmatch=True)
other_users = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,20}", fullmatch=True)


@st.composite
def jids(draw: st.DrawFn) -> Jid:
    """Any valid JID on any known server, with or without agent and device."""
    server = draw(st.sampled_from(sorted(SERVERS)))
    numeric = server in PN_SERVERS or server in LID_SERVERS
    user = draw(numeric_users if numeric else other_users)
    return Jid(user, server, draw(st.none() | numbers), draw(st.none() | numbers))


@given(jids())
def test_format_then_parse_round_trips(jid: Jid) -> None:
    assert parse_jid(str(jid)) == jid
    assert str(parse_jid(str(jid))) == str(jid)


@given(jids(), st.lists(st.booleans(), min_size=10, max_size=10))
def test_parse_ignores_server_case(jid: Jid, flips: list[bool]) -> None:
    cased = "".join(c.upper() if flips[i % 10] else c for i, c in enumerate(jid.server))
    head = str(jid).rsplit("@", 1)[0]
    assert parse_jid(f"{head}@{cased}") == jid
    assert Jid(jid.user, cased, jid.agent, jid.device) == jid


@given(jids())
def test_normalized_is_idempotent_and_keeps_user_and_domain(jid: Jid) -> None:
    n = jid.normalized
    assert n.normalized == n
    assert (n.agent, n.device) == (None, None)
    assert n.user == jid.user
    assert (n.is_pn, n.is_lid) == (jid.is_pn, jid.is_lid)
    assert n.server != "c.us"


@given(st.text(max_size=40))
def test_parse_never_fails_with_anything_but_jid_error(text: str) -> None:
    try:
        jid = parse_jid(text)
    except JidError:
        return
    assert str(jid).lower() == text.lower()
