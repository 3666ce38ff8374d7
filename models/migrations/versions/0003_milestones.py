"""The milestone table: one row per milestone of an agreement, with its status as set, so
that the pages, `upcoming` and the finance CSV read the database instead of asking every
agreement's workflow.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "milestone",
        sa.Column("agreement_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=True),
        sa.Column("party", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("payer", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("payee", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("report", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("occurrence", sa.Integer(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("status_on", sa.Date(), nullable=True),
        sa.Column("status_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("agreement_id", "id"),
    )
    with op.batch_alter_table("milestone", schema=None) as batch_op:
        batch_op.create_index(
            "ix_milestone_agreement_id_effective_date",
            ["agreement_id", "effective_date"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_milestone_effective_date"), ["effective_date"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_milestone_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("milestone", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_milestone_status"))
        batch_op.drop_index(batch_op.f("ix_milestone_effective_date"))
        batch_op.drop_index("ix_milestone_agreement_id_effective_date")

    op.drop_table("milestone")
