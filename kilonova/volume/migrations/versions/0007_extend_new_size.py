"""extend_new_size: an in-use extend the compute service finishes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('extend_new_size', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.drop_column('extend_new_size')
