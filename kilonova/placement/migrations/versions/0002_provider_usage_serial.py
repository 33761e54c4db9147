"""resource_providers.usage_serial: counts usage changes that upstream leaves the generation alone for

Allocations moved off a provider, or deleted, change its usage without a generation bump (as
upstream); the capacity index compares this counter to notice them across processes.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('resource_providers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('usage_serial', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('resource_providers', schema=None) as batch_op:
        batch_op.drop_column('usage_serial')
