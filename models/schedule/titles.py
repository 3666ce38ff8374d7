"""Milestone titles in plain Swedish and English: what a person reads on the timeline."""

from __future__ import annotations

import datetime as dt

_TITLES: dict[str, dict[str, str]] = {
    "sv": {
        "signing": "Överenskommelsen undertecknas",
        "period_end": "Avtalsperiod {period} slutar",
        "agreement_end.expiry": "Överenskommelsen upphör",
        "agreement_end.non_renewal": "Överenskommelsen upphör (förlängs inte)",
        "agreement_end.not_extended": "Överenskommelsen upphör (förlängningen godkändes inte)",
        "agreement_end.termination": "Överenskommelsen upphör efter uppsägning",
        "agreement_end.withdrawal": "Överenskommelsen upphör efter att en part gått ur",
        "agreement_end.rescission": "Överenskommelsen hävs",
        "notice_deadline": ("Sista dag att meddela att man inte förlänger (perioden slutar {end})"),
        "extension_deadline": (
            "Sista dag att skriftligen godkänna förlängning (överenskommelsen upphör {end})"
        ),
        "in_kind": "Insats i annat än pengar: {payer}, period {period}",
        "invoice": "Fakturering: {payer} betalar {payee}, period {period}",
        "report_due": "{name} ska lämnas",
        "report_due.covered": "{name} för {cover_start} – {cover_end} ska lämnas",
        "meeting": "{name} (sammankallande: {convener})",
        "withdrawal_opens": (
            "Från och med idag kan en part gå ur med {months} månaders skriftligt varsel"
        ),
    },
    "en": {
        "signing": "The agreement is signed",
        "period_end": "Agreement period {period} ends",
        "agreement_end.expiry": "The agreement ends",
        "agreement_end.non_renewal": "The agreement ends (not renewed)",
        "agreement_end.not_extended": "The agreement ends (extension not approved)",
        "agreement_end.termination": "The agreement ends after termination",
        "agreement_end.withdrawal": "The agreement ends after a party withdrew",
        "agreement_end.rescission": "The agreement is rescinded",
        "notice_deadline": "Last day to give notice of non-renewal (the period ends {end})",
        "extension_deadline": "Last day to approve the extension in writing (it ends {end})",
        "in_kind": "In-kind contribution: {payer}, period {period}",
        "invoice": "Invoicing: {payer} pays {payee}, period {period}",
        "report_due": "{name} is due",
        "report_due.covered": "{name} for {cover_start} – {cover_end} is due",
        "meeting": "{name} (convened by {convener})",
        "withdrawal_opens": "From today a party may withdraw with {months} months' written notice",
    },
}


def title(key: str, language: str, **values: object) -> str:
    table = _TITLES["en" if language == "en" else "sv"]
    if key == "report_due" and values.get("cover_start") is not None:
        key = "report_due.covered"
    shown = {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()}
    return table[key].format(**shown)
