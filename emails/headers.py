"""Header values that no mail client can lose a space or a character of.

Python's own folding (email.policy) may break a long non-ASCII header between two
RFC 2047 encoded-words at a space, leaving the space outside them: every reader then drops
it, because white space between two encoded-words is not part of the text (RFC 2047 § 6.2).
A subject read "… 2024-12-02 (måndag)– IOP …". Here a header folds itself:

- text that is all ASCII is folded at its spaces (unfolding gives every space back) and is
  otherwise left as it is, up to the 998 characters a line may have;
- other text becomes Q encoded-words of whole characters, every space inside a word, each
  word at most 75 characters and each line at most 76 (RFC 2047 § 2), so a reader that
  joins the words gets the text back exactly;
- an address keeps its addr-spec as it is and encodes only the display name;
- a message sent with SMTPUTF8 carries the UTF-8 text itself.
"""

from __future__ import annotations

from email.policy import Policy
from email.utils import parseaddr, quote

from emails.render import one_line

WIDTH = 78  # RFC 5322 § 2.1.1: a line SHOULD be at most 78 characters
ENCODED_LINE = 76  # RFC 2047 § 2: a line with an encoded-word is at most 76 characters
ENCODED_WORD = 75  # RFC 2047 § 2: an encoded-word is at most 75 characters
_PREFIX = "=?utf-8?q?"
_SUFFIX = "?="
# The characters a Q encoded-word may carry as they are anywhere, even in a display name
# (RFC 2047 § 5 (3)); everything else is written =XX.
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_SPECIALS = set('()<>[]:;@\\,."')  # RFC 5322 § 3.2.3: a display name with one is quoted


_Q: dict[str, str] = {}  # each character as Q, once it has been written


def _q(char: str) -> str:
    piece = _Q.get(char)
    if piece is None:
        piece = _encode_q(char)
        if len(_Q) < 4096:
            _Q[char] = piece
    return piece


def _encode_q(char: str) -> str:
    out = []
    for byte in char.encode("utf-8"):
        if byte == 0x20:
            out.append("_")
        elif byte in _PLAIN:
            out.append(chr(byte))
        else:
            out.append(f"={byte:02X}")
    return "".join(out)


def encoded_words(text: str, first: int) -> list[str]:
    """`text` as Q encoded-words of whole characters; the first fits in `first` characters,
    each other one in a continuation line of its own (a space, then the word)."""
    words: list[str] = []
    current = ""
    room = min(first, ENCODED_WORD)
    for char in text:
        piece = _q(char)
        if current and len(_PREFIX) + len(current) + len(piece) + len(_SUFFIX) > room:
            words.append(_PREFIX + current + _SUFFIX)
            current = ""
            room = min(ENCODED_LINE - 1, ENCODED_WORD)
        current += piece
    words.append(_PREFIX + current + _SUFFIX)
    return words


def _plain(text: str) -> bool:
    """Text that goes as it is: ASCII, and nothing a reader would take for an encoded-word."""
    return text.isascii() and "=?" not in text


def _fold_at_spaces(start: str, text: str, width: int = WIDTH) -> list[str]:
    """`start` + `text` in lines of at most `width` where a space allows; each fold goes in
    front of a space, which unfolding keeps."""
    words = text.split(" ")
    lines: list[str] = []
    current = start + words[0]
    for word in words[1:]:
        if word and len(current) + 1 + len(word) > width and current.strip():
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
    lines.append(current)
    return lines


def _display_name(name: str) -> str:
    """An ASCII display name, quoted when it has a character an address gives meaning to."""
    if any(char in _SPECIALS for char in name):
        return f'"{quote(name)}"'
    return name


class Header(str):
    """A header value (its text, as `str`) that folds itself for `email.generator`: the
    policy stores an object with a matching `name` as it is and calls its `fold`."""

    name: str
    address: tuple[str, str] | None
    _folded: dict[tuple[bool, str], str]

    def __new__(cls, name: str, value: str, address: tuple[str, str] | None = None) -> Header:
        if address is not None:
            display, addr_spec = one_line(address[0]), one_line(address[1])
            address = (display, addr_spec)
            value = f"{_display_name(display)} <{addr_spec}>" if display else addr_spec
        self = super().__new__(cls, one_line(value))
        self.name = name
        self.address = address
        self._folded = {}
        return self

    def fold(self, *, policy: Policy) -> str:
        utf8 = bool(getattr(policy, "utf8", False))
        # Kept: the sender's header is one object, written in every email of the worker.
        folded = self._folded.get((utf8, policy.linesep))
        if folded is None:
            start = f"{self.name}: "
            if self.address is None:
                lines = self._text(start, str(self), utf8)
            else:
                lines = self._address(start, utf8)
            folded = self._folded[utf8, policy.linesep] = (
                policy.linesep.join(lines) + policy.linesep
            )
        return folded

    @staticmethod
    def _text(start: str, text: str, utf8: bool) -> list[str]:
        if utf8 or _plain(text):
            return _fold_at_spaces(start, text)
        words = encoded_words(text, ENCODED_LINE - len(start))
        return [start + words[0], *(" " + word for word in words[1:])]

    def _address(self, start: str, utf8: bool) -> list[str]:
        assert self.address is not None
        display, addr_spec = self.address
        if not display:
            return [start + addr_spec]
        if utf8 or _plain(display):
            lines = _fold_at_spaces(start, _display_name(display))
        else:
            # A name that fits goes in one word: some readers (Python's own parser among
            # them) put a space between two encoded-words of a display name, which RFC 2047
            # readers do not. A longer name is split as RFC 2047 says.
            words = encoded_words(display, ENCODED_LINE - len(start))
            lines = [start + words[0], *(" " + word for word in words[1:])]
        tail = f"<{addr_spec}>"
        width = ENCODED_LINE if "=?" in lines[-1] else WIDTH
        if len(lines[-1]) + 1 + len(tail) <= width:
            lines[-1] += " " + tail
        else:
            lines.append(" " + tail)
        return lines


def address_header(name: str, value: str) -> Header | str:
    """`From: Avtalstjänsten <avtal@…>` as a Header; a value that is no address as given."""
    display, addr_spec = parseaddr(value)
    if not addr_spec or "@" not in addr_spec:
        return value
    return Header(name, value, (display, addr_spec))
