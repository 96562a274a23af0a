"""Which feature tables, keys, labels and request-time columns one model of a use case reads.

One place answers "what does model X see", so the feature service registered in Feast and the
training set built for the model can never disagree.
"""

from __future__ import annotations

from assets.features.views import FeatureTableDef, feature_tables
from configs.schema.request_checks import RequestFeature, event_inputs, request_features
from configs.schema.usecase import UseCaseSpec


def model_view_names(spec: UseCaseSpec, model: str) -> list[str]:
    """The spec feature views a model uses: its ``features`` list, or every view when empty."""
    wanted = spec.model[model].features
    return [name for name in spec.features if not wanted or name in wanted]


def model_tables(spec: UseCaseSpec, model: str) -> list[FeatureTableDef]:
    """The feature tables (Feast feature views) of a model, in YAML order."""
    views = set(model_view_names(spec, model))
    return [table for table in feature_tables(spec) if table.view in views]


def passthrough_columns(spec: UseCaseSpec, model: str) -> list[str]:
    """Events columns a model uses as they are (request-time features such as LETOR f1..f46)."""
    columns = [c for view in model_view_names(spec, model) for c in spec.features[view].passthrough]
    return list(dict.fromkeys(columns))


def model_request_features(spec: UseCaseSpec, model: str) -> list[RequestFeature]:
    """Request-time features a model reads (``features.<view>.request`` of its views)."""
    return request_features(spec, model_view_names(spec, model))


def request_input_columns(spec: UseCaseSpec, model: str) -> list[str]:
    """Events columns a model's request features read (``amount``, ``event_time``): its label
    rows carry them, as a request carries its fields."""
    return event_inputs(spec, model_request_features(spec, model))


def label_columns(spec: UseCaseSpec, model: str) -> dict[str, str]:
    """Label name -> events column of a model's labels, in the model's order."""
    return {name: spec.labels[name].column for name in spec.model[model].labels}


def key_columns(spec: UseCaseSpec, model: str) -> list[str]:
    """Join keys a model's label rows must carry: every key of its tables and sampled entity."""
    keys = [key for table in model_tables(spec, model) for key in table.keys]
    negatives = spec.model[model].negatives
    if negatives is not None:
        keys.append(spec.entities[negatives.entity].key)
    if not keys:  # a model with no feature views still needs its events' entity keys
        keys = [e.key for e in spec.entities.values() if e.key in spec.events.columns]
    return list(dict.fromkeys(keys))
