"""Webhook requests: HMAC-SHA256 signatures and refusing private addresses; the only module that
makes outbound HTTP requests (through httpx)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..settings import Network

SIGNATURE_HEADER = "X-Comments-Signature"
EVENT_HEADER = "X-Comments-Event"
DELIVERY_HEADER = "X-Comments-Delivery"
TIMEOUT_SECONDS = 10.0
MAX_URL = 2000
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class WebhookError(Exception):
    """A failed request, described without personal data; permanent when retrying cannot help."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256, keyed with the webhook's secret, of "TIMESTAMP." followed by the body."""
    return hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Comments-Signature value: t=TIMESTAMP,v1=HEX."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """What a receiver does: a v1 signature matches and the timestamp is recent (replays fail)."""
    parts = [p.strip().partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit() or abs(now - int(stamps[0])) > tolerance:
        return False
    expected = signature(secret, int(stamps[0]), body)
    return any(k == "v1" and hmac.compare_digest(v, expected) for k, _, v in parts)


def _unwrap(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def refused(address: Address, allowed: Sequence[Network]) -> bool:
    """True for loopback, link-local, private, shared, reserved and multicast addresses, unless allowed."""
    if any(address in net for net in allowed):
        return False
    plain = _unwrap(address)
    if any(plain in net for net in allowed):
        return False
    return not plain.is_global or plain.is_multicast or plain.is_unspecified or plain.is_reserved


def url_problem(url: object, allowed: Sequence[Network]) -> str | None:
    """Why a webhook URL cannot be used (checked when a moderator adds it), or None."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return f"must be an http or https URL of at most {MAX_URL} characters"
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http or https URL"
    if parts.username or parts.password:
        return "must not contain a user name or password"
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and refused(literal, allowed):
        return "points at a loopback, link-local or private address (see COMMENTS_WEBHOOK_ALLOWED_NETWORKS)"
    if literal is None and (host == "localhost" or host.endswith(".localhost")) and not any(
        ipaddress.ip_address("127.0.0.1") in net for net in allowed
    ):
        return "points at a loopback, link-local or private address (see COMMENTS_WEBHOOK_ALLOWED_NETWORKS)"
    return None


def resolve(host: str, port: int, allowed: Sequence[Network]) -> str:
    """The address to connect to: every address the name has must be allowed (no private ones)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WebhookError("host name does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise WebhookError("host name does not resolve")
    if any(refused(a, allowed) for a in addresses):
        raise WebhookError("refused: the host resolves to a loopback, link-local or private address", permanent=True)
    return str(addresses[0])


def post(url: str, secret: str, body: bytes, event: str, delivery: str, timestamp: int,
         allowed: Sequence[Network], timeout: float = TIMEOUT_SECONDS) -> int:
    """POST one signed event to the address checked by resolve() (so a name cannot change to a private
    address between the check and the request); no redirects followed; the status, or WebhookError."""
    problem = url_problem(url, allowed)
    if problem:
        raise WebhookError(f"refused: the URL {problem}", permanent=True)
    parts = urlsplit(url)
    host = parts.hostname or ""
    address = resolve(host, parts.port or (443 if parts.scheme == "https" else 80), allowed)
    shown = f"[{address}]" if ":" in address else address
    port = f":{parts.port}" if parts.port else ""
    target = urlunsplit((parts.scheme, shown + port, parts.path or "/", parts.query, ""))
    headers = {
        "Host": (f"[{host}]" if ":" in host else host) + port,
        "Content-Type": "application/json",
        "User-Agent": "comments-webhook/1",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery,
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            response = client.post(target, content=body, headers=headers, extensions=extensions)
    except httpx.TimeoutException:
        raise WebhookError("timeout") from None
    except httpx.HTTPError as exc:
        raise WebhookError(type(exc).__name__) from None
    if not 200 <= response.status_code < 300:
        raise WebhookError(f"HTTP {response.status_code}")
    return response.status_code
