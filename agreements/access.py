"""Who may do what: people, their roles per organisation, sign-in sessions and personal API
tokens (the tables are models/people.py).

Roles, per organisation:

- **reader**: reads the organisation's agreements;
- **finance**: reads them and records invoices and payments (the money milestones);
- **coordinator**: all of that, creates agreements and makes every decision on them;
- **administrator**: all of that, and adds people to the organisation and removes them.

A person sees the agreements of their organisations only. A personal API token acts for its
person with at most its scope (`read`, or `decide`: everything but administering). The
deployment's own API token (`AGREEMENTS_API_TOKEN`) is the *local key*: it acts for nobody
in particular with every right, and is accepted only from this machine (loopback), for
the first administrator and for trials.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from agreements.ops import OperationError
from i18n import language_of
from models.people import (
    ApiToken,
    Membership,
    Organisation,
    Ownership,
    Person,
    WebSession,
)
from models.records import utcnow


class PersonRole(StrEnum):
    administrator = "administrator"
    coordinator = "coordinator"
    finance = "finance"
    reader = "reader"


class Right(StrEnum):
    read = "read"  # see agreements, their timelines, events and emails
    money = "money"  # record an instalment invoiced or paid
    decide = "decide"  # every other decision, signature rounds included
    create = "create"  # create an agreement for the organisation
    administer = "administer"  # add and remove the organisation's people


RIGHTS: dict[PersonRole, frozenset[Right]] = {
    PersonRole.reader: frozenset({Right.read}),
    PersonRole.finance: frozenset({Right.read, Right.money}),
    PersonRole.coordinator: frozenset({Right.read, Right.money, Right.decide, Right.create}),
    PersonRole.administrator: frozenset(Right),
}
SCOPES: dict[str, frozenset[Right]] = {
    "read": frozenset({Right.read}),
    "decide": frozenset(Right) - {Right.administer},
    # For an integration that registers its own webhook endpoints: an administrator's rights
    "administer": frozenset(Right),
}
LOCAL_KEY = "local-key"  # the actor the event log names for the deployment's own token
TOKEN_PREFIX = "avt_"


class AccessError(OperationError):
    """A people command that cannot be done: the message says why in English (the CLI), its
    code and parameters in the reader's language (i18n/refusals.py)."""


@dataclass(frozen=True)
class Who:
    """The person behind a request, with their roles (organisation -> role)."""

    person_id: int | None
    email: str
    name: str | None = None
    roles: Mapping[str, PersonRole] = field(default_factory=dict)
    local: bool = False  # the deployment's own token, from this machine: every right
    scope: frozenset[Right] | None = None  # a personal token's scope
    session: str | None = None  # the session's SHA-256, for its CSRF value and logout

    def can(self, right: Right, organisation: str | None) -> bool:
        """Whether this person may do `right` on an agreement of `organisation` (None: an
        agreement no organisation owns yet, which only the local key reaches)."""
        if self.scope is not None and right not in self.scope:
            return False
        if self.local:
            return True
        role = self.roles.get(organisation) if organisation is not None else None
        return role is not None and right in RIGHTS[role]

    def organisations(self, right: Right) -> list[str]:
        """The organisations where this person may do `right`, in name order of their ids."""
        return sorted(o for o in self.roles if self.can(right, o))

    def money_only(self, organisation: str | None) -> bool:
        """Finance there: the agreement's money is what this person sees and records."""
        return self.can(Right.money, organisation) and not self.can(Right.decide, organisation)

    def anywhere(self, right: Right) -> bool:
        return self.local or bool(self.organisations(right))

    @property
    def actor(self) -> str:
        """Who the event log names: 'Anna Andersson (anna@kommun.se)', or the local key."""
        if self.local:
            return LOCAL_KEY
        return f"{self.name} ({self.email})" if self.name else self.email


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def normal_email(email: str) -> str:
    return email.strip().lower()


# --- people and organisations (the CLI and the administrators' page) -------------------------


def add_organisation(db: Engine, organisation_id: str, name: str) -> Organisation:
    organisation_id = organisation_id.strip()
    if not organisation_id or len(organisation_id) > 64 or not organisation_id.isascii():
        raise AccessError(
            f"an organisation's id is 1 to 64 ASCII characters, not {organisation_id!r}",
            "organisation-id",
            value=organisation_id[:80],
        )
    with Session(db) as session:
        found = session.get(Organisation, organisation_id)
        if found is not None:
            found.name = name
        else:
            found = Organisation(id=organisation_id, name=name)
        session.add(found)
        session.commit()
        session.refresh(found)
        return found


def organisations(db: Engine) -> list[Organisation]:
    with Session(db) as session:
        return list(session.exec(select(Organisation).order_by(col(Organisation.name))))


def grant(
    db: Engine,
    email: str,
    organisation_id: str,
    role: PersonRole,
    name: str | None = None,
    by: str | None = None,
    language: str | None = None,
) -> Person:
    """Add a person (by email) to an organisation with a role, or change their role there;
    the person is created when new, and made active again when they were deactivated.
    `language` ("sv" or "en"), when given, is the language of the emails written to the
    person themself (the weekly digest); unset, Swedish."""
    email = normal_email(email)
    if "@" not in email or len(email) > 320:
        raise AccessError(f"not an email address: {email!r}", "not-an-email", value=email[:80])
    with Session(db) as session:
        if session.get(Organisation, organisation_id) is None:
            raise AccessError(
                f"no organisation {organisation_id!r}: add it first",
                "no-organisation",
                organisation=organisation_id,
            )
        person = session.exec(select(Person).where(Person.email == email)).first()
        if person is None:
            person = Person(email=email, name=name)
        else:
            person.active = True
            if name:
                person.name = name
        if language:
            person.language = language_of(language)
        session.add(person)
        session.flush()
        assert person.id is not None
        membership = session.get(Membership, (person.id, organisation_id))
        if membership is None:
            membership = Membership(person_id=person.id, organisation_id=organisation_id, role=role)
        membership.role = role.value
        membership.granted_by = by
        membership.granted_at = utcnow()
        session.add(membership)
        session.commit()
        session.refresh(person)
        return person


def remove(db: Engine, email: str, organisation_id: str) -> None:
    """Take a person out of an organisation (their sessions and tokens stay valid for their
    other organisations only, since rights are read at every request)."""
    with Session(db) as session:
        person = _person(session, email)
        assert person.id is not None
        membership = session.get(Membership, (person.id, organisation_id))
        if membership is None:
            raise AccessError(
                f"{person.email} is not in {organisation_id!r}",
                "not-a-member",
                email=person.email,
                organisation=organisation_id,
            )
        session.delete(membership)
        session.commit()


def deactivate(db: Engine, email: str) -> int:
    """A person who has left: no sign-in, every session ended and every token revoked.
    Returns how many sessions and tokens were ended."""
    with Session(db) as session:
        person = _person(session, email)
        person.active = False
        session.add(person)
        session.commit()
        assert person.id is not None
        return end_sessions(db, person.id, "revoked") + revoke_tokens(db, person.id)


def people(db: Engine) -> list[tuple[Person, list[Membership]]]:
    with Session(db) as session:
        persons = list(session.exec(select(Person).order_by(col(Person.email))))
        rows = list(session.exec(select(Membership)))
    by_person: dict[int, list[Membership]] = {}
    for m in rows:
        by_person.setdefault(m.person_id, []).append(m)
    return [
        (p, sorted(by_person.get(p.id or 0, []), key=lambda m: m.organisation_id)) for p in persons
    ]


def _person(session: Session, email: str) -> Person:
    person = session.exec(select(Person).where(Person.email == normal_email(email))).first()
    if person is None:
        raise AccessError(f"no person {email!r}", "no-person", email=email[:320])
    return person


def who(db: Engine, person: Person, **values: object) -> Who:
    """The person with their roles as they are now."""
    with Session(db) as session:
        rows = session.exec(select(Membership).where(Membership.person_id == person.id))
        roles = {m.organisation_id: PersonRole(m.role) for m in rows}
    return Who(person_id=person.id, email=person.email, name=person.name, roles=roles, **values)  # type: ignore[arg-type]


def person_by_email(db: Engine, email: str) -> Who | None:
    with Session(db) as session:
        person = session.exec(select(Person).where(Person.email == normal_email(email))).first()
    return who(db, person) if person is not None else None


def person_by_id(db: Engine, person_id: int) -> Who | None:
    """An active person with their roles, by id (a calendar feed's person)."""
    with Session(db) as session:
        person = session.get(Person, person_id)
    return who(db, person) if person is not None and person.active else None


def email_language(db: Engine, person_id: int) -> str:
    """The language of the emails written to the person themself (the weekly digest)."""
    with Session(db) as session:
        person = session.get(Person, person_id)
    return language_of(person.language) if person is not None and person.language else "sv"


def choose_email_language(db: Engine, person_id: int, language: str) -> None:
    """The person's own choice of the language of their emails: sv or en."""
    with Session(db) as session:
        person = session.get(Person, person_id)
        if person is None:
            raise AccessError("no such person", "no-person")
        person.language = language_of(language)
        session.add(person)
        session.commit()


def signed_in(
    db: Engine, issuer: str, subject: str, email: str | None, name: str | None
) -> Person | None:
    """The active person the identity provider vouches for: by its subject, or on a first
    sign-in by the email an administrator added them with (then the subject is bound).
    None: nobody here by that identity."""
    now = utcnow()
    with Session(db) as session:
        person = session.exec(
            select(Person).where(Person.issuer == issuer, Person.subject == subject)
        ).first()
        if person is None and email:
            person = session.exec(
                select(Person).where(
                    Person.email == normal_email(email), col(Person.subject).is_(None)
                )
            ).first()
            if person is not None:
                person.issuer, person.subject = issuer, subject
        if person is None or not person.active:
            return None
        if name and not person.name:
            person.name = name
        person.last_sign_in_at = now
        session.add(person)
        session.commit()
        session.refresh(person)
        return person


# --- which organisation owns an agreement ------------------------------------------------------


def owner(db: Engine, agreement_id: str) -> str | None:
    with Session(db) as session:
        row = session.get(Ownership, agreement_id)
        return row.organisation_id if row else None


def owners(db: Engine, agreement_ids: Iterable[str] | None = None) -> dict[str, str]:
    with Session(db) as session:
        query = select(Ownership)
        if agreement_ids is not None:
            query = query.where(col(Ownership.agreement_id).in_(list(agreement_ids)))
        return {o.agreement_id: o.organisation_id for o in session.exec(query)}


def assign(db: Engine, agreement_id: str, organisation_id: str, by: str | None) -> None:
    """Make `organisation_id` the owner of an agreement (again, when it had another)."""
    with Session(db) as session:
        if session.get(Organisation, organisation_id) is None:
            raise AccessError(
                f"no organisation {organisation_id!r}",
                "no-organisation",
                organisation=organisation_id,
            )
        row = session.get(Ownership, agreement_id) or Ownership(
            agreement_id=agreement_id, organisation_id=organisation_id
        )
        row.organisation_id = organisation_id
        row.assigned_by = by
        row.assigned_at = utcnow()
        session.add(row)
        session.commit()


def claim(db: Engine, agreement_id: str, organisation_id: str, by: str | None) -> str:
    """Own a new agreement for `organisation_id`: `new` when this made it theirs, `same`
    when it already was, `other` when another organisation owns an agreement of that id
    (which must then not be created)."""
    with Session(db) as session:
        row = session.get(Ownership, agreement_id)
        if row is not None:
            return "same" if row.organisation_id == organisation_id else "other"
        session.add(
            Ownership(agreement_id=agreement_id, organisation_id=organisation_id, assigned_by=by)
        )
        session.commit()
        return "new"


def release(db: Engine, agreement_id: str) -> None:
    """Undo a `new` claim whose agreement could not be created."""
    with Session(db) as session:
        row = session.get(Ownership, agreement_id)
        if row is not None:
            session.delete(row)
            session.commit()


# --- sessions ------------------------------------------------------------------------------------


def open_session(db: Engine, person_id: int | None, lasts: dt.timedelta) -> str:
    """A new session for the person (None: the local key); returns the cookie's value
    (only its hash is kept)."""
    value = secrets.token_urlsafe(32)
    now = utcnow()
    with Session(db) as session:
        session.add(
            WebSession(
                id_sha256=digest(value),
                person_id=person_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + lasts,
            )
        )
        session.commit()
    return value


def session_person(db: Engine, value: str, idle: dt.timedelta) -> Who | None:
    """Who a session cookie belongs to, while the session lives (not ended, not expired,
    used within `idle`, its person active); it is kept alive by this use."""
    if not value or len(value) > 100:
        return None
    key = digest(value)
    now = utcnow()
    with Session(db) as session:
        row = session.get(WebSession, key)
        if row is None or row.ended_at is not None:
            return None
        if _aware(row.expires_at) <= now or _aware(row.last_seen_at) + idle <= now:
            return None
        person = session.get(Person, row.person_id) if row.person_id is not None else None
        if row.person_id is not None and (person is None or not person.active):
            return None
        if now - _aware(row.last_seen_at) > dt.timedelta(minutes=1):
            row.last_seen_at = now  # written at most once a minute
            session.add(row)
            session.commit()
            if person is not None:
                session.refresh(person)
    if person is None:
        return Who(person_id=None, email="", local=True, session=key)
    return who(db, person, session=key)


def end_session(db: Engine, value: str, why: str = "logout") -> None:
    with Session(db) as session:
        row = session.get(WebSession, digest(value))
        if row is not None and row.ended_at is None:
            row.ended_at, row.ended_why = utcnow(), why
            session.add(row)
            session.commit()


def end_sessions(db: Engine, person_id: int, why: str = "revoked") -> int:
    """End every live session of a person (an administrator's revocation, or deactivation)."""
    now = utcnow()
    with Session(db) as session:
        rows = list(
            session.exec(
                select(WebSession).where(
                    WebSession.person_id == person_id, col(WebSession.ended_at).is_(None)
                )
            )
        )
        for row in rows:
            row.ended_at, row.ended_why = now, why
            session.add(row)
        session.commit()
        return len(rows)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# --- personal API tokens -----------------------------------------------------------------------


def make_token(db: Engine, person_id: int, name: str, scope: str) -> tuple[ApiToken, str]:
    """A new token for the person: the row, and the token itself (shown once, never kept)."""
    if scope not in SCOPES:
        raise AccessError(
            f"a token's scope is one of {', '.join(SCOPES)}, not {scope!r}",
            "token-scope",
            scope=scope[:40],
            scopes=", ".join(SCOPES),
        )
    name = name.strip()[:200] or "API"
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiToken(
        id=token_id, person_id=person_id, name=name, scope=scope, secret_sha256=digest(secret)
    )
    with Session(db) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    return row, f"{TOKEN_PREFIX}{token_id}_{secret}"


def tokens(db: Engine, person_id: int) -> list[ApiToken]:
    with Session(db) as session:
        query = select(ApiToken).where(ApiToken.person_id == person_id)
        return list(session.exec(query.order_by(col(ApiToken.created_at).desc())))


def revoke_token(db: Engine, person_id: int, token_id: str) -> bool:
    with Session(db) as session:
        row = session.get(ApiToken, token_id)
        if row is None or row.person_id != person_id or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
        return True


def revoke_tokens(db: Engine, person_id: int) -> int:
    now = utcnow()
    with Session(db) as session:
        rows = list(
            session.exec(
                select(ApiToken).where(
                    ApiToken.person_id == person_id, col(ApiToken.revoked_at).is_(None)
                )
            )
        )
        for row in rows:
            row.revoked_at = now
            session.add(row)
        session.commit()
        return len(rows)


def token_person(db: Engine, value: str) -> Who | None:
    """Who a personal token acts for, with its scope; None when it is not a live token."""
    if not value.startswith(TOKEN_PREFIX) or len(value) > 100:
        return None
    token_id, _, secret = value.removeprefix(TOKEN_PREFIX).partition("_")
    with Session(db) as session:
        row = session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            return None
        if not secrets.compare_digest(row.secret_sha256, digest(secret)):
            return None
        person = session.get(Person, row.person_id)
        if person is None or not person.active:
            return None
        now = utcnow()
        if row.last_used_at is None or now - _aware(row.last_used_at) > dt.timedelta(minutes=1):
            row.last_used_at = now
            session.add(row)
            session.commit()
            session.refresh(person)
        scope = SCOPES[row.scope]
    return who(db, person, scope=scope)
