"""imports: each imported comment's origin, so importing the same file twice changes nothing

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("origin_parent_key", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_comment_origin_key", ["origin_key"], unique=True)
        batch_op.create_index("ix_comment_origin_parent_key", ["origin_parent_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.drop_index("ix_comment_origin_parent_key")
        batch_op.drop_index("ix_comment_origin_key")
        batch_op.drop_column("origin_parent_key")
        batch_op.drop_column("origin_key")
