"""Great Expectations, imported lazily and run in a throwaway context that stays offline and quiet.

Every quality module needs GE the same way, so the lazy import and the context setup live here,
once. Great Expectations is imported lazily: importing it costs seconds, and Dagster imports the
quality modules whenever it loads the code location, not only when a check runs.

GE must stay offline and quiet inside a pipeline run:

- GE 1.24 ships no analytics client (no posthog, nothing reads ``GX_ANALYTICS_ENABLED``) and its
  PyPI version checker is not called anywhere; the env var is still set (if unset) before the
  import, so a future pin that brings analytics back starts with it off. The context's
  ``analytics_enabled`` variable is set to False as well.
- The validator draws a tqdm "Calculating Metrics" bar on stderr unless the context's
  ``progress_bars`` variable turns it off, which :func:`ephemeral_context` does.
- The ephemeral context comes with a ``local_site`` writing docs to a temporary directory; it is
  replaced by one site under ``docs_dir`` (:func:`assets.quality.data_docs.use_docs_site`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assets.quality.data_docs import use_docs_site

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext


def import_gx() -> Any:
    """Import Great Expectations on first use, with analytics off before the import reads env."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


def ephemeral_context(docs_dir: Path) -> AbstractDataContext:
    """An in-memory GE context, silent, whose only data docs site is ``docs_dir``."""
    gx_module = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx_module.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.analytics_enabled = False
    use_docs_site(context, docs_dir)
    return context
