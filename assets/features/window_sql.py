"""The SQL of a window's moving parts, and of the rows a feature table leaves out.

:mod:`assets.features.aggregates` builds the whole query; this module says what a window is at
each row: how far back its frame reaches, when an event leaves it, and whether a value at a
moment is still in it, for an exact window (``[t - window, t]``) and a hopped one (Chronon's
sawtooth, ``[floor(t - window, hop), t]``, the tail rounded down to the hop from the epoch). The
stream's time column is ``t``; windows are given in seconds and hops in nanoseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from configs.schema.base import duration_text


def window_text(windows: Iterable[tuple[str, int | None]]) -> str:
    """(window, hop_ns) pairs for the UI, once each: ``1h exact, 1d exact`` or ``1h hop 5m``."""
    seen = dict.fromkeys(
        (window, "exact" if hop is None else f"hop {duration_text(pd.Timedelta(hop))}")
        for window, hop in windows
    )
    return ", ".join(f"{window} {how}" for window, how in seen)


def _floor(value: str, step: int) -> str:
    """SQL: integer ``value`` rounded down to a multiple of ``step`` (also below 0)."""
    return f"({value} - ((({value}) % {step}) + {step}) % {step})"


def _tail_ns(seconds: int, hop_ns: int, at: str) -> str:
    """SQL: the oldest moment (ns since the epoch) in a hopped window at time ``at``."""
    return _floor(f"epoch_ns({at}) - {seconds * 1_000_000_000}", hop_ns)


def frame_sql(seconds: int, hop_ns: int | None) -> str:
    """The window's ORDER BY and RANGE frame, for a WINDOW clause.

    A hopped frame reaches back a different length from each row, so it is ordered by the
    time's nanoseconds (a per-row RANGE offset is exact there; an interval stops at 1µs).
    """
    if hop_ns is None:
        return f"ORDER BY t RANGE BETWEEN INTERVAL {seconds} SECOND PRECEDING AND CURRENT ROW"
    reach = f"epoch_ns(t) - {_tail_ns(seconds, hop_ns, 't')}"
    return f"ORDER BY epoch_ns(t) RANGE BETWEEN {reach} PRECEDING AND CURRENT ROW"


def within_sql(seconds: int, hop_ns: int | None, moment: str, at: str) -> str:
    """SQL: whether ``moment`` is still in the window at time ``at``."""
    if hop_ns is None:
        return f"{moment} >= {at} - INTERVAL {seconds} SECOND"
    return f"epoch_ns({moment}) >= {_tail_ns(seconds, hop_ns, at)}"


def expiry_sql(seconds: int, hop_ns: int | None) -> str:
    """SQL: when an event at ``t`` leaves the window (the first moment it is out): 1µs after
    ``t + window``, or the first hop boundary after ``t``, plus the window."""
    if hop_ns is None:
        return f"t + INTERVAL {seconds} SECOND + INTERVAL 1 MICROSECOND"
    boundary = f"{_floor('epoch_ns(t)', hop_ns)} + {hop_ns}"
    return f"make_timestamp_ns({boundary} + {seconds * 1_000_000_000})"


# Two floats closer than this (relatively) are one value to compaction: the order in which DuckDB
# adds a window moves a mean's last bits, and a shard must drop exactly the rows the whole drops.
SAME_FLOAT = 1e-12


def _repeats(column: str, is_float: bool, keyed: str) -> str:
    """SQL: whether ``column`` (quoted) holds the value it held at the entity's row before."""
    before = f"lag({column}) OVER ({keyed})"
    same = f"{column} IS NOT DISTINCT FROM {before}"
    if is_float:
        close = f"abs({column} - {before}) <= {SAME_FLOAT} * greatest(abs({column}), abs({before}))"
        return f"({same} OR coalesce({close}, false))"
    return same


def compacted_sql(
    rows: str, keys: str, columns: Sequence[tuple[str, bool]], ttl: int | None
) -> str:
    """SQL: ``rows`` (ordered by ``keys``, quoted, and ``t``) without the rows that only repeat
    the values of ``columns`` (quoted name, whether a float) at the row before them.

    Such a row changes no lookup: an as-of join finds an earlier row with the same values (a
    "past frauds" sum unmoved by a legitimate chargeback arriving is the common case). Except
    through the ttl (seconds): the earlier row must not age out where the repeat would not. So in
    a run of equal rows, the first is kept, and a repeat is left out only while the row after it
    comes within the ttl of the run's first; from the first repeat that fails this, the run's
    rows are all kept (the row after only gets later), and an entity's last row always is.
    Without a ttl every row is kept.
    """
    if ttl is None:
        return f"SELECT * FROM ({rows})"
    keyed = f"PARTITION BY {keys} ORDER BY t"
    repeats = " AND ".join(_repeats(column, is_float, keyed) for column, is_float in columns)
    return f"""SELECT * EXCLUDE (_new, _start, _next) FROM (
            SELECT *, max(CASE WHEN _new THEN t END) OVER (
                       {keyed} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS _start
            FROM (SELECT *, lead(t) OVER ({keyed}) AS _next,
                         lag(t) OVER ({keyed}) IS NULL OR NOT coalesce({repeats}, false) AS _new
                  FROM ({rows})))
        WHERE _new OR _next IS NULL OR _next > _start + INTERVAL {ttl} SECOND"""
