"""Entry point for ``dagster dev`` (see ``workspace.yaml``): every use case in ``configs/``."""

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
