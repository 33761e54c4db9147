"""console_auth_tokens: one-time tokens of console URLs

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_auth_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('console_type', sa.String(length=255), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('expires', sa.Integer(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    with op.batch_alter_table('console_auth_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_auth_tokens_instance_uuid'), ['instance_uuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_auth_tokens_expires'), ['expires'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_auth_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_auth_tokens_expires'))
        batch_op.drop_index(batch_op.f('ix_console_auth_tokens_instance_uuid'))
    op.drop_table('console_auth_tokens')
