"""SQLModel tables and the data models at the borders (what comes in, what goes out)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Status(str, enum.Enum):
    """Where a comment stands; only approved comments are ever public."""

    pending = "pending"
    approved = "approved"
    spam = "spam"
    trash = "trash"


STATUSES = tuple(s.value for s in Status)


class Page(SQLModel, table=True):
    """A thread, keyed by the site's name for it (usually the article's path)."""

    __tablename__ = "page"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=sa.Text, nullable=False)
    # The key can be 1024 characters of any script: too long for a PostgreSQL btree,
    # so uniqueness and lookups go through its SHA-256.
    key_hash: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    closed: bool = Field(default=False, nullable=False)
    # Bumped whenever the public view of the thread changes: ETags and caches key on it.
    thread_version: int = Field(default=0, nullable=False)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)


class Comment(SQLModel, table=True):
    """One reader's comment, with its moderation state."""

    __tablename__ = "comment"
    __table_args__ = (
        sa.Index("ix_comment_thread", "page_id", "status", "created_at", "id"),
        sa.Index("ix_comment_queue", "status", "created_at", "id"),
        sa.Index("ix_comment_email_key", "email_key", "page_id"),
        sa.Index("ix_comment_parent", "parent_id"),
        sa.Index("ix_comment_personal_until", "personal_until"),
        sa.Index("ix_comment_status_updated", "status", "updated_at"),
        sa.Index("ix_comment_url_host", "url_host"),
        sa.Index("ix_comment_ip_key", "ip_key"),
        sa.Index("ix_comment_body_hash", "body_hash", "created_at"),
        sa.Index("ix_comment_origin_key", "origin_key", unique=True),
        sa.Index("ix_comment_origin_parent_key", "origin_parent_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    page_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("page.id", ondelete="CASCADE"), nullable=False)
    )
    parent_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("comment.id", ondelete="SET NULL"), nullable=True
        ),
    )
    status: str = Field(sa_type=sa.String(16), nullable=False)
    author: str = Field(sa_type=sa.Text, nullable=False)
    email: str = Field(sa_type=sa.Text, nullable=False)
    # Keyed hash (HMAC) of the normalised address: lookups never use the address itself.
    email_key: str = Field(sa_type=sa.String(64), nullable=False)
    url: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    body: str = Field(sa_type=sa.Text, nullable=False)
    body_html: str = Field(sa_type=sa.Text, nullable=False)
    body_hash: str = Field(sa_type=sa.String(64), nullable=False)
    policy_version: int = Field(nullable=False)
    ip: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    # Keyed hash of the full address, kept (with the full address and the user agent) only
    # until personal_until; then the periodic task anonymises the row.
    ip_key: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    personal_until: datetime | None = Field(default=None, sa_type=sa.DateTime, nullable=True)
    user_agent: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    spam_score: float = Field(default=0.0, nullable=False)
    spam_reasons: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    # What the spam filter learned from a moderator's verdict on this comment ("spam", "ham"),
    # so a reversed verdict is unlearned rather than counted twice.
    learned: str | None = Field(default=None, sa_type=sa.String(8), nullable=True)
    # The website's host, for the spam history of a site that was marked spam before.
    url_host: str | None = Field(default=None, sa_type=sa.String(255), nullable=True)
    # Where an imported comment came from (a hash of origin, site and id: a second import of the
    # same file finds it), and its parent's, until that parent is found.
    origin_key: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    origin_parent_key: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
    updated_at: datetime = Field(sa_type=sa.DateTime, nullable=False)


class ModerationRules(SQLModel, table=True):
    """The moderators' live rules (one row, id 1); defaults apply until the first PUT."""

    __tablename__ = "moderation_rules"

    id: int | None = Field(default=None, primary_key=True)
    moderation: str = Field(sa_type=sa.String(16), nullable=False)
    moderation_words: list[str] = Field(sa_type=sa.JSON, nullable=False)
    blocked_words: list[str] = Field(sa_type=sa.JSON, nullable=False)
    max_links: int = Field(nullable=False)
    auto_approve_known_authors: bool = Field(nullable=False)
    flood_seconds: int = Field(nullable=False)
    edit_window_seconds: int = Field(nullable=False)
    spam_threshold: float = Field(nullable=False, sa_column_kwargs={"server_default": "0.5"})
    hold_threshold: float = Field(nullable=False, sa_column_kwargs={"server_default": "0.2"})
    updated_at: datetime = Field(sa_type=sa.DateTime, nullable=False)


class ModeratorToken(SQLModel, table=True):
    """A moderator's bearer token; only its SHA-256 is stored."""

    __tablename__ = "moderator_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=sa.String(100), nullable=False, unique=True)
    token_hash: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
    last_used_at: datetime | None = Field(default=None, sa_type=sa.DateTime, nullable=True)


class ModerationAction(SQLModel, table=True):
    """Every moderator (or author) action as an append-only row: who, when, what, from, to."""

    __tablename__ = "moderation_action"
    __table_args__ = (
        sa.Index("ix_moderation_action_comment", "comment_id"),
        sa.Index("ix_moderation_action_created", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
    actor: str = Field(sa_type=sa.String(100), nullable=False)
    action: str = Field(sa_type=sa.String(32), nullable=False)
    # No foreign key: the record outlives a comment deleted for good.
    comment_id: int | None = Field(default=None, nullable=True)
    from_value: str | None = Field(default=None, sa_type=sa.Text, nullable=True)
    to_value: str | None = Field(default=None, sa_type=sa.Text, nullable=True)


class RateEvent(SQLModel, table=True):
    """One accepted comment per keyed client address or email: the shared rate limit's memory."""

    __tablename__ = "rate_event"
    __table_args__ = (sa.Index("ix_rate_event_key", "key", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=sa.String(80), nullable=False)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)


class Secret(SQLModel, table=True):
    """Keys the service makes for itself on first start (signing of tokens and cursors)."""

    __tablename__ = "secret"

    name: str = Field(sa_type=sa.String(64), primary_key=True)
    value: str = Field(sa_type=sa.Text, nullable=False)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)


class SpamFeature(SQLModel, table=True):
    """The text model: how often a feature was seen in comments judged spam and not spam."""

    __tablename__ = "spam_feature"

    feature: str = Field(sa_type=sa.String(64), primary_key=True)
    spam: int = Field(nullable=False)
    ham: int = Field(nullable=False)


class SpamTotals(SQLModel, table=True):
    """How many comments the text model learned of each class (one row, id 1)."""

    __tablename__ = "spam_totals"

    id: int | None = Field(default=None, primary_key=True)
    spam_docs: int = Field(nullable=False)
    ham_docs: int = Field(nullable=False)


class Lease(SQLModel, table=True):
    """A named job that one worker at a time may run (the periodic maintenance)."""

    __tablename__ = "lease"

    name: str = Field(sa_type=sa.String(64), primary_key=True)
    holder: str = Field(sa_type=sa.String(100), nullable=False)
    until: datetime = Field(sa_type=sa.DateTime, nullable=False)


# ---- data models at the borders ------------------------------------------------------


class CommentIn(SQLModel):
    """A validated new comment, as the form or the JSON API sent it."""

    page: str
    body: str
    author: str
    email: str
    url: str | None = None
    parent: int | None = None


class Rules(SQLModel):
    """The moderation rules as the admin API shows and accepts them."""

    moderation: str = "all"
    moderation_words: list[str] = Field(default_factory=list)
    blocked_words: list[str] = Field(default_factory=list)
    max_links: int = 2
    auto_approve_known_authors: bool = False
    flood_seconds: int = 15
    edit_window_seconds: int = 900
    spam_threshold: float = 0.5
    hold_threshold: float = 0.2


def public_view(comment: dict[str, Any]) -> dict[str, Any]:
    """The public fields of a comment, and nothing else (an allowlist by construction)."""
    return {
        "id": comment["id"],
        "parent": comment["parent"],
        "author": comment["author"],
        "url": comment["url"],
        "body_html": comment["body_html"],
        "created_at": comment["created_at"],
    }


def full_view(comment: dict[str, Any]) -> dict[str, Any]:
    """Everything a moderator sees of a comment."""
    return {
        **public_view(comment),
        "page": comment["page"],
        "status": comment["status"],
        "email": comment["email"],
        "ip": comment["ip"],
        "user_agent": comment["user_agent"],
        "spam_score": comment["spam_score"],
        "spam_reasons": comment["spam_reasons"],
        "updated_at": comment["updated_at"],
    }


# ---- notifications: the outbox, webhooks, reply notices ------------------------------


class OutboxEvent(SQLModel, table=True):
    """One delivery to make (a mail or a webhook request), written in the same transaction as the
    change that caused it; a worker claims it, delivers it, and retries it with backoff."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_due", "status", "next_attempt_at"),
        sa.Index("ix_outbox_claimed_by", "claimed_by"),
        sa.Index("ix_outbox_comment", "comment_id", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Shared by every delivery of one event: receivers de-duplicate on it.
    event_id: str = Field(sa_type=sa.String(32), nullable=False)
    kind: str = Field(sa_type=sa.String(32), nullable=False)
    # Whom it goes to: a webhook's id, a moderator's keyed-hash prefix, or nothing.
    target: str | None = Field(default=None, sa_type=sa.String(64), nullable=True)
    # No foreign key: an event outlives the comment it is about (comment.deleted).
    comment_id: int | None = Field(default=None, nullable=True)
    # Never an email or client address: workers look those up when they send.
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON, nullable=False)
    status: str = Field(sa_type=sa.String(16), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
    claimed_by: str | None = Field(default=None, sa_type=sa.String(100), nullable=True)
    claimed_until: datetime | None = Field(default=None, sa_type=sa.DateTime, nullable=True)
    # What went wrong last, without personal data ("HTTP 500", "SMTPServerDisconnected").
    last_error: str | None = Field(default=None, sa_type=sa.String(200), nullable=True)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=sa.DateTime, nullable=True)


class Webhook(SQLModel, table=True):
    """A receiver of JSON events that a moderator registered. The secret is kept as given,
    because signing each request needs it; the admin API never shows it again."""

    __tablename__ = "webhook"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_type=sa.Text, nullable=False)
    events: list[str] = Field(default_factory=list, sa_type=sa.JSON, nullable=False)
    secret: str = Field(sa_type=sa.Text, nullable=False)
    created_by: str = Field(sa_type=sa.String(100), nullable=False)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)


class NoticeSubscription(SQLModel, table=True):
    """A reader's address that asked for reply notices: double opt-in, one row per address."""

    __tablename__ = "notice_subscription"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_type=sa.Text, nullable=False)  # encrypted, like comment.email
    email_key: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
    requested_at: datetime | None = Field(default=None, sa_type=sa.DateTime, nullable=True)
    confirmed_at: datetime | None = Field(default=None, sa_type=sa.DateTime, nullable=True)
    unsubscribed_at: datetime | None = Field(default=None, sa_type=sa.DateTime, nullable=True)


class ReplyWatch(SQLModel, table=True):
    """A comment whose author asked to hear about approved replies to it."""

    __tablename__ = "reply_watch"
    __table_args__ = (sa.Index("ix_reply_watch_subscription", "subscription_id"),)

    comment_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("comment.id", ondelete="CASCADE"), primary_key=True,
                            autoincrement=False)
    )
    subscription_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("notice_subscription.id", ondelete="CASCADE"),
                            nullable=False)
    )
    created_at: datetime = Field(sa_type=sa.DateTime, nullable=False)


class MailLinkUse(SQLModel, table=True):
    """A one-click moderation link that was used: each works once (kept until it would have expired)."""

    __tablename__ = "mail_link_use"
    __table_args__ = (sa.Index("ix_mail_link_use_expires", "expires_at"),)

    digest: str = Field(sa_type=sa.String(64), primary_key=True)
    used_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
    expires_at: datetime = Field(sa_type=sa.DateTime, nullable=False)
