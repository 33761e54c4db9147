"""snapshot metadata

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('snapshot_metadata',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.String(length=36), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['snapshot_id'], ['snapshots.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('snapshot_id', 'key')
    )
    with op.batch_alter_table('snapshot_metadata', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshot_metadata_snapshot_id'), ['snapshot_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('snapshot_metadata', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_snapshot_metadata_snapshot_id'))
    op.drop_table('snapshot_metadata')
