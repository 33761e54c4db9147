"""shelved_images: the snapshot images made for shelves, until they are deleted

Revision ID: 0004
Revises: 0003
"""
from datetime import datetime

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'shelved_images',
        sa.Column('image_id', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('image_id'))
    op.create_index('ix_shelved_images_instance_uuid', 'shelved_images', ['instance_uuid'])
    # The snapshots of servers shelved before this release are recorded too.
    instances = sa.table('instances', sa.column('uuid', sa.String), sa.column('system_metadata', sa.JSON),
                         sa.column('deleted', sa.Integer))
    ledger = sa.table('shelved_images', sa.column('image_id', sa.String), sa.column('instance_uuid', sa.String),
                      sa.column('created_at', sa.DateTime))
    connection = op.get_bind()
    now = datetime.utcnow()
    rows = []
    for row in connection.execute(sa.select(instances.c.uuid, instances.c.system_metadata)
                                  .where(instances.c.deleted == 0)).all():
        image_id = (row.system_metadata or {}).get('shelved_image_id')
        if image_id:
            rows.append({'image_id': image_id, 'instance_uuid': row.uuid, 'created_at': now})
    for values in rows:
        connection.execute(sa.insert(ledger).values(**values))


def downgrade() -> None:
    op.drop_index('ix_shelved_images_instance_uuid', table_name='shelved_images')
    op.drop_table('shelved_images')
