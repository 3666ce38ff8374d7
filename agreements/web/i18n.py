"""Interface text: Swedish first (the source strings), English on request.

Pages call `t("svensk text")`; a missing English entry falls back to the Swedish text,
and a test checks that every string the templates use has an English entry.
"""

from __future__ import annotations

from collections.abc import Callable

EN: dict[str, str] = {
    "Avtal": "Agreements",
    "Kommande": "Upcoming",
    "Avtalstjänsten": "The agreement service",
    "Logga in": "Log in",
    "Nyckel (API-token)": "Key (API token)",
    "Fel nyckel.": "Wrong key.",
    "Läge": "State",
    "Löper": "Runs",
    "Nästa": "Next",
    "Inga avtal ännu. Lägg till ett med": "No agreements yet. Add one with",
    "Lägg till ett avtal": "Add an agreement",
    "Avtalsfilen (TOML)": "The agreement file (TOML)",
    "Lägg till avtalet": "Add the agreement",
    "Redan undertecknat den": "Already signed on",
    "Fyll i dagen om avtalet redan är undertecknat; det krävs när avtalsperioden har börjat. "
    "Avtalet tas då över som undertecknat och inget skickas för det som redan har passerat. "
    "Lämna tomt för att lägga till det som utkast och signera genom tjänsten.": (
        "Give the day if the agreement is already signed; it is required once its term has "
        "started. The agreement is then taken on as signed, and nothing is sent for what is "
        "already past. Leave it empty to add it as a draft and sign it through the service."
    ),
    "är inte ett datum": "is not a date",
    "slutar": "ends",
    "Kalender (.ics)": "Calendar (.ics)",
    "Bekräfta förutsättningarna för IOP innan signering": (
        "Confirm the IOP prerequisites before signing"
    ),
    "Bekräfta alla": "Confirm all",
    "Starta signering": "Start signing",
    "Signering": "Signing",
    "omgång": "round",
    "e-post": "email",
    "Registrera pappersunderskrift": "Record a paper signature",
    "skäl": "reason",
    "Avbryt signeringen": "Cancel signing",
    "Tidslinje": "Timeline",
    "i natura": "in kind",
    "värde": "value",
    "för första perioden": "for the first period",
    "för period": "for period",
    "Datum": "Date",
    "Skrivet": "Written",
    "Vad": "What",
    "Beslut": "Decisions",
    "nr": "no.",
    "Rapport inlämnad": "Report received",
    "Förlänger inte (uppsägning)": "Will not renew (notice)",
    "Godkänner förlängning": "Approves the extension",
    "Säg upp": "Terminate",
    "Går ur": "Withdraws",
    "Häv": "Rescind",
    "Ändra utkastets villkor": "Change the draft's terms",
    "Den nya avtalsfilen (TOML), med samma id": "The new agreement file (TOML), with the same id",
    "Ersätt villkoren": "Replace the terms",
    "När en part har sagt att den går ur beslutar övriga parter om avtalet upphör helt eller "
    "fortsätter utan parten.": (
        "When a party has given notice that it withdraws, the remaining parties decide whether "
        "the agreement ends altogether or goes on without that party."
    ),
    "går ur avtalet. Övriga parter beslutar om avtalet upphör helt eller fortsätter utan parten.": (
        "withdraws from the agreement. The remaining parties decide whether it ends altogether "
        "or goes on without that party."
    ),
    "Övriga fortsätter": "The others go on",
    "Avtalet upphör helt": "The agreement ends altogether",
    "Ändra avtalet": "Amend the agreement",
    "Det ändrade avtalet (TOML), med samma id och startdatum": (
        "The amended agreement (TOML), with the same id and start date"
    ),
    "Skicka ändringen för signering": "Send the amendment for signing",
    "E-post": "Email",
    "Status": "Status",
    "Till": "To",
    "Ämne": "Subject",
    "Händelser": "Events",
    "Belopp": "Amount",
    "Ladda ner CSV": "Download CSV",
    "Allt": "Everything",
    "Fakturering": "Invoicing",
    "dagar": "days",
    "Inget de närmaste dagarna.": "Nothing in the coming days.",
    "Det gick inte": "That did not work",
    "Hej": "Hello",
    "Du ombeds underteckna överenskommelsen för": "You are asked to sign the agreement for",
    "Parter": "Parties",
    "Period": "Term",
    "förlängning": "renewal",
    "Syfte": "Purpose",
    "Bidrag": "Contribution",
    "till": "to",
    "per period": "per period",
    "i annat än pengar": "in kind",
    "Rapport": "Report",
    "Villkorens fingeravtryck (SHA-256)": "Fingerprint of the terms (SHA-256)",
    "Jag undertecknar": "I sign",
    "Avböja": "Decline",
    "Varför?": "Why?",
    "Avböj": "Decline",
    "Tack! Din underskrift är registrerad.": "Thank you! Your signature is recorded.",
    "Du har avböjt att underteckna. Samordnaren och övriga har fått besked.": (
        "You have declined to sign. The coordinator and the others have been told."
    ),
    "Signeringen är stängd": "Signing is closed",
    "Svenska": "Svenska",
    "English": "English",
    # A milestone's status and what a person records on it (the agreement page).
    "förfaller": "due",
    "uppskjuten": "postponed",
    "mottagen": "received",
    "godkänd": "approved",
    "återlämnad för komplettering": "returned for completion",
    "försenad": "overdue",
    "att fakturera": "to invoice",
    "fakturerad": "invoiced",
    "betald": "paid",
    "planerat": "planned",
    "hållet": "held",
    "öppen": "open",
    "beslutad": "decided",
    "passerad": "passed",
    "av": "by",
    "fakturanr": "invoice no.",
    "ny sista dag": "new due date",
    "saknas": "missing",
    "beslutat av": "decided by",
    "via webben": "on the web",
    "via API": "through the API",
    "av samordnaren": "by the coordinator",
    "Fakturanummer": "Invoice number",
    "Fakturerad": "Invoiced",
    "Betald": "Paid",
    "Hållet": "Held",
    "Godkänn": "Approve",
    "Returnera för komplettering": "Return for completion",
    "Vad saknas?": "What is missing?",
    "Fakturadatum": "Invoice date",
    "Betalningsdag": "Payment date",
    "Mötesdag": "Meeting date",
}

# Swedish words for MilestoneStatus values (the source strings; English through `EN`).
STATUS: dict[str, str] = {
    "due": "förfaller",
    "postponed": "uppskjuten",
    "received": "mottagen",
    "approved": "godkänd",
    "returned": "återlämnad för komplettering",
    "overdue": "försenad",
    "to_invoice": "att fakturera",
    "invoiced": "fakturerad",
    "paid": "betald",
    "planned": "planerat",
    "held": "hållet",
    "open": "öppen",
    "decided": "beslutad",
    "passed": "passerad",
}
# Who set a status, when it was the service's own interface rather than a person's name.
ACTOR: dict[str, str] = {"web": "via webben", "api": "via API", "coordinator": "av samordnaren"}


def status_word(status: object) -> str:
    """The Swedish word for a milestone's status (an enum or its value); unknown as is."""
    value = str(getattr(status, "value", status))
    return STATUS.get(value, value)


def actor_word(by: str) -> str | None:
    """How a status's setter reads when it is one of the service's own interfaces ("via
    webben"); None for a person's name (shown as "av <name>")."""
    return ACTOR.get(by)


def translator(language: str) -> Callable[[str], str]:
    if language == "en":
        return lambda text: EN.get(text, text)
    return lambda text: text
