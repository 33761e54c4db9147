"""registered_limits and limits: Keystone's unified limits

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
        'registered_limits',
        sa.Column('internal_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('service_id', sa.String(length=64), nullable=False),
        sa.Column('region_id', sa.String(length=255), nullable=True),
        sa.Column('resource_name', sa.String(length=255), nullable=False),
        sa.Column('default_limit', sa.Integer(), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('internal_id'),
        sa.UniqueConstraint('id'))
    with op.batch_alter_table('registered_limits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registered_limits_service_id'), ['service_id'], unique=False)
    op.create_table(
        'limits',
        sa.Column('internal_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('project_id', sa.String(length=64), nullable=True),
        sa.Column('domain_id', sa.String(length=64), nullable=True),
        sa.Column('registered_limit_id', sa.String(length=64), nullable=False),
        sa.Column('resource_limit', sa.Integer(), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['registered_limit_id'], ['registered_limits.id']),
        sa.PrimaryKeyConstraint('internal_id'),
        sa.UniqueConstraint('id'))
    with op.batch_alter_table('limits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_limits_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_limits_registered_limit_id'), ['registered_limit_id'], unique=False)


def downgrade() -> None:
    op.drop_table('limits')
    op.drop_table('registered_limits')
