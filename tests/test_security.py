"""Signing, keyed hashes, client addresses behind proxies and redirect targets."""

import ipaddress
import random

import pytest

from comments.errors import ApiError
from comments.security import (
    Keys, anonymise_ip, client_ip, decode_cursor, encode_cursor, normalise_ip, safe_redirect, token_hash,
)

KEYS = Keys(b"k" * 32)
TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


def test_signed_values_round_trip_and_resist_tampering() -> None:
    token = KEYS.sign("cursor", [1, "a"])
    assert KEYS.unsign("cursor", token) == [1, "a"]
    with pytest.raises(ValueError):
        KEYS.unsign("other-purpose", token)
    body, mac = token.split(".")
    with pytest.raises(ValueError):
        KEYS.unsign("cursor", body + "x." + mac)
    for junk in ["", ".", "a.b", "é.é", "x" * 5000, "a.b.c"]:
        with pytest.raises(ValueError):
            KEYS.unsign("cursor", junk)


def test_bad_cursor_is_a_400() -> None:
    with pytest.raises(ApiError) as caught:
        decode_cursor(KEYS, "nonsense", 2)
    assert caught.value.status == 400
    with pytest.raises(ApiError):
        decode_cursor(KEYS, encode_cursor(KEYS, [1, 2, 3]), 2)


def test_edit_tokens_are_per_comment() -> None:
    assert KEYS.check_edit_token(5, KEYS.edit_token(5))
    assert not KEYS.check_edit_token(6, KEYS.edit_token(5))
    assert not KEYS.check_edit_token(5, None)
    assert not KEYS.check_edit_token(5, "x" * 500)
    assert not Keys(b"j" * 32).check_edit_token(5, KEYS.edit_token(5))


def test_lookup_hashes_are_keyed() -> None:
    assert KEYS.lookup("email", "a@b.c") != Keys(b"j" * 32).lookup("email", "a@b.c")
    assert KEYS.lookup("email", "a@b.c") != KEYS.lookup("ip", "a@b.c")
    assert len(token_hash("t")) == 64


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # untrusted peer: header ignored
        ("127.0.0.1", "1.2.3.4", "1.2.3.4"),
        ("127.0.0.1", "1.2.3.4, 10.0.0.2", "1.2.3.4"),  # chain of trusted proxies
        ("127.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client cannot spoof past the first untrusted hop
        ("127.0.0.1", "garbage", "127.0.0.1"),
        ("127.0.0.1", None, "127.0.0.1"),
        ("::ffff:127.0.0.1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip(peer: str, header: str | None, expected: str) -> None:
    assert client_ip(peer, header, TRUSTED) == expected


ORIGINS = ("https://blog.example", "http://127.0.0.1:8000")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("https://blog.example/2023/01/a/#respond", "https://blog.example/2023/01/a/#comment-7"),
        ("https://BLOG.example:443/a?x=1", "https://blog.example/a?x=1#comment-7"),
        ("http://127.0.0.1:8000/demo", "http://127.0.0.1:8000/demo#comment-7"),
        ("https://blog.example.evil/", None),
        ("https://evil.example/?https://blog.example", None),
        ("https://blog.example@evil.example/", None),
        ("//blog.example/x", None),
        ("javascript:alert(1)//https://blog.example", None),
        ("https://blog.example\\@evil.example", "https://blog.example/@evil.example#comment-7"),
        ("https://blog.example/\nx", None),
        ("http://blog.example/", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_redirect(target: str | None, expected: str | None) -> None:
    assert safe_redirect(target, ORIGINS, "comment-7") == expected


# ---- addresses: the shortcut for plain IPv4 gives what ipaddress gives -----------------------


def _by_ipaddress(value: str | None) -> tuple[str | None, str | None]:
    """(normalised, anonymised) the long way round, as both were written before the shortcut."""
    try:
        address = ipaddress.ip_address((value or "").strip().strip("[]"))
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    try:
        normal: str | None = str(ipaddress.ip_address(value or ""))
    except ValueError:
        normal = None
    if address is None:
        return normal, None
    prefix = 24 if address.version == 4 else 48
    return normal, str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def _addresses(count: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    parts = ["0", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300", "00", "01", "010"]
    out = ["0.0.0.0", "255.255.255.255", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4\n", "[1.2.3.4]", "::ffff:1.2.3.4",
           "2001:db8::1", "\uff11.2.3.4", "1.2.3.\u0664", "", "1..2.3", "a.b.c.d"]
    for _ in range(count):
        if rnd.random() < 0.5:
            out.append(".".join(str(rnd.randrange(256)) for _ in range(4)))
        else:
            out.append(".".join(rnd.choice(parts) for _ in range(rnd.choice([3, 4, 4, 4, 5]))))
    return out


def test_ipv4_shortcut_gives_what_ipaddress_gives() -> None:
    for value in _addresses(20_000):
        normal, anonymised = _by_ipaddress(value)
        assert anonymise_ip(value) == anonymised, value
        if normal is None:
            with pytest.raises(ValueError):
                normalise_ip(value)
        else:
            assert normalise_ip(value) == normal, value
    assert anonymise_ip(None) is None
