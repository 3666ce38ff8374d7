"""Read one agreement file (TOML) into a validated `Agreement`, or say exactly what is wrong."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from i18n import N_
from models.agreement import KEY_PATTERN, KIND_PATTERN, PHONE_PATTERN, Agreement
from models.said import Params, Said, params_of
from models.validation import Problem, check, not_an_address

MAX_FILE_BYTES = 1_000_000

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "missing (required)",
}

# Each kind of pydantic error an agreement file can meet, in words a reader of any language
# is given (the English message stays pydantic's own). Parameters are the error's context
# (`ctx`); a kind not here is said in English in every language.
_SAID: dict[str, str] = {
    "missing": N_("missing (required)"),
    "extra_forbidden": N_("unknown key"),
    "string_too_long": N_("should have at most %(max_length)s characters"),
    "string_type": N_("should be text (in quotes)"),
    "int_parsing": N_("should be a whole number"),
    "int_type": N_("should be a whole number"),
    "int_from_float": N_("should be a whole number, without decimals"),
    "greater_than_equal": N_("should be at least %(ge)s"),
    "less_than_equal": N_("should be at most %(le)s"),
    "greater_than": N_("should be greater than %(gt)s"),
    "less_than": N_("should be less than %(lt)s"),
    "bool_parsing": N_("should be true or false"),
    "bool_type": N_("should be true or false"),
    "date_parsing": N_("should be a date (YYYY-MM-DD, e.g. 2025-01-31)"),
    "date_from_datetime_parsing": N_("should be a date (YYYY-MM-DD, e.g. 2025-01-31)"),
    "date_type": N_("should be a date (YYYY-MM-DD, e.g. 2025-01-31)"),
    "date_from_datetime_inexact": N_("should be a date without a time of day (YYYY-MM-DD)"),
    "time_parsing": N_("should be a time of day (HH:MM, e.g. 08:00)"),
    "time_type": N_("should be a time of day (HH:MM, e.g. 08:00)"),
    "enum": N_("should be one of %(allowed)s"),
    "literal_error": N_("should be one of %(allowed)s"),
    "too_short": N_("too few: at least %(min_length)s needed, %(actual_length)s given"),
    "dict_type": N_("should be a table (keys with values), not a single value or a list"),
    "model_type": N_("should be a table (keys with values), not a single value or a list"),
    "list_type": N_("should be a list: [ … ]"),
}

# The patterns of the agreement file's text fields, in words.
_PATTERNS = {
    KEY_PATTERN: N_(
        "should be a key: lowercase letters a–z, digits and hyphens, starting with a letter "
        "or digit, at most 63 characters (no spaces, no å, ä or ö)"
    ),
    PHONE_PATTERN: N_(
        "should be a phone number: digits, perhaps a + first, and spaces, hyphens or "
        "parentheses (e.g. 042-10 50 00)"
    ),
    KIND_PATTERN: N_("should be 'iop' or 'grant'"),
}


class AgreementFileError(Exception):
    """An agreement file that cannot be used, with every problem found in it."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)

    def said(self, language: object) -> str:
        """Every problem in `language`, one a line, each after the file's name."""
        return "\n".join(f"{self.source}: {p.located(language)}" for p in self.problems)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _shown(value: Any) -> str:
    """A value as the file writes it (strings quoted, dates in ISO 8601), at most 60 long."""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, dt.date | dt.time):
        shown = value.isoformat()
    else:
        shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _said(item: Any) -> tuple[str | None, Params, bool]:
    """The message id of a pydantic error, its parameters, and whether the message names
    the value given (then it is not added after it)."""
    kind = item["type"]
    ctx = item.get("ctx") or {}
    error = ctx.get("error")
    if isinstance(error, Said):
        return error.msgid, error.params, False
    if kind == "value_error" and str(item["msg"]).startswith("value is not a valid email"):
        address = params_of({"address": _shown(item.get("input"))})
        return not_an_address(str(ctx.get("reason", ""))), address, True
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return N_("must not be empty"), (), True
        return N_("should have at least %(min_length)s characters"), params_of(ctx), False
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        if pattern in _PATTERNS:
            return _PATTERNS[pattern], (), False
        return N_("should match the pattern %(pattern)s"), params_of({"pattern": pattern}), False
    if kind in ("enum", "literal_error"):
        # pydantic says "'a', 'b' or 'c'": the values, listed the same in every language.
        allowed = re.sub(r" or ('[^']*')$", r", \1", str(ctx.get("expected", "")))
        return _SAID[kind], params_of({"allowed": allowed}), False
    if kind == "too_long":
        if ctx.get("actual_length") is None:
            msgid = N_("too many: at most %(max_length)s allowed")
        else:
            msgid = N_("too many: at most %(max_length)s allowed, %(actual_length)s given")
        return msgid, params_of(ctx), False
    if kind in _SAID:
        return _SAID[kind], params_of(ctx), False
    return None, (), False


def _said_fully(item: Any) -> tuple[str | None, Params, bool]:
    """`_said`, where the parameters fill the message id; or no id (said in English)."""
    msgid, params, named = _said(item)
    try:
        if msgid is not None:
            msgid % dict(params)
    except (KeyError, ValueError, TypeError):
        return None, (), False
    return msgid, params, named


def _problems(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        message = _MESSAGES.get(item["type"]) or str(item["msg"]).removeprefix("Value error, ")
        msgid, params, named = _said_fully(item)
        got = None
        if (
            item["type"] not in _MESSAGES
            and "input" in item
            and not isinstance(item["input"], dict | list)
        ):
            shown = repr(item["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            if shown not in message:
                message = f"{message} (got {shown})"
                got = None if named else _shown(item["input"])
        location = _location(tuple(item["loc"]))
        problems.append(Problem(location, message, msgid, params, got))
    return problems


def parse_agreement(data: dict[str, Any], source: str) -> Agreement:
    try:
        agreement = Agreement.model_validate(data)
    except ValidationError as error:
        raise AgreementFileError(source, _problems(error)) from None
    problems = check(agreement)
    if problems:
        raise AgreementFileError(source, problems)
    return agreement


def loads_agreement(text: str, source: str = "<text>") -> Agreement:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AgreementFileError(source, [_not_toml(error)]) from None
    return parse_agreement(data, source)


def _not_toml(error: tomllib.TOMLDecodeError) -> Problem:
    """The parser's words stay in the English message; the others say where."""
    message = f"not valid TOML: {error}"
    where = re.search(r"\(at line (\d+), column (\d+)\)$", str(error))
    if where is not None:
        msgid = N_("not valid TOML: an error at line %(line)s, column %(column)s")
        params = params_of({"line": where[1], "column": where[2]})
        return Problem("", message, msgid, params)
    if str(error).endswith("(at end of document)"):
        return Problem("", message, N_("not valid TOML: an error at the end of the file"))
    return Problem("", message, N_("not valid TOML"))


def _unreadable(error: OSError) -> Problem:
    message = f"cannot read: {error.strerror}"
    if isinstance(error, FileNotFoundError):
        return Problem("", message, N_("cannot read: there is no such file"))
    if isinstance(error, IsADirectoryError):
        return Problem("", message, N_("cannot read: it is a folder, not a file"))
    if isinstance(error, PermissionError):
        return Problem("", message, N_("cannot read: no permission to read the file"))
    return Problem("", message, N_("cannot read the file"))


def load_agreement(path: str | Path) -> Agreement:
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AgreementFileError(source, [_unreadable(error)]) from None
    if len(raw) > MAX_FILE_BYTES:
        too_large = N_("%(size)s bytes is larger than %(limit)s bytes")
        problem = Problem.of("", too_large, size=len(raw), limit=MAX_FILE_BYTES)
        raise AgreementFileError(source, [problem])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        problem = Problem.of("", N_("not UTF-8 text (byte %(byte)s)"), byte=error.start)
        raise AgreementFileError(source, [problem]) from None
    return loads_agreement(text, source)


def _plain(value: Any) -> Any:
    """A dumped model as TOML holds it: enums as their values, nothing None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if v is not None]
    if isinstance(value, Enum):
        return value.value
    return value


def dumps_agreement(agreement: Agreement) -> str:
    """The agreement as an agreement file (TOML) that `loads_agreement` reads back to the
    same terms: what the file says, without the defaults it need not say."""
    data = agreement.model_dump(mode="python", by_alias=True, exclude_defaults=True)
    return tomli_w.dumps(_plain(data))


def copy_of(agreement: Agreement, new_id: str, title: str) -> Agreement:
    """An earlier agreement as the start of a new one: a new id and title, and not marked
    as signed or planned (the new one is signed on its own)."""
    signing = agreement.signing.model_copy(update={"signed": None, "planned": None})
    return agreement.model_copy(update={"id": new_id, "title": title, "signing": signing})


def template_from(agreement: Agreement, new_id: str, title: str) -> str:
    """An earlier agreement as the start of a new one, as an agreement file (`copy_of`)."""
    return dumps_agreement(copy_of(agreement, new_id, title))
