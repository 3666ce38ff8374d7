"""Read one agreement file (TOML) into a validated `Agreement`, or say exactly what is wrong."""

from __future__ import annotations

import tomllib
from enum import Enum
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from models.agreement import Agreement
from models.validation import Problem, check

MAX_FILE_BYTES = 1_000_000

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "missing (required)",
}


class AgreementFileError(Exception):
    """An agreement file that cannot be used, with every problem found in it."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _problems(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        message = _MESSAGES.get(item["type"]) or str(item["msg"]).removeprefix("Value error, ")
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
        problems.append(Problem(_location(tuple(item["loc"])), message))
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
        raise AgreementFileError(source, [Problem("", f"not valid TOML: {error}")]) from None
    return parse_agreement(data, source)


def load_agreement(path: str | Path) -> Agreement:
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AgreementFileError(source, [Problem("", f"cannot read: {error.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise AgreementFileError(
            source, [Problem("", f"{len(raw)} bytes is larger than {MAX_FILE_BYTES} bytes")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AgreementFileError(
            source, [Problem("", f"not UTF-8 text (byte {error.start})")]
        ) from None
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


def template_from(agreement: Agreement, new_id: str, title: str) -> str:
    """An earlier agreement as the start of a new one: its file with a new id and title,
    and not marked as signed (the new one is signed on its own)."""
    signing = agreement.signing.model_copy(update={"signed": None, "planned": None})
    copy = agreement.model_copy(update={"id": new_id, "title": title, "signing": signing})
    return dumps_agreement(copy)
