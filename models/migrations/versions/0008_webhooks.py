"""Outgoing webhooks: the endpoints organisations register (`webhook_endpoint`), each
delivery of an event to one of them with its fixed body (`webhook_delivery`), and every
attempt with its answer (`webhook_attempt`).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Text = sqlmodel.sql.sqltypes.AutoString
When = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", Text(length=32), nullable=False),
        sa.Column("organisation_id", Text(length=64), nullable=False),
        sa.Column("url", Text(length=2000), nullable=False),
        sa.Column("description", Text(length=200), nullable=False),
        sa.Column("types_json", sa.Text(), nullable=False),
        sa.Column("secret", Text(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_why", Text(length=32), nullable=True),
        sa.Column("disabled_at", When(), nullable=True),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("created_by", Text(length=400), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisation.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_endpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoint_organisation_id"), ["organisation_id"], unique=False
        )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", Text(length=40), nullable=False),
        sa.Column("endpoint_id", Text(length=32), nullable=False),
        sa.Column("event_key", Text(length=400), nullable=False),
        sa.Column("agreement_id", Text(length=64), nullable=False),
        sa.Column("type", Text(length=40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", Text(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resends", sa.Integer(), nullable=False),
        sa.Column("started", sa.Boolean(), nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("last_attempt_at", When(), nullable=True),
        sa.Column("next_attempt_at", When(), nullable=True),
        sa.Column("delivered_at", When(), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoint.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id", "event_key", name="uq_webhook_delivery"),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        for column in ("agreement_id", "endpoint_id", "started", "status"):
            batch_op.create_index(batch_op.f(f"ix_webhook_delivery_{column}"), [column])
    op.create_table(
        "webhook_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", Text(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", When(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("answer", Text(length=1000), nullable=True),
        sa.Column("error", Text(length=500), nullable=True),
        sa.Column("milliseconds", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_delivery.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery_id", "number", name="uq_webhook_attempt"),
    )
    with op.batch_alter_table("webhook_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_attempt_delivery_id"), ["delivery_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempt")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_endpoint")
