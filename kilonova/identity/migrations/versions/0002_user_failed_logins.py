"""users.failed_auth_count and failed_auth_at: Keystone's account lockout ([security_compliance])

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
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_auth_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('failed_auth_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('failed_auth_at')
        batch_op.drop_column('failed_auth_count')
