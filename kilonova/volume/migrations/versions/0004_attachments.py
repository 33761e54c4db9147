"""attachments and multiattach

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 22:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('multiattach', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('attach_status', sa.String(length=255), nullable=False,
                                      server_default='detached'))
    op.create_table('volume_attachments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('volume_id', sa.String(length=36), nullable=False),
    sa.Column('instance_uuid', sa.String(length=36), nullable=True),
    sa.Column('attach_status', sa.String(length=255), nullable=False),
    sa.Column('attach_mode', sa.String(length=36), nullable=False),
    sa.Column('attached_host', sa.String(length=255), nullable=True),
    sa.Column('mountpoint', sa.String(length=255), nullable=True),
    sa.Column('connector', sa.Text(), nullable=True),
    sa.Column('connection_info', sa.Text(), nullable=True),
    sa.Column('attach_time', sa.DateTime(), nullable=True),
    sa.Column('detach_time', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['volume_id'], ['volumes.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('volume_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_volume_attachments_attach_status'), ['attach_status'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_attachments_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_attachments_instance_uuid'), ['instance_uuid'], unique=False)
        batch_op.create_index(batch_op.f('ix_volume_attachments_volume_id'), ['volume_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('volume_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volume_attachments_volume_id'))
        batch_op.drop_index(batch_op.f('ix_volume_attachments_instance_uuid'))
        batch_op.drop_index(batch_op.f('ix_volume_attachments_created_at'))
        batch_op.drop_index(batch_op.f('ix_volume_attachments_attach_status'))
    op.drop_table('volume_attachments')
    with op.batch_alter_table('volumes', schema=None) as batch_op:
        batch_op.drop_column('attach_status')
        batch_op.drop_column('multiattach')
