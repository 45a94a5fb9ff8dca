"""spam filter: the text model's counts, learned verdicts, thresholds in the rules

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spam_feature",
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("spam", sa.Integer(), nullable=False),
        sa.Column("ham", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("feature"),
    )
    op.create_table(
        "spam_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spam_docs", sa.Integer(), nullable=False),
        sa.Column("ham_docs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("moderation_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spam_threshold", sa.Float(), server_default="0.5", nullable=False))
        batch_op.add_column(sa.Column("hold_threshold", sa.Float(), server_default="0.2", nullable=False))
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("learned", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("url_host", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_comment_url_host", ["url_host"], unique=False)
        batch_op.create_index("ix_comment_ip_key", ["ip_key"], unique=False)
        batch_op.create_index("ix_comment_body_hash", ["body_hash", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.drop_index("ix_comment_body_hash")
        batch_op.drop_index("ix_comment_ip_key")
        batch_op.drop_index("ix_comment_url_host")
        batch_op.drop_column("url_host")
        batch_op.drop_column("learned")
    with op.batch_alter_table("moderation_rules", schema=None) as batch_op:
        batch_op.drop_column("hold_threshold")
        batch_op.drop_column("spam_threshold")
    op.drop_table("spam_totals")
    op.drop_table("spam_feature")
