"""What every file-source reader shares: its error, and paths anchored at the YAML's folder.

Anything a user can get wrong in the YAML (a path matching nothing, a column-name typo, the wrong
encoding, an unparseable timestamp) raises ``FileSourceError`` naming the FileTable field to fix,
so the config loader can point at the YAML line instead of showing a pandas trace, and a run can
name the same line (``UseCaseSpec.field_error``).
"""

from __future__ import annotations

import re
from pathlib import Path

_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")  # quoted bits of a reader's error: file text
_MAX_REASON = 300  # characters of a reader's error kept in a message


class FileSourceError(ValueError):
    """A FileTable that cannot be read as written.

    ``field`` is the dotted path inside the FileTable (``path``, ``columns.user_id``,
    ``timestamp_unit``) so the config loader can map it to a YAML line; ``message`` says what was
    expected.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def join_path(base_dir: Path, path: str) -> str:
    """Anchor a relative path at the YAML's folder; absolute paths and fsspec URLs stay as they are."""
    if "://" in path:
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else Path(base_dir) / candidate)


def reason(err: Exception) -> str:
    """A reader's error without the text it quotes from the file: messages show no data."""
    return _QUOTED.sub("'...'", str(err))[:_MAX_REASON]
