"""The words for the service's own keys: states, statuses, outcomes, kinds, roles.

Every value of every enum a person may see has a message here (tests/test_translations.py
checks it); `word(language, value)` translates one. An internal key never reaches a page,
an email, a CSV file or a command-line table untranslated.
"""

from __future__ import annotations

from enum import StrEnum

from i18n import N_, text
from models.agreement import (
    ContributionKind,
    DocumentKind,
    PartyKind,
    RenewalKind,
    Role,
    SigningMethod,
    SigningMode,
)
from models.lifecycle import RoundOutcome, SignerStatus, State
from models.plan import EndingKind, MilestoneKind, MilestoneStatus

WORDS: dict[type[StrEnum], dict[str, str]] = {
    State: {
        State.draft: N_("draft"),
        State.signing: N_("being signed"),
        State.signed: N_("signed, not started"),
        State.active: N_("running"),
        State.ending: N_("ending"),
        State.ended: N_("ended"),
    },
    SignerStatus: {
        SignerStatus.waiting: N_("waiting for their turn"),
        SignerStatus.invited: N_("invited"),
        SignerStatus.opened: N_("opened the link"),
        SignerStatus.signed: N_("has signed"),
        SignerStatus.declined: N_("declined to sign"),
    },
    RoundOutcome: {
        RoundOutcome.open: N_("under way"),
        RoundOutcome.completed: N_("signed by everyone"),
        RoundOutcome.declined: N_("declined"),
        RoundOutcome.cancelled: N_("cancelled"),
        RoundOutcome.expired: N_("expired"),
        RoundOutcome.failed: N_("broken off"),
    },
    MilestoneStatus: {
        MilestoneStatus.due: N_("due"),
        MilestoneStatus.postponed: N_("postponed"),
        MilestoneStatus.received: N_("received"),
        MilestoneStatus.approved: N_("approved"),
        MilestoneStatus.returned: N_("returned for completion"),
        MilestoneStatus.overdue: N_("overdue"),
        MilestoneStatus.to_invoice: N_("to invoice"),
        MilestoneStatus.invoiced: N_("invoiced"),
        MilestoneStatus.paid: N_("paid"),
        MilestoneStatus.planned: N_("planned"),
        MilestoneStatus.held: N_("held"),
        MilestoneStatus.open: N_("open"),
        MilestoneStatus.decided: N_("decided"),
        MilestoneStatus.passed: N_("passed"),
    },
    MilestoneKind: {
        MilestoneKind.signing: N_("signing"),
        MilestoneKind.invoice: N_("invoicing"),
        MilestoneKind.in_kind: N_("in-kind contribution"),
        MilestoneKind.report_due: N_("report"),
        MilestoneKind.meeting: N_("meeting"),
        MilestoneKind.notice_deadline: N_("notice deadline"),
        MilestoneKind.extension_deadline: N_("extension deadline"),
        MilestoneKind.review_deadline: N_("review deadline"),
        MilestoneKind.withdrawal_opens: N_("withdrawal possible"),
        MilestoneKind.milestone: N_("milestone"),
        MilestoneKind.period_end: N_("end of period"),
        MilestoneKind.agreement_end: N_("end of the agreement"),
    },
    EndingKind: {
        EndingKind.expiry: N_("runs out"),
        EndingKind.non_renewal: N_("not renewed"),
        EndingKind.not_extended: N_("extension not approved"),
        EndingKind.termination: N_("terminated"),
        EndingKind.withdrawal: N_("a party withdrew"),
        EndingKind.rescission: N_("rescinded"),
    },
    RenewalKind: {
        RenewalKind.opt_out: N_("renews unless a party gives notice"),
        RenewalKind.opt_in: N_("extended only if every party approves"),
        RenewalKind.fixed: N_("ends on its date"),
    },
    Role: {
        Role.contact: N_("contact"),
        Role.signatory: N_("signatory"),
        Role.finance: N_("finance"),
        Role.convener: N_("convener"),
    },
    PartyKind: {
        PartyKind.public: N_("public body"),
        PartyKind.nonprofit: N_("non-profit organisation"),
        PartyKind.company: N_("company"),
    },
    DocumentKind: {
        DocumentKind.text: N_("agreement text"),
        DocumentKind.attachment: N_("attachment"),
    },
    ContributionKind: {
        ContributionKind.money: N_("money"),
        ContributionKind.in_kind: N_("in kind"),
    },
    SigningMethod: {
        SigningMethod.link: N_("signing link"),
        SigningMethod.paper: N_("on paper"),
        SigningMethod.bankid: N_("BankID (through the signing provider)"),
    },
    SigningMode: {
        SigningMode.parallel: N_("all at once"),
        SigningMode.sequential: N_("one after another"),
    },
}

# Who set a status or took a decision, when it was one of the service's own interfaces
# rather than a person's name.
ACTORS: dict[str, str] = {
    "web": N_("on the web"),
    "api": N_("through the API"),
    "coordinator": N_("by the coordinator"),
    "cli": N_("on the command line"),
    "local-key": N_("with the local key"),
    "signer link": N_("through the signing link"),
}
# A person's role in an organisation (agreements.access.PersonRole) and a token's scope.
PERSON_ROLES: dict[str, str] = {
    "administrator": N_("administrator"),
    "coordinator": N_("coordinator"),
    "finance": N_("finance"),
    "reader": N_("reader"),
}
SCOPES: dict[str, str] = {
    "read": N_("read only"),
    "decide": N_("read and decide"),
    "administer": N_("read, decide and administer (webhooks)"),
}


# Webhook event types (webhooks/events.py) and what became of a delivery
HOOK_WORDS: dict[str, str] = {
    "agreement.created": N_("agreement created"),
    "agreement.signed": N_("agreement signed by all"),
    "agreement.amended": N_("amendment signed"),
    "agreement.ended": N_("agreement ended"),
    "milestone.due": N_("milestone coming up"),
    "milestone.overdue": N_("milestone overdue"),
    "milestone.done": N_("milestone done (approved, paid, held)"),
    "invoice.due": N_("instalment to invoice"),
    "report.received": N_("report received"),
    "round.completed": N_("signature round completed"),
    "email.failed": N_("email could not be sent"),
    "pending": N_("being tried"),
    "delivered": N_("delivered"),
    "gone": N_("refused with 410 Gone: endpoint turned off"),
    "stopped": N_("not sent: endpoint turned off"),
    "failed": N_("gave up after three days"),
    "by_person": N_("turned off by a person"),
}


def hook_word(language: object, value: object) -> str:
    found = HOOK_WORDS.get(str(value))
    return text(language, found) if found else str(value)


def role_word(language: object, value: object) -> str:
    found = PERSON_ROLES.get(str(value))
    return text(language, found) if found else str(value)


def scope_word(language: object, value: object) -> str:
    found = SCOPES.get(str(value))
    return text(language, found) if found else str(value)


def word(language: object, value: StrEnum) -> str:
    """The word for an enum value in `language`."""
    return text(language, WORDS[type(value)][value])


def word_for(language: object, kind: type[StrEnum], value: object) -> str:
    """The word for a stored value (a string) of `kind`; a value the enum does not know is
    shown as it is (it came from a newer or older version, never from a person)."""
    raw = str(getattr(value, "value", value))
    try:
        return word(language, kind(raw))
    except ValueError:
        return raw


def actor(language: object, by: str | None) -> str | None:
    """How a setter reads when it is one of the service's own interfaces ("via webben");
    None for a person's name or nobody."""
    found = ACTORS.get(by or "")
    if found is None and by and by.startswith("cli:"):  # the command line, by an account
        return f"{text(language, ACTORS['cli'])} ({by.removeprefix('cli:')})"
    return text(language, found) if found else None


# What happened in a signature round (`SignatureEvent.what`), as its log shows it.
ROUND_EVENTS: dict[str, str] = {
    "sent": N_("invitation sent"),
    "started": N_("round started"),
    "reminded": N_("reminder sent"),
    "opened": N_("link opened"),
    "signed": N_("signed"),
    "declined": N_("declined"),
    "cancelled": N_("cancelled"),
    "expired": N_("expired"),
    "completed": N_("complete"),
}


def round_event(language: object, what: str) -> str:
    found = ROUND_EVENTS.get(what)
    return text(language, found) if found else what
