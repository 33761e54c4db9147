"""compute_nodes.stats, numa_topology, pci_stats: what the scheduler's NUMA, PCI and build-failure logic reads

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('compute_nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stats', sa.Text(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('numa_topology', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('pci_stats', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('compute_nodes', schema=None) as batch_op:
        batch_op.drop_column('pci_stats')
        batch_op.drop_column('numa_topology')
        batch_op.drop_column('stats')
