"""iterations.frc_resolution and haze_ratio: what the stop rule guards

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('iterations') as batch:
        batch.add_column(sa.Column('frc_resolution', sa.Float(), nullable=True))
        batch.add_column(sa.Column('haze_ratio', sa.Float(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('iterations') as batch:
        batch.drop_column('haze_ratio')
        batch.drop_column('frc_resolution')
