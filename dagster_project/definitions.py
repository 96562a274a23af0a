"""Entry point for ``dagster dev`` (see ``workspace.yaml``): every use case in ``configs/``."""

import dagster as dg

from dagster_project.loader import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
