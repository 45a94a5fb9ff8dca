"""privacy: emails encrypted at rest, personal data with an expiry, the maintenance lease

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Existing plain addresses are encrypted with the configured email key (the key file is
made on first start if there is none) and their lookup hashes recomputed with it; full
client addresses kept so far are marked to be anonymised by the next maintenance run.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _keyring():  # type: ignore[no-untyped-def]
    ring = context.config.attributes.get("keyring")
    if ring is None:  # alembic run by hand: use the environment's settings
        from comments.db import key_source
        from comments.settings import Settings

        ring = key_source(Settings(), create=True).ring()
    return ring


def upgrade() -> None:
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ip_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("personal_until", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_comment_personal_until", ["personal_until"], unique=False)
        batch_op.create_index("ix_comment_status_updated", ["status", "updated_at"], unique=False)
    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    conn = op.get_bind()
    comment = sa.table("comment", sa.column("id", sa.Integer), sa.column("email", sa.Text),
                       sa.column("email_key", sa.String), sa.column("ip", sa.String),
                       sa.column("personal_until", sa.DateTime))
    plain = conn.execute(sa.select(comment.c.id, comment.c.email).where(
        sa.not_(comment.c.email.like("e1.%")), comment.c.email != "")).all()
    if plain:
        ring = _keyring()
        for row in plain:
            conn.execute(comment.update().where(comment.c.id == row.id).values(
                email=ring.encrypt(row.email), email_key=ring.lookup("email:" + row.email.casefold())))
        context.config.attributes["plaintext_removed"] = True
    now = datetime.now(UTC).replace(tzinfo=None)
    conn.execute(comment.update().where(comment.c.ip.is_not(None)).values(personal_until=now))


def downgrade() -> None:
    op.drop_table("lease")
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.drop_index("ix_comment_status_updated")
        batch_op.drop_index("ix_comment_personal_until")
        batch_op.drop_column("personal_until")
        batch_op.drop_column("ip_key")
