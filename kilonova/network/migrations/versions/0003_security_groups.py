"""security groups, their rules, each project's default group and the ports' memberships

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 18:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _standard_attributes() -> list:
    return [sa.Column('description', sa.String(length=255), nullable=False),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('updated_at', sa.DateTime(), nullable=False),
            sa.Column('revision_number', sa.Integer(), nullable=False)]


def upgrade() -> None:
    op.create_table(
        'security_groups',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('stateful', sa.Boolean(), nullable=False),
        sa.Column('tags', sa.JSON(), nullable=False),
        *_standard_attributes(),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('security_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_security_groups_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_security_groups_project_id'), ['project_id'], unique=False)

    op.create_table(
        'default_security_groups',
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('security_group_id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['security_group_id'], ['security_groups.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('project_id'),
        sa.UniqueConstraint('security_group_id'))

    op.create_table(
        'security_group_rules',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('security_group_id', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('direction', sa.String(length=16), nullable=False),
        sa.Column('ethertype', sa.String(length=8), nullable=False),
        sa.Column('protocol', sa.String(length=40), nullable=True),
        sa.Column('port_range_min', sa.Integer(), nullable=True),
        sa.Column('port_range_max', sa.Integer(), nullable=True),
        sa.Column('remote_ip_prefix', sa.String(length=64), nullable=True),
        sa.Column('remote_group_id', sa.String(length=36), nullable=True),
        *_standard_attributes(),
        sa.ForeignKeyConstraint(['remote_group_id'], ['security_groups.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['security_group_id'], ['security_groups.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('security_group_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_security_group_rules_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_security_group_rules_remote_group_id'), ['remote_group_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_security_group_rules_security_group_id'), ['security_group_id'],
                              unique=False)

    op.create_table(
        'security_group_port_bindings',
        sa.Column('port_id', sa.String(length=36), nullable=False),
        sa.Column('security_group_id', sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(['port_id'], ['ports.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['security_group_id'], ['security_groups.id']),
        sa.PrimaryKeyConstraint('port_id', 'security_group_id'))
    with op.batch_alter_table('security_group_port_bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_security_group_port_bindings_security_group_id'),
                              ['security_group_id'], unique=False)


def downgrade() -> None:
    op.drop_table('security_group_port_bindings')
    op.drop_table('security_group_rules')
    op.drop_table('default_security_groups')
    op.drop_table('security_groups')
