"""People and what they may do (tables): organisations, people, their roles per
organisation, which organisation owns each agreement, sign-in sessions kept on the server,
personal API tokens (hashed), and the short-lived state of a sign-in under way.

A municipality's committees and administrations (nämnd, förvaltning) are organisations; a
person has one role in each organisation they belong to (agreements/access.py says what
each role may do). Secrets are never stored: a session's or a token's SHA-256 is.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.records import utcnow


class Organisation(SQLModel, table=True):
    """A committee or an administration, e.g. id `kultur`, name `Kultur- och fritidsnämnden`."""

    __tablename__ = "organisation"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: dt.datetime = Field(default_factory=utcnow)


class Person(SQLModel, table=True):
    """Someone who signs in. Added by an administrator by email; the first sign-in through
    the identity provider binds the provider's subject to the row, and later sign-ins are
    recognised by that subject (an email address can change, the subject does not)."""

    __tablename__ = "person"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_person_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)  # lower case
    name: str | None = Field(default=None, max_length=200)
    issuer: str | None = Field(default=None, max_length=400)
    subject: str | None = Field(default=None, max_length=400)
    active: bool = True
    # The language of the emails the service writes to the person themself (the weekly
    # digest): "sv" or "en"; None: Swedish.
    language: str | None = Field(default=None, max_length=8)
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_sign_in_at: dt.datetime | None = None


class Membership(SQLModel, table=True):
    """A person's role in one organisation: administrator, coordinator, finance or reader."""

    __tablename__ = "membership"

    person_id: int = Field(primary_key=True, foreign_key="person.id")
    organisation_id: str = Field(primary_key=True, max_length=64, foreign_key="organisation.id")
    role: str = Field(max_length=32)
    granted_at: dt.datetime = Field(default_factory=utcnow)
    granted_by: str | None = Field(default=None, max_length=400)


class Ownership(SQLModel, table=True):
    """The organisation an agreement belongs to: whose people see it and decide on it."""

    __tablename__ = "agreement_owner"

    agreement_id: str = Field(primary_key=True, max_length=64)
    organisation_id: str = Field(max_length=64, foreign_key="organisation.id", index=True)
    assigned_at: dt.datetime = Field(default_factory=utcnow)
    assigned_by: str | None = Field(default=None, max_length=400)


class WebSession(SQLModel, table=True):
    """A signed-in browser: the cookie holds a random value, this row its SHA-256. It ends
    at `expires_at`, after `idle` without a request, on logout, or when revoked."""

    __tablename__ = "web_session"

    id_sha256: str = Field(primary_key=True, max_length=64)
    # None: a session of the local key (the deployment's own token, from this machine)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_seen_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime
    ended_at: dt.datetime | None = None
    ended_why: str | None = Field(default=None, max_length=32)  # logout, revoked


class ApiToken(SQLModel, table=True):
    """A person's token for an integration: `avt_<id>_<secret>`, shown once, stored as the
    secret's SHA-256. `scope` is `read` or `decide`; it never gives more than the person's
    roles."""

    __tablename__ = "api_token"

    id: str = Field(primary_key=True, max_length=32)
    person_id: int = Field(foreign_key="person.id", index=True)
    name: str = Field(max_length=200)
    scope: str = Field(max_length=16)
    secret_sha256: str = Field(max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class SignInState(SQLModel, table=True):
    """A sign-in under way at the identity provider (state, nonce, PKCE verifier), kept on
    the server under the SHA-256 of a short-lived cookie; used once."""

    __tablename__ = "sign_in_state"

    id_sha256: str = Field(primary_key=True, max_length=64)
    data_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = Field(default_factory=utcnow)
