"""block_device_mapping: the volumes of servers

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'block_device_mapping',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('uuid', sa.String(length=36), nullable=False),
        sa.Column('instance_uuid', sa.String(length=36), nullable=False),
        sa.Column('source_type', sa.String(length=255), nullable=False),
        sa.Column('destination_type', sa.String(length=255), nullable=False),
        sa.Column('device_name', sa.String(length=255), nullable=True),
        sa.Column('boot_index', sa.Integer(), nullable=True),
        sa.Column('volume_id', sa.String(length=36), nullable=True),
        sa.Column('volume_size', sa.Integer(), nullable=True),
        sa.Column('image_id', sa.String(length=36), nullable=True),
        sa.Column('snapshot_id', sa.String(length=36), nullable=True),
        sa.Column('attachment_id', sa.String(length=36), nullable=True),
        sa.Column('connection_info', sa.JSON(), nullable=True),
        sa.Column('delete_on_termination', sa.Boolean(), nullable=False),
        sa.Column('tag', sa.String(length=255), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('uuid'),
        sa.UniqueConstraint('instance_uuid', 'volume_id'),
        sa.UniqueConstraint('instance_uuid', 'device_name'))
    op.create_index('ix_block_device_mapping_instance_uuid', 'block_device_mapping', ['instance_uuid'])
    op.create_index('ix_block_device_mapping_volume_id', 'block_device_mapping', ['volume_id'])


def downgrade() -> None:
    op.drop_index('ix_block_device_mapping_volume_id', table_name='block_device_mapping')
    op.drop_index('ix_block_device_mapping_instance_uuid', table_name='block_device_mapping')
    op.drop_table('block_device_mapping')
