"""From ``features.<view>.request`` to Feast on-demand feature views, one per spec view.

The request features of view ``v`` become the on-demand view ``v_request``: its function is
:mod:`runtime.request_features` over the expressions (the one training and ``/score`` use), its
request source asks the caller for the event row's fields they read (``amount``,
``event_time``...), and its sources are the feature tables whose features they read. So a Feast
user reads them like any feature::

    store.get_online_features(
        features=["transaction_request:amount_log", "card_velocity:amount_mean_30d"],
        entity_rows=[{"card_id": 7, "amount": 129.0, "event_time": now, ...}],
    )
"""

from __future__ import annotations

from configs.schema.request_checks import (
    event_inputs,
    output_kind,
    readable_columns,
    request_features,
    stored_inputs,
)
from configs.schema.usecase import UseCaseSpec
from resources.feast_definitions import OnDemandViewDef

# an on-demand view's feature type, by what the expression gives
_FEATURE_DTYPES = {"number": "float", "string": "string"}


def on_demand_view_defs(spec: UseCaseSpec) -> tuple[OnDemandViewDef, ...]:
    """The on-demand views of a use case, in YAML order (none without request features)."""
    columns = readable_columns(spec)
    views = []
    for view in spec.features:
        features = request_features(spec, [view])
        if not features:
            continue
        tables = [columns[c].table for c in stored_inputs(spec, features)]
        views.append(
            OnDemandViewDef(
                name=features[0].table,
                features=tuple(
                    (f.name, f.expression.text, _FEATURE_DTYPES[output_kind(f, columns)])
                    for f in features
                ),
                request_fields=tuple(
                    (c, spec.events.columns[c].dtype) for c in event_inputs(spec, features)
                ),
                sources=tuple(dict.fromkeys(t for t in tables if t is not None)),
                description=f"request-time features of feature view {view!r}",
                tags={"use_case": spec.name, "view": view, "kind": "request"},
            )
        )
    return tuple(views)
