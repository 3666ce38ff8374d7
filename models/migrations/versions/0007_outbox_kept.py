"""What was sent is kept: each outbox row records the SHA-256 of the message handed to the
relay (`outbox.sha256`) and the message itself (`outbox.message`, the exact bytes) until the
weeding clears it after the message retention (`outbox.message_weeded_at`); the hash stays.

Rows sent before this revision have neither: their messages were never kept.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("message", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column("message_weeded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("message_weeded_at")
        batch_op.drop_column("message")
        batch_op.drop_column("sha256")
