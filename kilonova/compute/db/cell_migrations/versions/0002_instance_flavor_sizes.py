"""instances.vcpus and instances.memory_mb: the flavor's size in columns, so quota usage is a SUM

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
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vcpus', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('memory_mb', sa.Integer(), nullable=False, server_default='0'))
    # Existing rows: copy the sizes out of the flavor JSON.
    instances = sa.table('instances', sa.column('id', sa.Integer), sa.column('flavor', sa.JSON),
                         sa.column('vcpus', sa.Integer), sa.column('memory_mb', sa.Integer))
    connection = op.get_bind()
    for row in connection.execute(sa.select(instances.c.id, instances.c.flavor)).all():
        flavor = row.flavor or {}
        connection.execute(sa.update(instances).where(instances.c.id == row.id).values(
            vcpus=int(flavor.get('vcpus') or 0), memory_mb=int(flavor.get('memory_mb') or 0)))


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('memory_mb')
        batch_op.drop_column('vcpus')
