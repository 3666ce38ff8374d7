"""The event log in the reader's language.

Every event the decider (`_Step.log`), the signing round (`_log_events`) and ops
(`refused`) write keeps its English summary, and in its data what it names: the round's
number, a party's name, a milestone's title, dates (ISO). `event_text` says it in the
reader's language from those; an event of a kind it does not know, or one written before
its data named everything (missing data), reads as its summary.
"""

from __future__ import annotations

from collections.abc import Mapping

from i18n import N_, text
from i18n.refusals import recorded
from i18n.words import word_for
from models.lifecycle import State
from models.plan import EndingKind
from models.prerequisites import CHECKLIST

# kind -> message; the parameters are the event's data (tests/test_event_words.py checks
# that every kind the decider and the signing round log has one).
EVENTS: dict[str, str] = {
    # The agreement (workflows/decider.py)
    "created": N_("Taken on by the service as %(state)s"),
    "draft.edited": N_("The draft's terms were edited"),
    "prerequisites.confirmed": N_("IOP prerequisites confirmed: %(prerequisites)s"),
    "signing.round_started": N_("Signature round %(round)s started"),
    "amendment.round_started": N_("Signature round %(round)s for an amendment started"),
    "signing.round_declined": N_("Signature round %(round)s ended: a signer declined"),
    "signing.round_cancelled": N_("Signature round %(round)s was cancelled"),
    "signing.round_expired": N_("Signature round %(round)s expired without every signature"),
    "signing.round_failed": N_("Signature round %(round)s broke off"),
    "amendment.round_declined": N_(
        "Signature round %(round)s for an amendment ended: a signer declined"
    ),
    "amendment.round_cancelled": N_("Signature round %(round)s for an amendment was cancelled"),
    "amendment.round_expired": N_(
        "Signature round %(round)s for an amendment expired without every signature"
    ),
    "amendment.round_failed": N_("Signature round %(round)s for an amendment broke off"),
    "amendment.signed": N_(
        "The amendment is signed by every party; every later date is re-planned"
    ),
    "signed": N_("Signed by every party on %(signed_on)s"),
    "signed.imported": N_("Taken on as signed on %(signed_on)s"),
    "record.sealed": N_("The signed agreement of round %(round)s is sealed (%(filename)s)"),
    "report.postponed": N_("%(milestone_title)s postponed to %(new_due)s"),
    "report.submitted": N_("%(milestone_title)s received on %(on)s"),
    "milestone.invoiced": N_("%(milestone_title)s invoiced on %(on)s, invoice number %(number)s"),
    "milestone.paid": N_("%(milestone_title)s paid on %(on)s"),
    "milestone.held": N_("%(milestone_title)s held on %(on)s"),
    "milestone.approved": N_("%(milestone_title)s approved on %(on)s"),
    "milestone.returned": N_(
        "%(milestone_title)s returned for completion on %(on)s: %(note)s is missing"
    ),
    "renewal.decided": N_("%(party_name)s approves going on after %(term_end)s"),
    "renewal.notice": N_(
        "%(party_name)s gives notice: the term ending %(term_end)s is not renewed"
    ),
    "withdrawal.notice": N_("%(party_name)s withdraws from the agreement from %(end)s"),
    "withdrawal.continues": N_("The remaining parties go on without %(party_name)s after %(end)s"),
    "ending.expiry": N_("The agreement runs out on %(end)s"),
    "ending.non_renewal": N_("The agreement is not renewed: it ends on %(end)s"),
    "ending.not_extended": N_(
        "Not every party approved an extension: the agreement ends on %(end)s"
    ),
    "ending.termination": N_("The agreement is terminated: it ends on %(end)s"),
    "ending.withdrawal": N_("%(party_name)s withdrew: the agreement ends on %(end)s"),
    "ending.rescission": N_("The agreement is rescinded: it ends on %(end)s"),
    "active": N_("The agreement runs from %(start)s"),
    "ended": N_("The agreement ended on %(end)s (%(ending)s)"),
    "email.failed": N_("An email to %(to_name)s <%(to)s> could not be sent: %(error)s"),
    "service.alert": N_("Saving %(what)s failed and will be tried again: %(error)s"),
    # The signature round (workflows/signing.py)
    "signature.sent": N_("Signature round %(round)s: link sent to %(name)s (%(party_name)s)"),
    "signature.started": N_("Signature round %(round)s started on paper"),
    "signature.reminded": N_("Signature round %(round)s: reminder sent to %(name)s"),
    "signature.opened": N_("%(name)s (%(party_name)s) opened the signing link"),
    "signature.signed": N_("%(name)s (%(party_name)s) signed"),
    "signature.signed.paper": N_("%(name)s (%(party_name)s) signed on paper dated %(signed_on)s"),
    "signature.declined": N_("%(name)s (%(party_name)s) declined to sign: %(reason)s"),
    "signature.cancelled": N_("Signature round %(round)s was cancelled"),
    "signature.expired": N_("Signature round %(round)s expired"),
    "signature.completed": N_("Signature round %(round)s is complete: everyone has signed"),
    # A decision the workflow refused (agreements/ops.py `refused`)
    "refused": N_("Refused (%(decision)s): %(reason)s"),
}

# What `service.alert` names (workflows/agreement.py `run_store`).
STORES: dict[str, str] = {
    "the agreement's terms": N_("the agreement's terms"),
    "the event log": N_("the event log"),
    "the agreement list": N_("the agreement list"),
}

# The decisions a refusal names (the update's name).
DECISIONS: dict[str, str] = {
    "edit_draft": N_("editing the draft"),
    "confirm_prerequisites": N_("confirming prerequisites"),
    "start_signing": N_("starting signing"),
    "record_report": N_("recording a report"),
    "record_milestone": N_("recording a milestone's status"),
    "decide_renewal": N_("a renewal decision"),
    "terminate": N_("ending the agreement"),
    "withdrawal_outcome": N_("the decision after a withdrawal"),
    "amend": N_("an amendment"),
    "open": N_("opening the signing link"),
    "sign": N_("signing"),
    "decline": N_("declining to sign"),
    "sign_paper": N_("a signature on paper"),
    "cancel": N_("cancelling the signature round"),
}


def _message_kind(kind: str, data: Mapping[str, object]) -> str:
    """Kinds whose words depend on the data: a renewal given notice of, an import."""
    if kind == "renewal.decided" and data.get("renew") is False:
        return "renewal.notice"
    if kind == "signed" and data.get("imported"):
        return "signed.imported"
    if kind == "signature.signed" and data.get("method") == "paper":
        return "signature.signed.paper"
    return kind


def _values(language: object, kind: str, data: Mapping[str, object]) -> dict[str, object]:
    values = {k: v for k, v in data.items() if v is not None and v != ""}
    if "state" in values:
        values["state"] = word_for(language, State, values["state"])
    if "ending" in values:
        values["ending"] = word_for(language, EndingKind, values["ending"])
    if "prerequisites" in values:
        keys = str(values["prerequisites"]).split(",")
        values["prerequisites"] = "; ".join(
            text(language, CHECKLIST[k].text).rstrip(".") if k in CHECKLIST else k for k in keys
        )
    if kind == "service.alert" and "what" in values:
        known = STORES.get(str(values["what"]))
        values["what"] = text(language, known) if known else values["what"]
    if kind == "refused":
        decision = DECISIONS.get(str(values.get("decision")))
        if decision is not None:
            values["decision"] = text(language, decision)
        reason = recorded(language, data)
        if reason is None:  # recorded before refusals had codes: the summary says it
            values.pop("reason", None)
        else:
            values["reason"] = reason
    return values


def event_text(language: object, kind: str, summary: str, data: Mapping[str, object]) -> str:
    """What an event of the log says, in `language` (`summary` is the English as stored)."""
    message = EVENTS.get(_message_kind(kind, data))
    if message is None:
        return summary
    try:
        said = text(language, message) % _values(language, kind, data)
    except (KeyError, ValueError, TypeError):
        return summary  # written before its data named everything
    # What is said only when it was given: a reason, a note, an error, a repayment claim.
    if kind.startswith("ending.") and data.get("reason"):
        said += f" ({data['reason']})"
    if kind.startswith("ending.") and data.get("repayment"):
        said += "; " + text(
            language, "repayment claimed: %(amount)s kronor", amount=data["repayment"]
        )
    if kind in ("milestone.approved", "milestone.held", "milestone.paid") and data.get("note"):
        said += f": {data['note']}"
    if kind.endswith(".round_failed") and data.get("error"):
        said += f": {data['error']}"
    return said
