"""Publishing a folder atomically: stage, verify, swap in; the old version kept until then.

Serving bundles, FAISS indices and Triton repositories are folders that a running service or a
later asset reads. A failed or killed build must never leave half a folder where the last good
one was, nor delete the last good one before its replacement is in place (an earlier index asset
removed the old folder first, so a crash between the two steps lost the index). So:

1. the new version is written into a staging folder beside the target (same file system, so the
   renames below are atomic), then verified (e.g. loaded back) -- a failure removes the staging
   folder and leaves the published one untouched;
2. the published folder is renamed aside (``.<name>.retired-<id>``), the staged one renamed into
   place, and only then is the retired one deleted.

A crash between the two renames of step 2 leaves the old version under its retired name:
:func:`recover` (run before every publish, and by readers that want to) renames it back.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

RETIRED = ".retired-"
STAGING = ".staging-"


def _aside(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}{kind}{uuid.uuid4().hex}")


def recover(final: str | Path) -> bool:
    """Put back the retired version of ``final`` if a publish died between its two renames.

    True when something was restored; older retired copies are removed. Staging folders are left
    alone: one may belong to a publish still under way.
    """
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return False
    restored = False
    retired = sorted(
        parent.glob(f".{final.name}{RETIRED}*"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if retired and not final.exists():
        retired[0].rename(final)
        retired = retired[1:]
        restored = True
    for leftover in retired:
        shutil.rmtree(leftover, ignore_errors=True)
    return restored


@contextmanager
def publishing(final: str | Path, verify: Callable[[Path], object] | None = None) -> Iterator[Path]:
    """A fresh staging path beside ``final`` to build the new version in (not yet created, so a
    writer that insists on creating its folder can); on a clean exit ``verify(staging)`` runs
    and the staged folder replaces ``final``.

    Any exception (in the build or in ``verify``) removes the staging folder and re-raises, with
    ``final`` as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    staging = _aside(final, STAGING)
    try:
        yield staging
        if not staging.exists():
            raise FileNotFoundError(f"nothing was written to {staging} for {final}")
        if verify is not None:
            verify(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_in(staging, final)


def swap_in(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging``; the old version is deleted only once the new one is in
    place."""
    retired = _aside(final, RETIRED) if final.exists() else None
    if retired is not None:
        final.rename(retired)
    staging.rename(final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
