"""Words that can be said in the reader's language: an English message id with its parameters.

A rule on a field of the agreement file raises `Said` rather than a plain ValueError;
pydantic keeps the exception in its error's `ctx["error"]`, and the loader turns it into a
`Problem` (models/validation.py) that says the same in Swedish. Its own module, as the
field rules (models/agreement.py) are imported by the rules between fields.
"""

from __future__ import annotations

from collections.abc import Mapping

# The parameters of a message as text, in order: hashable, so a Problem stays frozen.
Params = tuple[tuple[str, str], ...]


def params_of(values: Mapping[str, object]) -> Params:
    """Every parameter as the text it is shown as (dates in ISO 8601, numbers as digits)."""
    return tuple((name, str(value)) for name, value in values.items())


class Said(ValueError):
    """A ValueError that can be said in another language: `msgid` is an English message
    marked with `N_` (so Babel finds it), `params` fill its `%(name)s` parameters. Its text
    (str) is the English message, as a plain ValueError's was."""

    def __init__(self, msgid: str, /, **params: object) -> None:
        self.msgid = msgid
        self.params = params_of(params)
        super().__init__(msgid % dict(self.params))
