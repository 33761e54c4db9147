"""build_requests.vcpus and build_requests.memory_mb: the flavor's size in columns, so the quota usage of
servers not yet in a cell is one SUM instead of every pending server's JSON parsed on each create

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('build_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vcpus', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('memory_mb', sa.Integer(), nullable=False, server_default='0'))
    # Servers accepted before the upgrade and still pending: copy the sizes out of their flavor.
    build_requests = sa.table('build_requests', sa.column('id', sa.Integer), sa.column('instance', sa.JSON),
                              sa.column('vcpus', sa.Integer), sa.column('memory_mb', sa.Integer))
    connection = op.get_bind()
    for row in connection.execute(sa.select(build_requests.c.id, build_requests.c.instance)).all():
        flavor = (row.instance or {}).get('flavor') or {}
        connection.execute(sa.update(build_requests).where(build_requests.c.id == row.id).values(
            vcpus=int(flavor.get('vcpus') or 0), memory_mb=int(flavor.get('memory_mb') or 0)))


def downgrade() -> None:
    with op.batch_alter_table('build_requests', schema=None) as batch_op:
        batch_op.drop_column('memory_mb')
        batch_op.drop_column('vcpus')
