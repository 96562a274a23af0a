"""Delayed labels of a ranking endpoint: was a served item clicked within the session?

The feed's ``/recommend`` (and ``/search``) logs a slate per request: the items served, each with
the ranker's score. Each served item is one prediction; its label is whether the unit (user or
query) clicked that item within ``SESSION`` after the request, and it stays ``pending`` until the
session is over at ``as_of``. The frame has the columns of
:func:`assets.monitoring.performance.join_labels`' result, so the same per-version, per-day table,
summary and rollback rule apply; there is no served decision, so precision and recall are null
and AUC / PR-AUC of the scores among served items measure the ranking.

The log is read with :func:`slate_needs`: a row whose items lack a numeric score or an item id
is skipped and counted by :func:`runtime.request_log.load_request_log`, not a crash here.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.monitoring.performance import (
    JOINED_COLUMNS,
    LABELLED,
    PENDING,
    JoinedPredictions,
)
from configs.schema.usecase import UseCaseSpec
from runtime.funnel_roles import funnel_models, retrieval_keys
from runtime.request_log_frame import served_times
from runtime.request_log_rules import Need

SESSION = pd.Timedelta("30min")


@dataclass(frozen=True)
class SessionTarget:
    """The served ranker of a use case and the click label its slates are judged on."""

    model: str  # the ranking model (``ranking``)
    label: str  # the events column of the click (``clicked``)
    unit_key: str  # ``user_id`` / ``query_id``
    item_key: str  # ``item_id`` / ``doc_id``
    timestamp: str
    endpoint: str
    session: pd.Timedelta = SESSION
    available_at: str | None = None

    @property
    def event_columns(self) -> list[str]:
        """The events columns the click join reads (the asset reads only these)."""
        return list(dict.fromkeys([self.label, self.unit_key, self.item_key, self.timestamp]))

    @property
    def known(self) -> str:
        return f"a click within {self.session} of the request"


def session_target(spec: UseCaseSpec) -> SessionTarget | None:
    """The ranking endpoint's target, or None without a funnel or a binary click label."""
    models = funnel_models(spec)
    if models is None or spec.events.timestamp is None:
        return None
    retrieval, ranking = models
    unit_key, item_key, _ = retrieval_keys(spec, retrieval)
    clicks = [label for label in spec.labels.values() if label.kind == "binary"]
    if not clicks:
        return None
    return SessionTarget(
        model=ranking,
        label=clicks[0].column,
        unit_key=unit_key,
        item_key=item_key,
        timestamp=spec.events.timestamp,
        endpoint=spec.serving.endpoint,
    )


def slate_needs(target: SessionTarget) -> tuple[Need, ...]:
    """What :func:`logged_slates` reads from each logged row of the endpoint: the served items,
    each an object with a numeric ``score`` and the item's id, and the ranker's version."""
    items = ("response", "items")
    return (
        Need(items, "list"),
        Need((*items, "*"), "mapping"),
        Need((*items, "*", "score"), "float", required=True),
        Need((*items, "*", target.item_key), "id", required=True),
        Need(("model_versions", target.model), "id"),
    )


def logged_slates(log: pd.DataFrame, target: SessionTarget) -> pd.DataFrame:
    """One row per served item of the endpoint's logged requests, at the moment each was served
    (its ``as_of`` for replayed traffic, else when logged: the log's ``served_at``)."""
    columns = ["logged_at", "day", "version", "key", "score", "decision"]
    if log.empty:
        return pd.DataFrame([], columns=columns)
    served = log[log["endpoint"] == target.endpoint]
    if "served_at" not in served:  # a frame not read by load_request_log
        served = served.assign(served_at=served_times(served))
    out = []
    for row in served.itertuples():
        moment = pd.Timestamp(row.served_at)
        version = str((row.model_versions or {}).get(target.model, "")) or None
        for item in (row.response or {}).get("items", []):
            key = (str(row.unit), str(item.get(target.item_key)))
            out.append((moment, moment.floor("D"), version, key, float(item["score"]), None))
    return pd.DataFrame(out, columns=columns)


def join_session_clicks(
    predictions: pd.DataFrame, events: pd.DataFrame, target: SessionTarget, as_of: pd.Timestamp
) -> JoinedPredictions:
    """Each served item labelled 1 when clicked within the session, once the session is over."""
    as_of = pd.Timestamp(as_of)
    clicks = events[events[target.label] > 0]
    by_pair: dict[tuple[str, str], np.ndarray] = {
        (str(u), str(i)): np.sort(group.to_numpy(dtype="datetime64[ns]"))
        for (u, i), group in clicks.groupby([target.unit_key, target.item_key])[target.timestamp]
    }
    status, label = [], []
    for key, moment in zip(predictions["key"], predictions["logged_at"], strict=True):
        start = np.datetime64(pd.Timestamp(moment).to_datetime64(), "ns")
        end = np.datetime64((pd.Timestamp(moment) + target.session).to_datetime64(), "ns")
        if pd.Timestamp(moment) + target.session > as_of:
            status.append(PENDING)
            label.append(pd.NA)
            continue
        times = by_pair.get(tuple(key), np.array([], dtype="datetime64[ns]"))
        first = np.searchsorted(times, start, side="left")
        status.append(LABELLED)
        label.append(int(first < len(times) and times[first] <= end))
    frame = predictions.assign(status=status, label=pd.array(label, dtype="Int64"))
    return JoinedPredictions(frame[list(JOINED_COLUMNS)], as_of, 0)
