"""DuckDB over Parquet files: how a path and a column are written in SQL, and a connection whose
sorts go out of core. The sharded join sorts each group's answer and the sharded label rows sort
the shards' outputs through it, so a sort never holds a second copy of a training set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

SORT_MEMORY = "512MB"  # DuckDB's memory for a sort; beyond it, it spills to disk


def quote(name: str) -> str:
    """A column name as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(path: str | Path) -> str:
    """A path as a DuckDB string literal."""
    return "'" + str(path).replace("'", "''") + "'"


@contextmanager
def sorting_connection(spill: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection whose sorts spill to ``spill`` past ``SORT_MEMORY``: the sort is out
    of core, not a second copy of the training set in memory."""
    spill.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": SORT_MEMORY, "temp_directory": str(spill)}
    with duckdb.connect(config=config) as con:
        yield con
