"""The agreement file's typed model: what one TOML file may say about one agreement.

Field-level rules live on the fields; rules that span fields (references between
parties, dates that must fit the term) live in `models.validation` so that every
problem can be reported with the exact path it belongs to.
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, NoReturn, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from i18n import N_
from models.said import Said

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _single_line(value: str) -> str:
    # A newline in a name or title would end up in an email header or a calendar line.
    if _CONTROL.search(value):
        raise Said(N_("must be one line without control characters (newline, tab or similar)"))
    return value


def _plain_text(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise Said(N_("contains a control character"))
    return value


Line = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
    AfterValidator(_single_line),
]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=4000), AfterValidator(_plain_text)
]
# What a key (of a party, a report, a milestone…) looks like; a pattern the loader knows,
# to say so in words rather than as the pattern (models/loader.py).
KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ()-]{4,24}$"
KIND_PATTERN = r"^(iop|grant)$"
Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Phone = Annotated[str, StringConstraints(pattern=PHONE_PATTERN)]


def _plausible(value: dt.date) -> dt.date:
    # An agreement's dates lie within a lifetime; the year 9999 would overflow the calendar.
    if not FIRST_DAY <= value <= LAST_DAY:
        raise Said(N_("must lie between %(first)s and %(last)s"), first=FIRST_DAY, last=LAST_DAY)
    return value


FIRST_DAY = dt.date(1990, 1, 1)
LAST_DAY = dt.date(2199, 12, 31)
Day = Annotated[dt.date, AfterValidator(_plausible)]
Kronor = Annotated[int, Field(ge=0, le=10_000_000_000)]
Months = Annotated[int, Field(ge=1, le=600)]
Days = Annotated[int, Field(ge=0, le=3650)]


class _Names(set[str]):
    """The names of a model's fields that were set, one object for every instance with the
    same ones, so never changed: a copy is a plain set again (pydantic's `model_copy` adds
    to its copy). A set still, as pydantic's serializer asks for one."""

    __slots__ = ()

    def __copy__(self) -> set[str]:
        return set(self)

    def _shared(self, *_: object) -> NoReturn:
        raise TypeError("these names are shared by many models; change a copy")

    add = discard = remove = pop = clear = update = _shared
    difference_update = intersection_update = symmetric_difference_update = _shared
    __ior__ = __iand__ = __isub__ = __ixor__ = _shared


_NAMES: dict[frozenset[str], _Names] = {}
_ALL_NAMES: dict[type, _Names] = {}


def _shared_names(model: type[BaseModel], names: set[str]) -> _Names:
    every = _ALL_NAMES.get(model)
    if every is None:
        every = _ALL_NAMES.setdefault(model, _shared_names_of(frozenset(model.model_fields)))
    if len(names) == len(every):  # every field given, as in what our own JSON says
        return every
    return _shared_names_of(frozenset(names))


def _shared_names_of(key: frozenset[str]) -> _Names:
    found = _NAMES.get(key)
    return found if found is not None else _NAMES.setdefault(key, _Names(key))


# The parts of the terms this worker holds, each once: two agreements (or two runs of one)
# with the same coordinator, party, contact, reminders or rules share one object. Held
# weakly: a part no agreement uses any more is gone.
_PARTS: weakref.WeakValueDictionary[tuple[Any, ...], Strict] = weakref.WeakValueDictionary()
_PART_FIELDS: dict[type, tuple[str, ...]] = {}


def _holds_parts(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, Strict):
        return True
    return any(_holds_parts(inner) for inner in get_args(annotation))


def _part_fields(model: type[BaseModel]) -> tuple[str, ...]:
    found = _PART_FIELDS.get(model)
    if found is None:
        found = tuple(n for n, f in model.model_fields.items() if _holds_parts(f.annotation))
        _PART_FIELDS[model] = found
    return found


def _identity(value: Any) -> Any:
    """What a part is told apart by: the parts within it by identity (they are the shared
    ones already), containers by their items, anything else by its type and value."""
    if isinstance(value, Strict):
        return id(value)
    if isinstance(value, list):
        return (list, *map(_identity, value))
    if isinstance(value, dict):
        return (dict, *((k, _identity(v)) for k, v in value.items()))
    return (type(value), value)


def _share(value: Any) -> Any:
    if isinstance(value, Strict):
        names = value.__pydantic_fields_set__  # one of the shared sets: the same ones given
        key = (type(value), id(names), *map(_identity, value.__dict__.values()))
        try:
            found = _PARTS.get(key)
        except TypeError:  # a value that cannot be a key: this part stays its own
            return value
        return found if found is not None else _PARTS.setdefault(key, value)
    if isinstance(value, list):
        return [_share(v) for v in value]
    if isinstance(value, dict):
        return {k: _share(v) for k, v in value.items()}
    return value


class Lean(BaseModel):
    """A frozen model that a worker keeping a thousand agreements can hold a thousand of.

    Pydantic gives every instance its own set of the names of the fields it was given; for a
    model of twenty fields that set is larger than the values, and it was more than half of
    an agreement's terms in memory. The models are frozen, so the set never changes: every
    instance with the same names shares one. And the parts of the terms it holds (what the
    agreement file says) are the worker's shared ones where another agreement, or another
    run, holds the same: the terms do not change, and many agreements share a coordinator,
    parties, contacts and rules."""

    def model_post_init(self, context: Any, /) -> None:
        model = type(self)
        object.__setattr__(
            self, "__pydantic_fields_set__", _shared_names(model, self.__pydantic_fields_set__)
        )
        for name in _part_fields(model):
            self.__dict__[name] = _share(self.__dict__[name])

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        names = _shared_names(type(copied), copied.__pydantic_fields_set__)
        object.__setattr__(copied, "__pydantic_fields_set__", names)
        return copied


class Strict(Lean):
    """Base for every table in the file: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Language(StrEnum):
    sv = "sv"
    en = "en"


class PartyKind(StrEnum):
    public = "public"
    nonprofit = "nonprofit"
    company = "company"


class Role(StrEnum):
    contact = "contact"
    signatory = "signatory"
    finance = "finance"
    convener = "convener"


class RenewalKind(StrEnum):
    opt_out = "opt-out"  # renews unless a party gives notice by the deadline
    opt_in = "opt-in"  # extends only if every party approves by the deadline
    fixed = "fixed"  # ends on its date


class ContributionKind(StrEnum):
    money = "money"
    in_kind = "in_kind"


class SigningMode(StrEnum):
    parallel = "parallel"
    sequential = "sequential"


class SigningMethod(StrEnum):
    link = "link"  # personal signing links by email
    paper = "paper"  # printed copies; the coordinator records each signature
    bankid = "bankid"  # Swedish BankID through the signing provider (signing/)


class DateRule(StrEnum):
    """How the written date of a milestone becomes its effective date (DOMAIN.md)."""

    forward = "forward"  # "at the latest D": may be met on the next weekday
    back = "back"  # counted back from an end: never later; the last weekday on or before
    none = "none"  # the date stands as written (period ends, named milestones)


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalise_org_number(raw: str) -> str:
    """Return the organisation number as NNNNNN-NNNN, or raise ValueError (`Said`) saying
    why not."""
    digits = re.sub(r"[\s-]", "", raw)
    if len(digits) == 12 and digits.startswith("16"):
        digits = digits[2:]
    if not digits.isdigit() or len(digits) != 10:
        raise Said(
            N_("%(value)s is not an organisation number (expected NNNNNN-NNNN)"), value=repr(raw)
        )
    if int(digits[2]) < 2:
        raise Said(
            N_(
                "%(value)s looks like a personal identity number, which must not be stored; "
                "give the organisation's number"
            ),
            value=repr(raw),
        )
    if not luhn_ok(digits):
        raise Said(N_("%(value)s has a wrong check digit (Luhn)"), value=repr(raw))
    return f"{digits[:6]}-{digits[6:]}"


class Contact(Strict):
    name: Line
    title: Line | None = None
    email: EmailStr
    phone: Phone | None = None
    roles: list[Role] = Field(default_factory=lambda: [Role.contact], min_length=1)
    language: Language | None = None


class Party(Strict):
    name: Line
    kind: PartyKind
    org_number: str | None = None
    address: Line | None = None
    signs: bool = True  # a party that contributes but is not a signing party (seed 003's KFF)
    contacts: list[Contact] = Field(min_length=1, max_length=50)

    @field_validator("org_number")
    @classmethod
    def _org_number(cls, value: str | None) -> str | None:
        return None if value is None else normalise_org_number(value)


class Coordinator(Strict):
    name: Line
    email: EmailStr
    party: Key | None = None
    phone: Phone | None = None
    language: Language | None = None


class Term(Strict):
    start: Day
    end: Day  # last day of the initial term, inclusive
    period_months: Months = 12  # periods slice the term for money, reports and meetings
    renewal: RenewalKind = RenewalKind.fixed
    renewal_months: Months | None = None  # length of one renewal; default period_months
    notice_months: Annotated[int, Field(ge=0, le=60)] | None = None  # opt-out / opt-in deadline
    max_total_months: Months | None = None
    last_end: Day | None = None  # alternatively, the last possible end date


class Instalments(Strict):
    """When a contribution is invoiced. Give one of: per_period, per_year or dates."""

    per_period: Annotated[int, Field(ge=1, le=12)] | None = None
    per_year: Annotated[int, Field(ge=1, le=12)] | None = None
    dates: list[Day] | None = None
    # Instalment dates are "invoice at the latest" dates unless told otherwise.
    rule: DateRule = DateRule.forward


class Contribution(Strict):
    payer: Key
    payee: Key | None = None  # in-kind contributions go to the partnership
    kind: ContributionKind = ContributionKind.money
    description: Line | None = None
    amount: Kronor | None = None  # per period
    amounts: list[Kronor] | None = None  # per period, first period first
    periods: list[Annotated[int, Field(ge=1, le=600)]] | None = None  # only these periods
    instalments: Instalments = Field(default_factory=lambda: Instalments(per_period=1))

    @field_validator("amount", "amounts", mode="before")
    @classmethod
    def _whole_kronor(cls, value: object) -> object:
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, float):
                raise Said(N_("amounts are whole kronor (write 650000, not 650000.0)"))
            if isinstance(item, int) and item < 0:
                raise Said(N_("amount %(amount)s is negative"), amount=item)
        return value


class Report(Strict):
    key: Key
    name: Line
    party: Key  # responsible party
    every_months: Months | None = None  # default: the period length
    first_months: Months | None = None  # first covered interval ends this long after start
    due_months: Annotated[int, Field(ge=0, le=24)] = 1  # due after the covered interval ends
    due_days: Days = 0
    dates: list[Day] | None = None  # explicit due dates instead of a cadence


class Meetings(Strict):
    name: Line = "Styrgruppsmöte"
    every_months: Months | None = None
    min_per_period: Annotated[int, Field(ge=0, le=52)] = 0
    convener: Key
    offset_months: Annotated[int, Field(ge=0, le=24)] | None = None  # default: mid-window
    dates: list[Day] | None = None


class DatedItem(Strict):
    """A review, evaluation or named milestone: a fixed date, or months before the end."""

    key: Key
    title: Line
    date: Day | None = None
    months_before_end: Annotated[int, Field(ge=0, le=120)] | None = None
    rule: DateRule = DateRule.forward


class Milestone(DatedItem):
    rule: DateRule = DateRule.none


class DocumentKind(StrEnum):
    text = "text"  # the agreement's own text (avtalstext)
    attachment = "attachment"  # a bilaga


SHA256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Document(Strict):
    """One of the agreement's documents (a PDF), by its content: its SHA-256 is part of the
    terms, so what a signer signs is the terms and every document together. The bytes are in
    the document store (documents/store.py)."""

    sha256: SHA256
    name: Line
    kind: DocumentKind = DocumentKind.attachment
    size: Annotated[int, Field(ge=1, le=1_000_000_000)]  # bytes
    pages: Annotated[int, Field(ge=1, le=100_000)]


class Withdrawal(Strict):
    notice_months: Annotated[int, Field(ge=0, le=24)]
    opens: Day | None = None  # first day a party may give notice of withdrawal
    remaining_decide: bool = True  # the remaining parties decide whether it ends (seed 004)


class Termination(Strict):
    notice_months: Annotated[int, Field(ge=0, le=24)] | None = None
    rescission: bool = True  # hävning for serious breach
    repayment: bool = True  # a rescission may carry a repayment claim


class Signing(Strict):
    method: SigningMethod = SigningMethod.link
    mode: SigningMode = SigningMode.parallel
    expires_days: Annotated[int, Field(ge=1, le=365)] = 30
    reminder_every_days: Annotated[int, Field(ge=1, le=60)] = 7
    max_reminders: Annotated[int, Field(ge=0, le=20)] = 3
    planned: Day | None = None  # when the round starts, for the preview; default the term start
    signed: Day | None = None  # already signed (imported agreements)


def _offsets(*days: int) -> list[int]:
    return list(days)


class Reminders(Strict):
    """Days before a milestone's effective date that each kind of email is sent (0 = on the day)."""

    send_time: dt.time = dt.time(8, 0)
    invoice: list[Days] = Field(default_factory=lambda: _offsets(14, 0))
    report_due: list[Days] = Field(default_factory=lambda: _offsets(30, 7, 0))
    report_overdue_days: list[Days] = Field(default_factory=lambda: _offsets(3))
    meeting: list[Days] = Field(default_factory=lambda: _offsets(21))
    notice_deadline: list[Days] = Field(default_factory=lambda: _offsets(60, 30, 7))
    extension_deadline: list[Days] = Field(default_factory=lambda: _offsets(60, 30, 7))
    review_deadline: list[Days] = Field(default_factory=lambda: _offsets(30, 7))
    withdrawal_opens: list[Days] = Field(default_factory=lambda: _offsets(0))
    milestone: list[Days] = Field(default_factory=lambda: _offsets(0))
    agreement_end: list[Days] = Field(default_factory=lambda: _offsets(30, 0))
    escalate_days: Days = 14  # coordinator told when a decision is still missing this close


class Agreement(Strict):
    id: Key
    title: Line
    reference: Line | None = None  # diarienummer
    language: Language = Language.sv
    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN)] = "iop"
    purpose: Text | None = None
    coordinator: Coordinator
    parties: dict[Key, Party] = Field(min_length=2, max_length=100)
    term: Term
    contributions: list[Contribution] = Field(default_factory=list, max_length=500)
    reports: list[Report] = Field(default_factory=list, max_length=50)
    meetings: Meetings | None = None
    reviews: list[DatedItem] = Field(default_factory=list, max_length=50)
    milestones: list[Milestone] = Field(default_factory=list, max_length=200)
    withdrawal: Withdrawal | None = None
    termination: Termination = Field(default_factory=Termination)
    signing: Signing = Field(default_factory=Signing)
    reminders: Reminders = Field(default_factory=Reminders)
    prerequisites: dict[Key, bool] = Field(default_factory=dict)
    # The agreement text and its attachments (PDF); an amendment carries its own.
    documents: list[Document] = Field(default_factory=list, max_length=50)
