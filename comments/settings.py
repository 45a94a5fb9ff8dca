"""One Settings object, read from COMMENTS_* environment variables and .env, validated at start."""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?\s*$", re.I)
_PERIOD = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_ADDRESS = re.compile(r"[^@\s<>,]+@[^@\s<>,]+\.[^@\s<>,]+")
_MAILBOX = re.compile(r"(?:[^<>\r\n]*<" + _ADDRESS.pattern + ">|" + _ADDRESS.pattern + ")")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: object) -> object:
    """Comma-separated addresses or networks as a tuple of networks (a ValueError names the bad one)."""
    items = _split(value)
    if isinstance(items, (list, tuple)):
        try:
            return tuple(ipaddress.ip_network(str(i), strict=False) for i in items)
        except ValueError as exc:
            raise ValueError(f"not an address or network: {exc}") from None
    return items


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the service; the README's configuration table lists each one."""

    model_config = SettingsConfigDict(
        env_prefix="COMMENTS_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite:///comments.db"
    site_origins: Annotated[tuple[str, ...], NoDecode] = ()
    rate_limit: str = "5/minute"
    max_body_chars: int = Field(10_000, ge=1, le=1_000_000)
    max_request_bytes: int = Field(65_536, ge=1024, le=16 * 1024 * 1024)
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode] = ()
    secret_key: str | None = Field(None, min_length=16)
    sqlite_synchronous: str = "FULL"
    db_timeout_seconds: float = Field(10.0, gt=0, le=300)
    client_timeout_seconds: float = Field(10.0, gt=0, le=300)
    email_key: str | None = None
    email_key_file: str | None = None
    ip_retention_days: int = Field(0, ge=0, le=365)
    retention_days: int = Field(30, ge=0, le=36500)
    maintenance_seconds: int = Field(300, ge=5, le=86400)
    form_token_required: bool = False
    public_url: str | None = None
    demo: bool = False
    log_level: str = "INFO"
    # Notifications: mail to moderators and readers, webhooks, and the outbox that delivers them.
    mail_from: str | None = None
    moderator_emails: Annotated[tuple[str, ...], NoDecode] = ()
    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_security: str = "starttls"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    digest_minutes: int = Field(0, ge=0, le=7 * 24 * 60)
    mail_link_hours: int = Field(72, ge=1, le=30 * 24)
    mail_templates: str | None = None
    outbox_max_tries: int = Field(8, ge=1, le=50)
    outbox_worker: bool = True
    webhook_allowed_networks: Annotated[tuple[Network, ...], NoDecode] = ()

    @field_validator("site_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        origins = _split(value)
        if isinstance(origins, (list, tuple)):
            cleaned = []
            for origin in origins:
                if not re.fullmatch(r"https?://[^/\s?#]+", str(origin)):
                    raise ValueError(f"{origin!r} is not an origin like https://blog.example")
                cleaned.append(str(origin).rstrip("/").lower())
            return tuple(cleaned)
        return origins

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        return _networks(value)

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        if not _RATE.match(value):
            raise ValueError("use COUNT/PERIOD, for example 5/minute, 100/hour or 10/30second")
        return value

    @field_validator("sqlite_synchronous")
    @classmethod
    def _sync(cls, value: str) -> str:
        if value.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError("one of OFF, NORMAL, FULL, EXTRA")
        return value.upper()

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL like sqlite:///comments.db") from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError("only sqlite:// and postgresql+psycopg:// URLs are supported")
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"https?://[^\s?#]+", value):
            raise ValueError("not an http(s) URL like https://comments.example")
        return value.rstrip("/") if value else None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str | None) -> str | None:
        if value is not None and not _MAILBOX.fullmatch(value.strip()):
            raise ValueError("not an address like comments@blog.example or Blog <comments@blog.example>")
        return value.strip() if value else None

    @field_validator("moderator_emails", mode="before")
    @classmethod
    def _moderators(cls, value: object) -> object:
        items = _split(value)
        if isinstance(items, (list, tuple)):
            for item in items:
                if not _ADDRESS.fullmatch(str(item)):
                    raise ValueError(f"{item!r} is not an email address")
            return tuple(str(i) for i in items)
        return items

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = value.strip() if value else None
        if value and not (info.data.get("mail_from") and info.data.get("public_url")):
            raise ValueError("mail needs COMMENTS_MAIL_FROM (the sender) and COMMENTS_PUBLIC_URL (for its links)")
        return value

    @field_validator("smtp_security")
    @classmethod
    def _smtp_security(cls, value: str) -> str:
        if value.lower() not in {"starttls", "tls", "none"}:
            raise ValueError("one of starttls, tls, none")
        return value.lower()

    @field_validator("mail_templates")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        if value and not Path(value).is_dir():
            raise ValueError(f"{value!r} is not a folder")
        return value or None

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _allowed(cls, value: object) -> object:
        return _networks(value)

    @cached_property
    def mail_port(self) -> int:
        """The SMTP port: as configured, else the usual one for the security mode."""
        return self.smtp_port or {"tls": 465, "starttls": 587}.get(self.smtp_security, 25)

    @cached_property
    def key_file(self) -> Path:
        """Where the email key file lives: as configured, else beside the SQLite file, else here."""
        if self.email_key_file:
            return Path(self.email_key_file)
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database + ".email-key")
        return Path("comments-email.key")

    @cached_property
    def rate(self) -> tuple[int, int]:
        """The rate limit as (comments, seconds)."""
        match = _RATE.match(self.rate_limit)
        assert match is not None
        count, multiple, unit = match.groups()
        return int(count), int(multiple or 1) * _PERIOD[unit.lower()]


def describe_error(error: ValidationError) -> str:
    """One line that names the variable and what is wrong with it."""
    parts = []
    for item in error.errors():
        name = "COMMENTS_" + str(item["loc"][0]).upper() if item["loc"] else "COMMENTS_*"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}")
    return "; ".join(parts)
