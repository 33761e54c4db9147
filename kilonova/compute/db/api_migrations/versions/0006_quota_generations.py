"""quota_generations: each project's count of recorded server creates (atomic quota at create)

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
    op.create_table(
        'quota_generations',
        sa.Column('project_id', sa.String(length=255), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('project_id'))


def downgrade() -> None:
    op.drop_table('quota_generations')
