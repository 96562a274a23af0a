"""JSON Schema of a use-case file, generated from the pydantic models (never edited by hand).

``configs/playbook.schema.json`` is this function's output; editors that understand the
``yaml-language-server`` comment at the top of each YAML use it for completion and hover help.
"""

from __future__ import annotations

from typing import Any

from configs.schema.usecase import UseCaseSpec


def json_schema() -> dict[str, Any]:
    schema = UseCaseSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Playbook use case"
    return schema
