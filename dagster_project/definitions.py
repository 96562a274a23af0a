"""Entry point of the ``playbook`` code location (``workspace.yaml``, ``[tool.dagster]``): every
use case in ``configs/``, or in ``$PLAYBOOK_CONFIGS``."""

import dagster as dg

from configs.schema import SpecError
from dagster_project.loader import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    try:
        return build_definitions()
    except SpecError as exc:
        # The message names file, line and field; the loader's frames would only hide it.
        raise exc.with_traceback(None) from None


def location_job(name: str) -> dg.JobDefinition:
    """The job ``name`` as this code location defines it.

    Module-level so that ``dg.build_reconstructable_job`` can point at it: Python-side
    re-execution (:func:`dagster_project.materialize.reexecute`) then runs the very job the UI
    would, reloaded here in whatever process executes the step.
    """
    return defs().resolve_job_def(name)
