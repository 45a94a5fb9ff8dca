"""Tokens, signing, keyed hashes and the client address behind trusted proxies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import orjson

from .errors import ApiError
from .settings import Network


def new_token() -> str:
    """A fresh random token (moderator tokens, secrets): 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of a moderator token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Keys:
    """Keys derived from the service's secret; each use gets its own."""

    master: bytes

    def _derive(self, purpose: str) -> bytes:
        return hmac.new(self.master, purpose.encode(), hashlib.sha256).digest()

    def lookup(self, kind: str, value: str) -> str:
        """A keyed hash for lookups (email, address): never the plain value in an index."""
        key = self._derive("lookup")
        return hmac.new(key, f"{kind}:{value}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def sign(self, purpose: str, payload: object) -> str:
        """payload as an opaque, signed, URL-safe string."""
        body = _b64(orjson.dumps(payload))
        mac = hmac.new(self._derive(purpose), body.encode(), hashlib.sha256).digest()[:16]
        return f"{body}.{_b64(mac)}"

    def unsign(self, purpose: str, token: str) -> object:
        """The payload of a string made by sign(), or ValueError."""
        if not isinstance(token, str) or len(token) > 2048 or token.count(".") != 1:
            raise ValueError("malformed")
        body, mac = token.split(".")
        try:
            expected = hmac.new(self._derive(purpose), body.encode("ascii"), hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(expected, _unb64(mac)):
                raise ValueError("bad signature")
            return orjson.loads(_unb64(body))
        except (UnicodeEncodeError, ValueError, orjson.JSONDecodeError) as exc:
            raise ValueError("malformed") from exc

    def unsign_fields(self, purpose: str, token: str, count: int) -> tuple[object, ...]:
        """The items of a list of ``count`` made by sign(), or ValueError."""
        payload = self.unsign(purpose, token)
        if not isinstance(payload, list) or len(payload) != count:
            raise ValueError("malformed")
        return tuple(payload)

    def edit_token(self, comment_id: int) -> str:
        """The author's edit token for one comment (the window is checked on use)."""
        mac = hmac.new(self._derive("edit"), str(comment_id).encode(), hashlib.sha256).digest()
        return _b64(mac)

    def check_edit_token(self, comment_id: int, token: str | None) -> bool:
        if not token or len(token) > 100:
            return False
        return hmac.compare_digest(self.edit_token(comment_id), token)


def encode_cursor(keys: Keys, values: Sequence[object]) -> str:
    return keys.sign("cursor", list(values))


def decode_cursor(keys: Keys, cursor: str, size: int) -> list[object]:
    """The values inside a cursor made by encode_cursor, or a 400."""
    try:
        values = keys.unsign("cursor", cursor)
    except ValueError:
        raise ApiError(400, "cursor: not a cursor this service made") from None
    if not isinstance(values, list) or len(values) != size:
        raise ApiError(400, "cursor: not a cursor this service made")
    return values


def decode_id_cursor(keys: Keys, cursor: str | None) -> int | None:
    """The id inside a cursor of one id made by encode_cursor (None without a cursor), or a 400."""
    if cursor is None:
        return None
    (value,) = decode_cursor(keys, cursor, 1)
    if not isinstance(value, int):
        raise ApiError(400, "cursor: not a cursor this service made")
    return value


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    """The reader's address: the peer, or the nearest untrusted X-Forwarded-For hop behind trusted proxies."""
    address = _parse_ip(peer)
    if address is None or not trusted or not forwarded_for:
        return str(address) if address is not None else peer
    hops = [h.strip() for h in forwarded_for.split(",")][::-1]
    current = address
    for hop in hops:
        if not any(current in net for net in trusted):
            break
        candidate = _parse_ip(hop)
        if candidate is None:
            break
        current = candidate
    return str(current)


def _parse_ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


# An IPv4 address as ipaddress writes it (each part 0 to 255, no leading zeros): its /24 is
# the same text with the last part made 0, and it is its own normal form: ipaddress would
# take 5 to 15 us to say so.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def normalise_ip(value: str) -> str:
    """An IP address as ipaddress writes it; ValueError when the text is not one."""
    if _CANONICAL_IPV4.fullmatch(value):
        return value
    return str(ipaddress.ip_address(value))


def anonymise_ip(value: str | None) -> str | None:
    """The address with its host part zeroed: IPv4 to its /24, IPv6 to its /48."""
    if value and _CANONICAL_IPV4.fullmatch(value):
        return value[:value.rindex(".")] + ".0"
    address = _parse_ip(value)
    if address is None:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def safe_redirect(target: str | None, origins: Sequence[str], fragment: str) -> str | None:
    """target with its fragment replaced, if it lies on a configured origin; else None."""
    if not target or not origins or len(target) > 2048:
        return None
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target):
        return None
    try:
        parts = urlsplit(target.replace("\\", "/"))
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii").lower()
    except (ValueError, UnicodeError):
        return None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not host or parts.username or parts.password:
        return None
    default = 443 if scheme == "https" else 80
    netloc = host if port in (None, default) else f"{host}:{port}"
    if f"{scheme}://{netloc}" not in origins:
        return None
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, fragment))
