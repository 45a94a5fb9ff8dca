"""Email addresses at rest: AES-GCM encryption and keyed lookup hashes, with keys kept outside the database.

This is the only module that imports `cryptography`. A stored address looks like
`e1.<key id>.<base64url(nonce | ciphertext | tag)>`; the key id names the key (it is
derived from the key by a one-way hash and reveals nothing about it), so several keys
can be in use while `comments keys rotate` re-encrypts rows under the newest one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "e1"
_AAD = b"comments:email:v1"


class KeyProblem(Exception):
    """The email key is missing, malformed or does not match the database; the message says how to fix it."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key() -> str:
    """A fresh 256-bit key, as the text COMMENTS_EMAIL_KEY and the key file hold."""
    return _b64(secrets.token_bytes(32))


def parse_keys(text: str, where: str) -> list[bytes]:
    """Keys from comma- or newline-separated base64url text (newest first)."""
    keys = []
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    for part in ",".join(lines).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            key = _unb64(part)
        except (ValueError, TypeError):
            key = b""
        if len(key) != 32:
            raise KeyProblem(f"{where}: each key must be 32 bytes in base64url (make one with `comments keys new`)")
        keys.append(key)
    if not keys:
        raise KeyProblem(f"{where}: no key in it")
    return keys


@dataclass(frozen=True)
class Keyring:
    """The email keys in force: the first encrypts, all of them decrypt and look up."""

    keys: tuple[bytes, ...]
    # Built once per keyring (in __post_init__): an AESGCM object and an HMAC key per key.
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)
    _lookup_keys: list[bytes] = field(init=False, repr=False, compare=False)

    @staticmethod
    def key_id(key: bytes) -> str:
        return hashlib.sha256(b"comments-key-id:" + key).hexdigest()[:10]

    @cached_property
    def current_id(self) -> str:
        return self.key_id(self.keys[0])

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.key_id(k) for k in self.keys)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ciphers", {self.key_id(k): AESGCM(k) for k in self.keys})
        object.__setattr__(self, "_lookup_keys", [self._lookup_key(k) for k in self.keys])

    def encrypt(self, plain: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._ciphers[self.current_id].encrypt(nonce, plain.encode("utf-8"), _AAD)
        return f"{PREFIX}.{self.current_id}.{_b64(nonce + sealed)}"

    def decrypt(self, stored: str) -> str:
        """The address; raises KeyProblem for a key this ring does not hold or a damaged value."""
        if not stored.startswith(PREFIX + "."):
            return stored  # erased (empty) or written before encryption existed
        try:
            _, kid, blob = stored.split(".", 2)
            cipher = self._ciphers[kid]
            raw = _unb64(blob)
            return cipher.decrypt(raw[:12], raw[12:], _AAD).decode("utf-8")
        except KeyError:
            raise KeyProblem(f"an address is encrypted with key {kid}, which is not configured") from None
        except (ValueError, InvalidTag):
            raise KeyProblem("an encrypted address does not decrypt: wrong key or damaged data") from None

    def is_current(self, stored: str) -> bool:
        return stored.startswith(f"{PREFIX}.{self.current_id}.")

    def _lookup_key(self, key: bytes) -> bytes:
        return hmac.new(key, b"comments:lookup:v1", hashlib.sha256).digest()

    def lookup(self, value: str) -> str:
        """The keyed hash under the current key (what new rows store)."""
        return hmac.new(self._lookup_keys[0], value.encode("utf-8"), hashlib.sha256).hexdigest()

    def lookups(self, value: str) -> list[str]:
        """The keyed hashes under every key (rows not yet rotated still match)."""
        data = value.encode("utf-8")
        return [hmac.new(k, data, hashlib.sha256).hexdigest() for k in self._lookup_keys]


class KeySource:
    """Where the keyring comes from: COMMENTS_EMAIL_KEY, or a key file that running workers re-read
    when it changes (so `comments keys rotate` needs no restart)."""

    RECHECK_SECONDS = 5.0

    def __init__(self, env_keys: str | None, path: Path) -> None:
        self.env_keys = env_keys
        self.path = path
        self._ring: Keyring | None = None
        self._stamp: float | None = None
        self._checked: float | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return "COMMENTS_EMAIL_KEY" if self.env_keys else f"the key file {self.path}"

    def exists(self) -> bool:
        return bool(self.env_keys) or self.path.exists()

    def ring(self) -> Keyring:
        """The keyring, re-read from the file at most every few seconds when the file changed."""
        if self.env_keys:
            if self._ring is None:
                self._ring = Keyring(tuple(parse_keys(self.env_keys, "COMMENTS_EMAIL_KEY")))
            return self._ring
        now = time.monotonic()
        if self._ring is not None and self._checked is not None and now - self._checked < self.RECHECK_SECONDS:
            return self._ring
        with self._lock:
            self._checked = now
            try:
                stamp = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                raise KeyProblem(f"the email key file {self.path} is missing: restore it, or set "
                                 "COMMENTS_EMAIL_KEY_FILE to where it is") from None
            if self._ring is None or stamp != self._stamp:
                self._ring = Keyring(tuple(parse_keys(self.path.read_text(), str(self.path))))
                self._stamp = stamp
            return self._ring

    def refresh(self) -> Keyring:
        """Re-read now (a value named a key id this process did not know yet)."""
        self._checked = None
        self._stamp = None
        return self.ring()

    def create_file(self) -> None:
        """Write a new key file readable by its owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("# comments: email encryption keys, newest first. Back this file up apart from "
                         "the database; without it the stored addresses cannot be read.\n" + new_key() + "\n")

    def add_key(self) -> str:
        """Put a new key first in the key file (atomically, mode 0600); return its id."""
        if self.env_keys:
            raise KeyProblem("the keys come from COMMENTS_EMAIL_KEY: put a new key first in it "
                             "(`comments keys new` makes one), keep the old ones after it, then run "
                             "`comments keys rotate` again")
        old = self.path.read_text()
        key = new_key()
        lines = old.splitlines()
        comments = [line for line in lines if line.startswith("#")]
        rest = [line for line in lines if line.strip() and not line.startswith("#")]
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join([*comments, key, *rest]) + "\n")
        os.replace(tmp, self.path)
        return Keyring.key_id(_unb64(key))
