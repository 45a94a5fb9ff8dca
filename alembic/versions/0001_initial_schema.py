"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 20:49:19.848823
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('moderation_action',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('comment_id', sa.Integer(), nullable=True),
    sa.Column('from_value', sa.Text(), nullable=True),
    sa.Column('to_value', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('moderation_action', schema=None) as batch_op:
        batch_op.create_index('ix_moderation_action_comment', ['comment_id'], unique=False)
        batch_op.create_index('ix_moderation_action_created', ['created_at'], unique=False)

    op.create_table('moderation_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('moderation', sa.String(length=16), nullable=False),
    sa.Column('moderation_words', sa.JSON(), nullable=False),
    sa.Column('blocked_words', sa.JSON(), nullable=False),
    sa.Column('max_links', sa.Integer(), nullable=False),
    sa.Column('auto_approve_known_authors', sa.Boolean(), nullable=False),
    sa.Column('flood_seconds', sa.Integer(), nullable=False),
    sa.Column('edit_window_seconds', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('moderator_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('page',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('closed', sa.Boolean(), nullable=False),
    sa.Column('thread_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_table('rate_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rate_event', schema=None) as batch_op:
        batch_op.create_index('ix_rate_event_key', ['key', 'created_at'], unique=False)

    op.create_table('secret',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('comment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('page_id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('author', sa.Text(), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('email_key', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('spam_score', sa.Float(), nullable=False),
    sa.Column('spam_reasons', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['page_id'], ['page.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['comment.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.create_index('ix_comment_email_key', ['email_key', 'page_id'], unique=False)
        batch_op.create_index('ix_comment_parent', ['parent_id'], unique=False)
        batch_op.create_index('ix_comment_queue', ['status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_comment_thread', ['page_id', 'status', 'created_at', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.drop_index('ix_comment_thread')
        batch_op.drop_index('ix_comment_queue')
        batch_op.drop_index('ix_comment_parent')
        batch_op.drop_index('ix_comment_email_key')

    op.drop_table('comment')
    op.drop_table('secret')
    with op.batch_alter_table('rate_event', schema=None) as batch_op:
        batch_op.drop_index('ix_rate_event_key')

    op.drop_table('rate_event')
    op.drop_table('page')
    op.drop_table('moderator_token')
    op.drop_table('moderation_rules')
    with op.batch_alter_table('moderation_action', schema=None) as batch_op:
        batch_op.drop_index('ix_moderation_action_created')
        batch_op.drop_index('ix_moderation_action_comment')

    op.drop_table('moderation_action')
