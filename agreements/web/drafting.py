"""Drafting an agreement in the pages: the form's fields and the agreement's terms, both ways.

The form shows what a coordinator decides (the agreement, its parties and contacts, money,
follow-up, term, the IOP prerequisites, signing) as flat fields named by their place:
`title`, `term.start`, `party.0.name`, `party.0.contact.1.email`, `contribution.0.amount`.
Parties are referred to by their row (`coordinator.party = "1"`), so a party typed a moment
ago can be chosen at once; the keys the terms use are made from the names (and kept, once
made, in a hidden field). What the form does not show (reminder offsets, explicit dates,
reviews and the like) travels in hidden `kept` fields as JSON, so an agreement opened in the
form and saved unchanged has the same terms (tests/test_drafting.py holds that).

The terms are checked exactly as a file is (`models.loader.parse_agreement`), and each
problem is put next to the field it is about, in the page's language.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from i18n import N_, text
from models.agreement import Agreement, Document
from models.loader import AgreementFileError, parse_agreement
from models.plan import MilestoneState, Plan
from models.prerequisites import CHECKLIST
from models.validation import Problem
from workflows.decider import unrecorded

Fields = dict[str, Any]  # a field's value: str, or list[str] for the checkbox groups

# What each part of the form shows, as paths within the part.
TOP = ("id", "title", "reference", "kind", "language", "purpose")
COORDINATOR = ("name", "email", "phone", "party", "language")
PARTY = ("name", "kind", "org_number", "address", "signs")
CONTACT = ("name", "title", "email", "phone", "roles", "language")
TERM = (
    "start",
    "end",
    "period_months",
    "renewal",
    "renewal_months",
    "notice_months",
    "max_total_months",
)
CONTRIBUTION = ("payer", "payee", "kind", "description", "amount", "instalments.per_period")
REPORT = ("name", "party", "every_months", "due_months")
MEETINGS = ("name", "every_months", "min_per_period", "convener")
MILESTONE = ("title", "date")
SIGNING = ("method", "mode", "expires_days")
DOCUMENT = ("name", "kind")  # the rest (hash, size, pages) is kept as it came from the store
# The parts of an item that name a party (by its row in the form).
PARTY_REFS = {"coordinator.party", "meetings.convener"}
ITEM_PARTY_REFS = {"payer", "payee", "party"}
# A row counts as filled in when one of these has something in it.
MEANINGFUL = {
    "party": ("name", "org_number", "address"),
    "contact": ("name", "title", "email", "phone"),
    "contribution": ("payer", "amount", "description"),
    "report": ("name",),
    "milestone": ("title", "date"),
    "document": ("name",),
}
MULTI = ("roles",)  # checkbox groups within items; `prerequisites` at the top
NUMBERS = {"amount"}  # written with spaces or "kr" by people: "650 000 kr"
LIMITS = {
    "party": 100,
    "contact": 50,
    "contribution": 500,
    "report": 50,
    "milestone": 200,
    "document": 50,
}
KEYED = ("report", "milestone")  # items with a key the terms refer to
MAX_VALUE = 4000  # characters in one field (the longest the terms take: the purpose)
MAX_KEPT = 200_000


# --- fields from terms -----------------------------------------------------------------------


def _get(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _drop(data: dict[str, Any], path: str) -> None:
    head, _, rest = path.partition(".")
    if not rest:
        data.pop(head, None)
    elif isinstance(data.get(head), dict):
        _drop(data[head], rest)
        if not data[head]:
            data.pop(head)


def _shown(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _kept(data: Mapping[str, Any], shown: Iterable[str]) -> str:
    rest = copy.deepcopy(dict(data))
    for path in shown:
        _drop(rest, path)
    return json.dumps(rest, ensure_ascii=False, sort_keys=True) if rest else ""


def fields_of(agreement: Agreement) -> Fields:
    """The form filled in with the agreement's terms."""
    full = agreement.model_dump(mode="json")
    lean = agreement.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    row_of = {key: str(n) for n, key in enumerate(agreement.parties)}
    fields: Fields = {}
    for name in TOP:
        fields[name] = _shown(full.get(name))
    for name in COORDINATOR:
        fields[f"coordinator.{name}"] = _shown(full["coordinator"].get(name))
    for name in TERM:
        fields[f"term.{name}"] = _shown(full["term"].get(name))
    for name in SIGNING:
        fields[f"signing.{name}"] = _shown(full["signing"].get(name))
    fields["withdrawal.notice_months"] = _shown(_get(full, "withdrawal.notice_months"))
    fields["termination.notice_months"] = _shown(_get(full, "termination.notice_months"))
    for name in MEETINGS:
        fields[f"meetings.{name}"] = _shown(_get(full, f"meetings.{name}"))
    fields["prerequisites"] = [k for k, done in agreement.prerequisites.items() if done]
    for ref in PARTY_REFS:
        fields[ref] = row_of.get(fields[ref], "")
    for p, (key, party) in enumerate(full["parties"].items()):
        fields[f"party.{p}.key"] = key
        for name in PARTY:
            fields[f"party.{p}.{name}"] = _shown(party.get(name))
        fields[f"party.{p}.kept"] = _kept(lean["parties"][key], (*PARTY, "contacts"))
        for c, contact in enumerate(party["contacts"]):
            for name in CONTACT:
                fields[f"party.{p}.contact.{c}.{name}"] = _shown(contact.get(name))
            kept = _kept(lean["parties"][key]["contacts"][c], CONTACT)
            fields[f"party.{p}.contact.{c}.kept"] = kept
    for group, shows, items, lean_items in (
        ("contribution", CONTRIBUTION, full["contributions"], lean.get("contributions", [])),
        ("report", REPORT, full["reports"], lean.get("reports", [])),
        ("milestone", MILESTONE, full["milestones"], lean.get("milestones", [])),
        ("document", DOCUMENT, full["documents"], lean.get("documents", [])),
    ):
        for n, item in enumerate(items):
            if "key" in item:
                fields[f"{group}.{n}.key"] = item["key"]
            for name in shows:
                value = _shown(_get(item, name))
                if name in ITEM_PARTY_REFS:
                    value = row_of.get(value, "")
                fields[f"{group}.{n}.{name}"] = value
            fields[f"{group}.{n}.kept"] = _kept(lean_items[n], (*shows, "key"))
    top_shown = [
        *TOP,
        *(f"coordinator.{n}" for n in COORDINATOR),
        *(f"term.{n}" for n in TERM),
        *(f"signing.{n}" for n in SIGNING),
        *(f"meetings.{n}" for n in MEETINGS),
        "withdrawal.notice_months",
        "termination.notice_months",
        "parties",
        "contributions",
        "reports",
        "milestones",
        "documents",
        "prerequisites",
    ]
    fields["kept"] = _kept(lean, top_shown)
    # Prerequisites written as not met stay in the terms as they were.
    unmet = [k for k, done in agreement.prerequisites.items() if not done]
    fields["prerequisites.unmet"] = " ".join(unmet)
    return fields


def blank() -> Fields:
    """A new agreement's form: two parties with a contact each, one contribution, one
    report, the usual choices made."""
    fields: Fields = {
        "kind": "iop",
        "language": "sv",
        "term.period_months": "12",
        "term.renewal": "fixed",
        "signing.method": "link",
        "signing.mode": "parallel",
        "signing.expires_days": "30",
        "meetings.name": "",
        "prerequisites": [],
    }
    for p, kind in enumerate(("public", "nonprofit")):
        fields.update(_new_party(p, kind))
    fields.update(_new_row("contribution", 0))
    fields.update(_new_row("report", 0))
    return fields


def _new_party(p: int, kind: str = "nonprofit") -> Fields:
    return {f"party.{p}.kind": kind, f"party.{p}.signs": "yes", **_new_contact(p, 0)}


def _new_contact(p: int, c: int) -> Fields:
    return {f"party.{p}.contact.{c}.roles": ["contact", "signatory"] if c == 0 else ["contact"]}


def _new_row(group: str, n: int) -> Fields:
    match group:
        case "contribution":
            return {
                f"contribution.{n}.kind": "money",
                f"contribution.{n}.instalments.per_period": "1",
            }
        case "report":
            return {f"report.{n}.due_months": "1"}
    return {}


def rows(fields: Mapping[str, Any], group: str, within: str = "") -> list[int]:
    """The row numbers of a repeated part of the form, in order: `rows(f, "party")`,
    `rows(f, "contact", "party.0.")`."""
    prefix = f"{within}{group}."
    found = set()
    for name in fields:
        if name.startswith(prefix):
            head = name[len(prefix) :].split(".", 1)[0]
            if head.isdigit() and int(head) < LIMITS.get(group, 100):
                found.add(int(head))
    return sorted(found)


def with_document(fields: Fields, document: Document) -> Fields:
    """The form with a document just uploaded (kept in the store) as its last row."""
    fields = dict(fields)
    n = max(rows(fields, "document"), default=-1) + 1
    fields[f"document.{n}.name"] = document.name
    fields[f"document.{n}.kind"] = document.kind.value
    rest = {"sha256": document.sha256, "size": document.size, "pages": document.pages}
    fields[f"document.{n}.kept"] = json.dumps(rest)
    return fields


def document_facts(fields: Mapping[str, Any], n: int) -> dict[str, Any]:
    """What the form keeps of a document row besides its name and kind (hash, size, pages)."""
    try:
        found = json.loads(_value(fields, f"document.{n}.kept") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def grown(fields: Fields, more: str) -> Fields:
    """The form with one more row where the person asked for one (`party`, `contribution`,
    `report`, `milestone`, or `contact.<party row>`)."""
    fields = dict(fields)
    group, _, within = more.partition(".")
    if group == "contact" and within.isdigit():
        taken = rows(fields, "contact", f"party.{within}.")
        if len(taken) < LIMITS["contact"]:
            fields.update(_new_contact(int(within), max(taken, default=-1) + 1))
    elif group in ("party", "contribution", "report", "milestone"):
        taken = rows(fields, group)
        if len(taken) < LIMITS[group]:
            n = max(taken, default=-1) + 1
            fields.update(_new_party(n) if group == "party" else _new_row(group, n))
    return fields


def read_form(form: Any) -> Fields:
    """The draft's fields from a sent form (a starlette FormData), each cut to a sane size;
    anything that is not one of the form's fields is left out."""
    fields: Fields = {}
    for name in form:
        if len(name) > 80 or not _known(name):
            continue
        if name == "prerequisites" or name.rsplit(".", 1)[-1] in MULTI:
            fields[name] = [v[:64] for v in form.getlist(name) if isinstance(v, str)][:20]
            continue
        value = form.get(name)
        if isinstance(value, str):
            limit = MAX_KEPT if name.endswith("kept") else MAX_VALUE
            fields[name] = value[:limit]
    return fields


_FIELD = re.compile(
    r"^(?:(?:id|title|reference|kind|language|purpose|kept|prerequisites|prerequisites\.unmet"
    r"|upload_kind|based_on)"
    r"|(?:coordinator|term|signing|meetings|withdrawal|termination)\.[a-z_]+"
    r"|party\.\d+\.(?:key|kept|[a-z_]+|contact\.\d+\.(?:kept|[a-z_]+))"
    r"|(?:contribution|report|milestone|document)\.\d+\.(?:key|kept|[a-z_]+(?:\.[a-z_]+)?))$"
)


def _known(name: str) -> bool:
    return bool(_FIELD.match(name))


# --- terms from fields -----------------------------------------------------------------------


@dataclass
class Draft:
    """What the form makes: the terms when they hold, and what is wrong, by field."""

    fields: Fields
    agreement: Agreement | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)  # problems no one field is about

    def add(self, name: str | None, message: str) -> None:
        if name is None:
            if message not in self.general:
                self.general.append(message)
        elif message not in self.errors.setdefault(name, []):
            self.errors[name].append(message)

    @property
    def count(self) -> int:
        return len(self.general) + sum(len(v) for v in self.errors.values())


def slug(name: str, taken: Iterable[str] = (), limit: int = 40) -> str:
    """A key made from a name: 'Rädda Barnen region syd' -> 'radda-barnen-region-syd'."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")[:limit].strip("-") or "x"
    taken = set(taken)
    found, n = key, 2
    while found in taken:
        found = f"{key[: limit - 4]}-{n}"
        n += 1
    return found


def _value(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _filled(fields: Mapping[str, Any], prefix: str, group: str) -> bool:
    """Is the row filled in? (One that came with the terms, with parts the form does not
    show, is, whatever its shown fields say.)"""
    names = (*MEANINGFUL[group], "kept")
    return any(_value(fields, f"{prefix}{name}") for name in names)


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if rest:
        inner = data.get(head)
        if not isinstance(inner, dict):
            inner = data[head] = {}
        _put(inner, rest, value)
    else:
        data[head] = value


class _Builder:
    """Turns the fields into the data of an agreement file, remembering which field each
    part of the data came from (to put a problem next to it)."""

    def __init__(self, fields: Mapping[str, Any], draft: Draft, lang: str) -> None:
        self.fields = fields
        self.draft = draft
        self.lang = lang
        self.origin: dict[tuple[str | int, ...], str] = {}  # data path -> field name
        self.party_keys: dict[str, str] = {}  # party row -> key

    def kept(self, name: str) -> dict[str, Any]:
        raw = _value(self.fields, name)
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            self.draft.add(None, text(self.lang, "A hidden part of the form was damaged."))
            return {}
        return value

    def part(
        self,
        target: dict[str, Any],
        at: tuple[str | int, ...],
        prefix: str,
        names: Iterable[str],
        refs: Iterable[str] = (),
    ) -> None:
        """The fields `prefix + name` into `target` (which sits at `at` in the terms)."""
        for name in names:
            field_name = f"{prefix}{name}"
            path = (*at, *name.split("."))
            self.origin[path] = field_name
            if name in MULTI:
                values = self.fields.get(field_name, [])
                _put(target, name, list(values) if isinstance(values, list) else [])
                continue
            value: Any = _value(self.fields, field_name)
            if not value:
                continue
            if name in refs:
                key = self.party_keys.get(value)
                if key is None:
                    self.draft.add(field_name, text(self.lang, "Choose one of the parties."))
                    continue
                value = key
            elif name in NUMBERS:
                value = re.sub(r"(?i)\s|kr\.?$|:-$", "", value.replace("\u00a0", " "))
            elif name == "signs":
                value = value != "no"
            _put(target, name, value)

    def data(self) -> dict[str, Any]:
        f = self.fields
        data = self.kept("kept")
        taken: set[str] = set()
        party_rows = [p for p in rows(f, "party") if _filled(f, f"party.{p}.", "party")]
        for p in party_rows:
            key = _value(f, f"party.{p}.key") or slug(_value(f, f"party.{p}.name"), taken)
            taken.add(key)
            self.party_keys[str(p)] = key
        parties: dict[str, Any] = {}
        for p in party_rows:
            key = self.party_keys[str(p)]
            party = self.kept(f"party.{p}.kept")
            at: tuple[str | int, ...] = ("parties", key)
            self.origin[at] = f"party.{p}.name"
            self.part(party, at, f"party.{p}.", PARTY)
            contacts: list[dict[str, Any]] = []
            for c in rows(f, "contact", f"party.{p}."):
                prefix = f"party.{p}.contact.{c}."
                if not _filled(f, prefix, "contact"):
                    continue
                contact = self.kept(f"{prefix}kept")
                where = (*at, "contacts", len(contacts))
                self.origin[where] = f"{prefix}name"
                self.part(contact, where, prefix, CONTACT)
                contacts.append(contact)
            self.origin[(*at, "contacts")] = f"party.{p}.contact.0.name"
            party["contacts"] = contacts
            parties[key] = party
        data["parties"] = parties
        self.origin[("parties",)] = "party.0.name"
        for name in TOP:
            self.part(data, (), "", (name,))
        coordinator = data["coordinator"] = _section(data, "coordinator")
        self.part(coordinator, ("coordinator",), "coordinator.", COORDINATOR, PARTY_REFS_IN)
        self.origin[("coordinator",)] = "coordinator.name"
        term = data["term"] = _section(data, "term")
        self.part(term, ("term",), "term.", TERM)
        self.origin[("term",)] = "term.start"
        signing = data["signing"] = _section(data, "signing")
        self.part(signing, ("signing",), "signing.", SIGNING)
        for section in ("withdrawal", "termination"):
            name = f"{section}.notice_months"
            self.origin[(section,)] = name
            if _value(f, name):
                target = data[section] = _section(data, section)
                self.part(target, (section,), f"{section}.", ("notice_months",))
            elif section == "withdrawal":
                data.pop(section, None)  # no notice time: no withdrawal clause
            elif isinstance(data.get(section), dict):
                data[section].pop("notice_months", None)
        if any(_value(f, f"meetings.{n}") for n in ("every_months", "min_per_period", "convener")):
            meetings = data["meetings"] = _section(data, "meetings")
            self.part(meetings, ("meetings",), "meetings.", MEETINGS, PARTY_REFS_IN)
            self.origin[("meetings",)] = "meetings.every_months"
        else:
            data.pop("meetings", None)
        for group, plural, shows in (
            ("contribution", "contributions", CONTRIBUTION),
            ("report", "reports", REPORT),
            ("milestone", "milestones", MILESTONE),
            ("document", "documents", DOCUMENT),
        ):
            items: list[dict[str, Any]] = []
            keys: set[str] = set()
            for n in rows(f, group):
                prefix = f"{group}.{n}."
                if not _filled(f, prefix, group) or _value(f, f"{prefix}remove") == "yes":
                    continue
                item = self.kept(f"{prefix}kept")
                where = (plural, len(items))
                self.origin[where] = f"{prefix}{shows[0]}"
                if group in KEYED:
                    name = _value(f, f"{prefix}{shows[0]}")
                    key = _value(f, f"{prefix}key") or slug(name, keys)
                    keys.add(key)
                    item["key"] = key
                    self.origin[(*where, "key")] = f"{prefix}{shows[0]}"
                self.part(item, where, prefix, shows, ITEM_PARTY_REFS)
                items.append(item)
            data[plural] = items
            self.origin[(plural,)] = f"{group}.0.{shows[0]}"
        chosen = f.get("prerequisites", [])
        chosen = chosen if isinstance(chosen, list) else []
        unmet = _value(f, "prerequisites.unmet").split()
        data["prerequisites"] = {
            **{k: False for k in unmet if k in CHECKLIST and k not in chosen},
            **{k: True for k in chosen if k in CHECKLIST},
        }
        self.origin[("prerequisites",)] = "prerequisites"
        if not _value(f, "id") and _value(f, "title"):
            data["id"] = slug(_value(f, "title"), limit=48)
        return data

    def field_for(self, location: str) -> str | None:
        """The field a problem's location is about: the nearest part the form shows."""
        path = _path(location)
        while path:
            if path in self.origin:
                return self.origin[path]
            path = path[:-1]
        return None


# The parts of the coordinator and meetings naming a party.
PARTY_REFS_IN = ("party", "convener")


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A part of the kept terms to fill in (a new one if it is not a table)."""
    found = data.get(name)
    return found if isinstance(found, dict) else {}


def _path(location: str) -> tuple[str | int, ...]:
    """'parties.kommun.contacts[0].email' -> ('parties', 'kommun', 'contacts', 0, 'email')."""
    path: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", location):
        path.append(int(index) if index else name)
    return tuple(path)


def said(problem: Problem, lang: str) -> str:
    """The problem's message in the page's language (as far as the catalog says it)."""
    say = getattr(problem, "said", None)
    return str(say(lang)) if callable(say) else problem.message


def build(fields: Fields, lang: str) -> Draft:
    """The agreement the form describes, or what is wrong with it, each next to its field."""
    draft = Draft(fields=fields)
    builder = _Builder(fields, draft, lang)
    data = builder.data()
    if draft.count:
        return draft
    try:
        draft.agreement = parse_agreement(data, text(lang, "the form"))
    except AgreementFileError as error:
        for problem in error.problems:
            draft.add(builder.field_for(problem.location), said(problem, lang))
    return draft


# --- the plan beside the form ----------------------------------------------------------------


def first_states(result: Plan) -> list[MilestoneState]:
    """The planned milestones as a new agreement's would stand: nothing recorded yet (the
    decider's rule, `workflows.decider.unrecorded`)."""
    return [unrecorded(m) for m in result.milestones]


# What part of the form a field is in, for the list of problems above it.
_PARTS = {
    "party": N_("Party %(n)s"),
    "contribution": N_("Contribution %(n)s"),
    "report": N_("Report %(n)s"),
    "milestone": N_("Date %(n)s"),
    "coordinator": N_("Coordinator"),
    "term": N_("Term"),
    "withdrawal": N_("Term"),
    "termination": N_("Term"),
    "meetings": N_("Steering group"),
    "signing": N_("Signing"),
    "prerequisites": N_("The IOP prerequisites"),
    "document": N_("Document %(n)s"),
    "upload": N_("Documents"),
}


def where(name: str, fields: Mapping[str, Any], lang: str) -> str | None:
    """'party.1.contact.0.email' -> 'Part 2, person 1': where in the form a field is, as
    its headings number it."""
    parts = name.split(".")
    label = _PARTS.get(parts[0])
    if label is None:
        return None
    if len(parts) < 2 or not parts[1].isdigit():
        return text(lang, label)
    taken = rows(fields, parts[0])
    n = taken.index(int(parts[1])) + 1 if int(parts[1]) in taken else int(parts[1]) + 1
    said = text(lang, label, n=n)
    if parts[0] == "party" and len(parts) > 3 and parts[2] == "contact" and parts[3].isdigit():
        within = rows(fields, "contact", f"party.{parts[1]}.")
        c = int(parts[3])
        m = within.index(c) + 1 if c in within else c + 1
        said = text(lang, "%(part)s, contact person %(n)s", part=said, n=m)
    return said
