"""The use-case spec: pydantic models for one YAML file per use case, and their loader.

Kept beside the YAML and free of Dagster so that serving code can read a config without Dagster.
"""

from configs.schema.loading import SpecError, SpecIssue, load_spec, load_specs
from configs.schema.usecase import UseCaseSpec

__all__ = ["SpecError", "SpecIssue", "UseCaseSpec", "load_spec", "load_specs"]
