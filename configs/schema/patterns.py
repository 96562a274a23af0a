"""Column names by pattern: ``passthrough: ["f*"]`` instead of listing 200 LETOR features again.

A name with a shell wildcard (``*``, ``?``, ``[...]``) stands for every candidate column it
matches (case-sensitive, ``fnmatch`` rules), in the order the columns are declared. The list a
user wrote is expanded once, when the spec is validated, so every stage reads plain column names;
each expanded name remembers the position it was written at, so a problem found later still
points at the YAML line that produced it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

_WILDCARD = re.compile(r"[*?\[]")


def is_pattern(name: str) -> bool:
    """Whether ``name`` holds a wildcard (column names themselves never do in a valid spec)."""
    return bool(_WILDCARD.search(name))


@dataclass(frozen=True)
class Expansion:
    """A written list with its patterns replaced by what they match.

    ``origin[i]`` is the written position of ``names[i]``; ``unmatched`` lists the patterns that
    matched no candidate, with their written positions (they are left out of ``names``).
    """

    names: list[str]
    origin: list[int]
    unmatched: list[tuple[int, str]] = field(default_factory=list)


def expand(written: list[str], candidates: list[str]) -> Expansion:
    """Replace each pattern by the candidates it matches, keeping plain names where they are.

    A column named explicitly anywhere in the list, or matched by an earlier pattern, is not
    added again, so ``["f*", "f1"]`` yields each ``f`` column once.
    """
    explicit = {name for name in written if not is_pattern(name)}
    names: list[str] = []
    origin: list[int] = []
    unmatched: list[tuple[int, str]] = []
    for position, name in enumerate(written):
        if not is_pattern(name):
            names.append(name)
            origin.append(position)
            continue
        matches = [c for c in candidates if fnmatchcase(c, name)]
        if not matches:
            unmatched.append((position, name))
        for match in matches:
            if match not in explicit and match not in names:
                names.append(match)
                origin.append(position)
    return Expansion(names, origin, unmatched)
