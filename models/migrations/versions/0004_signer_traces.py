"""The signers' traces: IP addresses and user agents moved out of the append-only event log
into a table of their own, `signer_trace`, where they can be weeded (gallring).

Upgrade creates the table and moves what is there: each event whose data holds an "ip"
(or a "user_agent") key loses it, and an event that had a value gets a trace row with it.
The event log refuses UPDATE (0001_initial.py), so its triggers are dropped for the move
and created again, in the same transaction on PostgreSQL.

Downgrade drops the table and does NOT put the addresses back into the event log: what
was moved (and any weeded since) is gone with it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TRACED = ("ip", "user_agent")  # the keys an event's data no longer keeps


def _initial() -> ModuleType:
    """0001_initial.py, for its triggers (a file of this folder, not an importable module)."""
    name = "agreements_migration_0001"
    if name not in sys.modules:
        path = Path(__file__).with_name("0001_initial.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def upgrade() -> None:
    op.create_table(
        "signer_trace",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("agreement_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("signer", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("weeded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key", name="uq_signer_trace_event_key"),
    )
    with op.batch_alter_table("signer_trace", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signer_trace_agreement_id"), ["agreement_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_signer_trace_at"), ["at"], unique=False)
    move_traces()


EVENT = sa.table(
    "event",
    sa.column("id", sa.Integer()),
    sa.column("event_key", sa.String()),
    sa.column("agreement_id", sa.String()),
    sa.column("at", sqlmodel.sql.sqltypes.UTCDateTime()),
    sa.column("kind", sa.String()),
    sa.column("actor", sa.String()),
    sa.column("data_json", sa.Text()),
)
TRACE = sa.table(
    "signer_trace",
    sa.column("event_key", sa.String()),
    sa.column("agreement_id", sa.String()),
    sa.column("at", sqlmodel.sql.sqltypes.UTCDateTime()),
    sa.column("kind", sa.String()),
    sa.column("signer", sa.String()),
    sa.column("ip", sa.String()),
    sa.column("user_agent", sa.String()),
)


def move_traces() -> None:
    """Every event whose data names an IP (or user agent): the key out of its data, the
    value (if any) into a trace row. The triggers are off only for these updates."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(EVENT).where(
            sa.or_(
                EVENT.c.data_json.like('%"ip"%'),
                EVENT.c.data_json.like('%"user_agent"%'),
            )
        )
    ).all()
    changes: list[tuple[int, str]] = []
    traces: list[dict[str, object]] = []
    for row in rows:
        try:
            data = json.loads(row.data_json)
        except ValueError:
            continue
        if not isinstance(data, dict) or not any(key in data for key in TRACED):
            continue
        ip, agent = data.pop("ip", None), data.pop("user_agent", None)
        changes.append((row.id, json.dumps(data, ensure_ascii=False, sort_keys=True)))
        if ip or agent:
            traces.append(
                {
                    "event_key": row.event_key,
                    "agreement_id": row.agreement_id,
                    "at": row.at,
                    "kind": row.kind,
                    # A signature event's actor is its signer (or who recorded it on paper,
                    # which has no IP); a refusal names no signer.
                    "signer": row.actor if row.kind.startswith("signature.") else None,
                    "ip": str(ip)[:64] if ip else None,
                    "user_agent": str(agent)[:300] if agent else None,
                }
            )
    if traces:
        bind.execute(sa.insert(TRACE), traces)
    if not changes:
        return
    initial = _initial()
    initial.drop_append_only()
    for id_, data_json in changes:
        bind.execute(sa.update(EVENT).where(EVENT.c.id == id_).values(data_json=data_json))
    initial.append_only()


def downgrade() -> None:
    """Drops the traces; the IP addresses are not put back into the event log."""
    with op.batch_alter_table("signer_trace", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signer_trace_at"))
        batch_op.drop_index(batch_op.f("ix_signer_trace_agreement_id"))
    op.drop_table("signer_trace")
