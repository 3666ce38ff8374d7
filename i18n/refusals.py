"""Refusals in the reader's language.

The workflows refuse with a stable code and the parameters the reason names (in the
ApplicationError's details: workflows/agreement.py and workflows/signing.py `reject`);
`agreements.ops.OperationError` carries them to the interfaces, with codes of its own for
what ops itself refuses. `explain(language, error)` says why, in `language`: the message
for its code with its parameters, states and statuses in words. An error without a code
is shown as its text (never a traceback).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from i18n import N_, text
from i18n.words import PERSON_ROLES, role_word, scope_word, word_for
from models.lifecycle import RoundOutcome, SignerStatus, State
from models.plan import EndingKind, MilestoneKind, MilestoneStatus
from models.prerequisites import CHECKLIST

# Every code the decider (`Refusal`), the agreement's and the signing round's `reject`
# and agreements/ops.py use, with its message (tests/test_refusal_words.py checks it).
REFUSALS: dict[str, str] = {
    # The agreement (workflows/decider.py, workflows/agreement.py)
    "unknown": N_("this request is not one the agreement knows (%(command)s)"),
    "closing": N_("the agreement is moving on to its next period; try again in a moment"),
    "ended": N_("the agreement has ended"),
    "not-signed": N_("the agreement is not signed yet (it is %(state)s)"),
    "other-agreement": N_("the terms are for agreement %(other)s, not %(agreement)s"),
    "invalid-terms": N_("the terms are not valid: %(problems)s"),
    "not-draft": N_("this can only be done while the agreement is a draft; it is %(state)s"),
    "unknown-prerequisite": N_("unknown prerequisite %(unknown)s; the checklist has %(checklist)s"),
    "prerequisites-missing": N_("confirm the IOP prerequisites first: %(prerequisites)s"),
    "round-open": N_("signature round %(round)s is already running"),
    "start-moved": N_("an amendment cannot move the start of the agreement (%(start)s)"),
    "no-round": N_("signature round %(round)s is not running"),
    "unknown-report": N_(
        "there is no report %(report)s number %(occurrence)s in this agreement"
        " (reports: %(reports)s)"
    ),
    "already-recorded": N_("%(milestone)s is already recorded as %(status)s"),
    "future-date": N_("the date %(on)s is in the future"),
    "postpone-earlier": N_("a postponement must move the due date past %(due)s"),
    "unknown-milestone": N_("there is no milestone %(milestone)s in this agreement"),
    "not-settable": N_(
        "%(milestone)s (%(milestone_kind)s) cannot be marked %(status)s; it can be marked:"
        " %(allowed)s"
    ),
    "number-missing": N_("give the invoice's number for %(milestone)s"),
    "not-invoiced": N_("%(milestone)s has not been recorded as invoiced"),
    "not-received": N_("%(milestone)s has not been received"),
    "note-missing": N_("say what is missing from %(milestone)s"),
    "no-decision-open": N_(
        "no renewal decision is open: every deadline has passed or none applies"
    ),
    "unknown-party": N_("%(party)s is not a signing party of this agreement"),
    "fixed-term": N_("this agreement has a fixed term: there is nothing to renew"),
    "already-decided": N_("%(party_name)s has already decided about the term ending %(term_end)s"),
    "nothing-to-approve": N_(
        "this agreement renews unless a party gives notice: there is nothing to approve"
    ),
    "already-ending": N_("the agreement already ends on %(end)s (%(ending)s)"),
    "no-rescission": N_("this agreement does not provide for rescission"),
    "no-repayment": N_("this agreement does not provide for a repayment claim"),
    "no-withdrawal": N_("this agreement has no rule for a party to withdraw"),
    "party-missing": N_("name the party that withdraws"),
    "withdrawn": N_("%(party_name)s has already withdrawn"),
    "too-early": N_("a party may withdraw from %(opens)s, not before"),
    "withdrawal-pending": N_(
        "the withdrawal of %(party_name)s is already waiting for the remaining parties"
    ),
    "no-termination": N_("this agreement has no termination with notice; see its terms"),
    "not-terminate": N_("%(ending)s is not decided by terminating"),
    "repayment-not-rescission": N_("a repayment claim goes with a rescission only"),
    "ends-anyway": N_("the agreement ends on %(end)s anyway, before %(notice_end)s"),
    "no-withdrawal-pending": N_("no withdrawal is waiting for a decision"),
    # The signature round (workflows/signing.py)
    "bad-request": N_("the request is not what this action takes (%(request)s)"),
    "invalid-link": N_("the signing link is not valid for this round"),
    "round-over": N_("the signature round is over (%(outcome)s)"),
    "already-signed": N_("%(name)s has already signed"),
    "signer-declined": N_("%(name)s has declined to sign"),
    "not-their-turn": N_("it is not %(name)s's turn to sign yet"),
    "already-opened": N_("%(name)s has already opened the link (%(signer_status)s)"),
    "reason-missing": N_("say why you decline to sign"),
    "not-a-signatory": N_("%(email)s is not a signatory of this agreement"),
    "no-open-round": N_("there is no open signature round to cancel"),
    # What agreements/ops.py refuses or cannot do itself
    "before-taken-on": N_("It lies before the agreement came to the service (%(day)s)."),
    "draft-changed": N_(
        "The draft was changed by someone else in the meantime: open it again and redo your change."
    ),
    "terms-not-stored": N_("The agreement's terms are not stored yet; try again in a moment."),
    "document-missing": N_(
        "The service does not have the document %(names)s: upload it again, then save."
    ),
    "no-document": N_("There is no such document."),
    "web-stopped": N_("The web server stopped before it answered; see the log above."),
    "server-exited": N_("The Temporal dev server stopped (exit status %(status)s); see %(log)s"),
    "unreachable-quiet": N_("Temporal did not answer."),
    "schema": N_("The database is not ready: %(problem)s"),
    "unreachable": N_(
        "cannot reach Temporal at %(target)s: is the service running (agreements up)? (%(error)s)"
    ),
    "signed-in-future": N_(
        "%(agreement)s: the day it was signed (%(flag)s) cannot be in the future:"
        " %(on)s is after today, %(today)s"
    ),
    "term-over": N_(
        "%(agreement)s: its term ran %(start)s – %(end)s and is over: there is nothing left"
        " to remind anyone of, so the service does not take it on"
    ),
    "term-over-not-extended": N_(
        "%(agreement)s: its term ran %(start)s – %(end)s and is over (no extension was"
        " approved in the service; if it was extended, give the end it now runs to as"
        " term.end): there is nothing left to remind anyone of, so the service does not"
        " take it on"
    ),
    "under-way": N_(
        "%(agreement)s: its term started on %(start)s, so the agreement is already under"
        " way: say the day it was signed (%(flag)s). It is then taken on as signed, and"
        " nothing is sent for what is already past"
    ),
    "exists": N_("an agreement with id %(agreement)s already exists"),
    "no-agreement": N_("there is no agreement with id %(agreement)s"),
    "temporal": N_("%(agreement)s: Temporal could not answer: %(error)s"),
    "key-length": N_("%(field)s: must be 1 to %(most)s characters, not %(length)s"),
    "key-characters": N_(
        "%(field)s: must be printable ASCII only (A-Z, a-z, digits, punctuation, space)"
    ),
    "no-round-yet": N_("%(agreement)s has no signature round; start one first"),
    "round-ended": N_("the signature round of %(agreement)s is over"),
    "database": N_("the database cannot be used: %(error)s"),
    "bad-period": N_("%(start)s – %(end)s is not a period of at most %(most)s days"),
    "unknown-role": N_("role %(role)s is not one of %(roles)s"),
    # A signing link (emails/links.py LinkError)
    "link-invalid": N_("The link is not valid."),
    "link-expired": N_("The link has expired: signing is closed. Contact the coordinator."),
    "payload-key": N_("The keys for Temporal's payloads are not right: %(problem)s"),
    "too-many-attempts": N_(
        "Too many failed attempts from here: try again in %(minutes)s minutes."
    ),
    "too-large": N_("The request is too large: at most %(size)s KiB is taken."),
    # Who may do what (agreements/access.py, agreements/web/app.py)
    "not-allowed": N_("your role (%(role)s) does not allow this on agreement %(agreement)s"),
    "organisation-needed": N_("say which organisation the agreement belongs to: %(organisations)s"),
    "other-organisation": N_("an agreement with id %(agreement)s belongs to another organisation"),
    "organisation-id": N_("an organisation's id is 1 to 64 letters or digits (a-z), not %(value)s"),
    "not-an-email": N_("%(value)s is not an email address"),
    "no-organisation": N_("there is no organisation %(organisation)s"),
    "not-a-member": N_("%(email)s is not in %(organisation)s"),
    "no-person": N_("there is nobody with the email address %(email)s"),
    "token-scope": N_("a token's scope is one of %(scopes)s, not %(scope)s"),
    # Webhook endpoints (webhooks/registry.py, webhooks/targets.py)
    "webhook-url-invalid": N_("%(url)s is not a web address a webhook can be sent to"),
    "webhook-url-scheme": N_("a webhook is sent to an https:// address; %(url)s is not one"),
    "webhook-url-private": N_(
        "%(host)s is on a private or local network; webhooks go to addresses on the internet"
    ),
    "webhook-url-unknown": N_("the name %(host)s could not be looked up"),
    "webhook-type-unknown": N_("%(type)s is not an event a webhook can announce"),
    "webhook-no-types": N_("choose at least one event to announce"),
    "webhook-description-long": N_("the description is longer than 200 characters"),
    "webhook-no-endpoint": N_("there is no such webhook endpoint"),
    "webhook-no-delivery": N_("there is no such webhook delivery"),
    "webhook-still-trying": N_(
        "this delivery is still being tried; it can be sent again once it has succeeded or failed"
    ),
    "webhook-endpoint-off": N_("the endpoint is turned off; turn it on first"),
    "weak-secret": N_(
        "%(name)s is the default or shorter than %(size)s characters, and the service would "
        "listen on %(host)s: set it to a long random value, or listen on 127.0.0.1 only."
    ),
}

# Parameters that are an enum's value, shown as its word.
ENUMS: dict[str, type[StrEnum]] = {
    "state": State,
    "status": MilestoneStatus,
    "allowed": MilestoneStatus,
    "milestone_kind": MilestoneKind,
    "ending": EndingKind,
    "outcome": RoundOutcome,
    "signer_status": SignerStatus,
}


def _shown(language: object, name: str, value: object) -> object:
    if name == "prerequisites":  # checklist keys: their text, never the key
        keys = value if isinstance(value, list) else str(value).split(",")
        return "; ".join(
            text(language, CHECKLIST[k].text).rstrip(".") if k in CHECKLIST else str(k)
            for k in keys
        )
    if name == "role":  # a person's roles (or a token's scope), in words
        values = value if isinstance(value, list) else [value]
        return ", ".join(
            role_word(language, v) if v in PERSON_ROLES else scope_word(language, v) for v in values
        ) or text(language, "nothing")
    kind = ENUMS.get(name)
    if isinstance(value, list):
        if not value:
            return text(language, "nothing")
        return ", ".join(word_for(language, kind, item) if kind else str(item) for item in value)
    if kind is not None and value is not None:
        return word_for(language, kind, value)
    return value


def words(language: object, code: str, params: Mapping[str, Any]) -> str | None:
    """The message for `code` in `language` with its parameters; None for an unknown code
    or parameters that do not fit it (a refusal from an older or newer version)."""
    message = REFUSALS.get(code)
    if message is None:
        return None
    values = {name: _shown(language, name, value) for name, value in params.items()}
    if values.get("party_name") is None and "party" in values:
        values["party_name"] = values["party"]  # a party the terms do not know: its key
    try:
        return text(language, message) % values
    except (KeyError, ValueError, TypeError):
        return None


def explain(language: object, error: object) -> str:
    """Why something was refused or could not be done, in `language`."""
    code = getattr(error, "code", "")
    params = getattr(error, "params", None)
    if isinstance(code, str) and code:
        found = words(language, code, params if isinstance(params, Mapping) else {})
        if found is not None:
            return found
    return str(getattr(error, "message", None) or error)


def recorded(language: object, data: Mapping[str, object]) -> str | None:
    """The reason of a refusal as its event (`refused`) recorded it, in `language`."""
    code = data.get("code")
    if not isinstance(code, str) or not code:
        return None
    try:
        params = json.loads(str(data.get("params") or "{}"))
    except ValueError:
        return None
    return words(language, code, params if isinstance(params, dict) else {})
