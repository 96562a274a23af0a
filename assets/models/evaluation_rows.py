"""Which test rows and units a model is judged on (``model.<m>.evaluation`` of the YAML).

A number on real data means little until it says what it counted. Three choices shape it:

* **units**: a unit (card, user) is *warm* when it has rows in the train split, *cold* when it
  first shows up later. ``warm`` judges the model on warm units only; ``all`` judges it on
  every unit and also reports the warm and the cold part apart (``warm/<metric>``,
  ``cold/<metric>``), since a model that only shines on known units hides there otherwise;
* **exclude_seen** (retrieval and rankers): what is removed from a unit's candidates, and from
  what counts as relevant: every item it interacted with in the train split (``all``), only its
  train positives, or nothing;
* **filter** ``drop_units_with_prior_label``: test rows whose unit already had a positive of a
  label *known* before the row's time (a card whose chargeback has arrived is blocked, not
  scored). Known means what the label's ``available_at`` / ``available_after`` says, so the
  filter never uses an outcome nobody had yet.

The flag of that filter, the unit key and the event id (the events column marked
``unique: true``, e.g. ``transaction_id``) travel in the training set
(:func:`evaluation_columns`), so the predictions table keeps each row's event id and the filter
sees every event, gap rows included, not only those that made it into a split. The same plan
serves the model, its baseline and the promotion gate's candidates: they are compared on the
same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from assets.features.availability import known_at
from assets.training.negatives import SAMPLED
from configs.schema.evaluation_checks import RANKERS, prior_label
from configs.schema.model_stage import RETRIEVERS
from configs.schema.usecase import UseCaseSpec
from runtime.funnel_roles import retrieval_keys
from runtime.layout import FEATURE_SEPARATOR
from runtime.table_chunks import Chunks

EVALUATED = "evaluated"  # predictions column: the row counts in the metrics
COLD_UNIT = "cold_unit"  # predictions column: the row's unit has no row in the train split
PRIOR_POSITIVE = "prior_positive_"  # + label column: a positive of the unit was known before
DROPPED = "dropped/"  # metric-name prefix of the rows each rule left out


def _at(model: str, *path: str) -> tuple[str, ...]:
    return ("model", model, "evaluation", *path)


def ranked_item_key(spec: UseCaseSpec, model: str) -> str | None:
    """The key of the entity being ranked: the sampled one, else the last events entity key."""
    negatives = spec.model[model].negatives
    if negatives is not None:
        return spec.entities[negatives.entity].key
    keys = [e.key for e in spec.entities.values() if e.key in spec.events.columns]
    return keys[-1] if keys else None


def evaluation_unit(spec: UseCaseSpec, model: str) -> str:
    """The unit's key column: ``evaluation.unit``'s key, two_tower's user, else the first events
    entity key (the card of a transaction, the user of a rating)."""
    stage = spec.model[model]
    if stage.evaluation.unit is not None:
        return spec.entities[stage.evaluation.unit].key
    if stage.problem in RETRIEVERS:
        return retrieval_keys(spec, model)[0]
    return next(e.key for e in spec.entities.values() if e.key in spec.events.columns)


def event_id_column(spec: UseCaseSpec) -> str | None:
    """The events' id: the first column declared ``unique: true``, None when there is none."""
    return next((name for name, c in spec.events.columns.items() if c.unique), None)


def exclude_seen(spec: UseCaseSpec, model: str) -> str:
    """``evaluation.exclude_seen``, or the problem's default (train_positives for two_tower)."""
    stage = spec.model[model]
    if stage.evaluation.exclude_seen is not None:
        return stage.evaluation.exclude_seen
    return "train_positives" if stage.problem in RETRIEVERS else "none"


def prior_positive_column(spec: UseCaseSpec, model: str) -> str | None:
    """The training-set column flagging rows whose unit had a known positive, if filtered on."""
    name = spec.model[model].evaluation.filter.drop_units_with_prior_label
    label = prior_label(spec, name) if name is not None else None
    if label is None:
        return None
    # never "__": that marks a feature column (runtime.layout), and this flag is no feature
    return f"{PRIOR_POSITIVE}{spec.labels[label].column}".replace(FEATURE_SEPARATOR, "_")


def prior_positive(
    units: pd.Series, times: pd.Series, positive: pd.Series, arrival: pd.Series
) -> pd.Series:
    """True where the row's unit had a positive whose ``arrival`` is strictly before the row's
    time: "some positive was known before" is "the earliest known positive was before"."""
    positive = positive.fillna(0).astype(float).to_numpy() > 0
    earliest = pd.Series(arrival.to_numpy()[positive]).groupby(units.to_numpy()[positive]).min()
    first_known = units.map(earliest)
    return (pd.to_datetime(times) > pd.to_datetime(first_known)).fillna(False).astype(bool)


def _carried(spec: UseCaseSpec, model: str) -> list[str]:
    """The events columns the label rows carry as they are: unit, event id, ranked item."""
    names = [evaluation_unit(spec, model), event_id_column(spec)]
    if spec.model[model].problem in RANKERS and exclude_seen(spec, model) != "none":
        names.append(ranked_item_key(spec, model))
    return [name for name in dict.fromkeys(names) if name is not None]


def _prior(spec: UseCaseSpec, model: str) -> str:
    """The label of the prior-positive filter (call only when the model has one)."""
    label = prior_label(spec, str(spec.model[model].evaluation.filter.drop_units_with_prior_label))
    assert label is not None  # prior_positive_column returned a column
    return label


def evaluation_inputs(spec: UseCaseSpec, model: str) -> list[str]:
    """Every events column :func:`evaluation_columns` reads (the log may lack some): what a
    stage reading the log by column must read for it."""
    names = _carried(spec, model)
    if prior_positive_column(spec, model) is not None:
        rule = spec.labels[_prior(spec, model)]
        names += [n for n in (spec.events.timestamp, rule.column, rule.available_at) if n]
    return list(dict.fromkeys(names))


def evaluation_columns(spec: UseCaseSpec, model: str, events: pd.DataFrame) -> dict[str, pd.Series]:
    """Columns the label rows of ``model`` carry for its evaluation, aligned on ``events``: the
    unit key, the event id, a ranker's item key when seen items are excluded, and the
    prior-positive flag when the YAML filters on one. Computed on every event (not only the
    mature, split ones), so an outcome known in the gap counts."""
    columns: dict[str, pd.Series] = {}
    unit = evaluation_unit(spec, model)
    for name in _carried(spec, model):
        if name in events.columns:
            columns[name] = events[name]
    flag = prior_positive_column(spec, model)
    if flag is not None:
        label = _prior(spec, model)
        time = events[spec.events.timestamp]
        arrival = known_at(spec, label, events)
        columns[flag] = prior_positive(
            events[unit],
            time,
            events[spec.labels[label].column],
            time if arrival is None else arrival,
        )
    return columns


def seen_rows(spec: UseCaseSpec, model: str, train: pd.DataFrame, label: str) -> pd.DataFrame:
    """The train rows whose items count as seen: all interactions (sampled negatives are none),
    only positives, or no row at all, as ``exclude_seen`` says."""
    rule = exclude_seen(spec, model)
    if rule == "none":
        return train.iloc[:0]
    if rule == "train_positives":
        return train[train[label].to_numpy(dtype=float) > 0]
    return train[~train[SAMPLED].astype(bool)] if SAMPLED in train.columns else train


def retrieval_options(
    spec: UseCaseSpec, model: str, train: pd.DataFrame | Chunks, label: str
) -> dict[str, object]:
    """Keyword arguments of ``evaluate_retrieval`` / ``popularity_baseline`` for the YAML's
    evaluation of a retriever: the seen (user, item) pairs, the warm users and the units
    judged; the train split may be chunks (a retriever's, left in the set's file)."""
    unit = evaluation_unit(spec, model)
    user, item, _ = retrieval_keys(spec, model)
    keys = list(dict.fromkeys([user, item]))
    table = Chunks.of(train)
    wanted = [c for c in (label, SAMPLED) if c in table.columns]
    seen: list[pd.DataFrame] = []
    warm: set = set()
    for chunk in table(list(dict.fromkeys([*keys, unit, *wanted]))):
        seen.append(seen_rows(spec, model, chunk, label)[keys])
        warm.update(chunk[unit].tolist())
    return {
        "seen": pd.concat(seen, ignore_index=True),
        "warm_users": warm,
        "units": spec.model[model].evaluation.units,
    }


@dataclass(frozen=True)
class EvaluationPlan:
    """The test rows a model is judged on, which of them are cold, and what was left out."""

    evaluated: np.ndarray  # bool per test row
    cold: np.ndarray  # bool per test row: the unit has no row in the train split
    report_parts: bool  # units: all -> warm and cold metrics reported apart
    unit: str
    dropped: dict[str, int] = field(default_factory=dict)

    def overall(self, compute: Callable[[np.ndarray], Mapping[str, float]]) -> dict[str, float]:
        """``compute(mask)`` on the evaluated rows: what the promotion gate compares."""
        return dict(compute(self.evaluated))

    def metrics(
        self, compute: Callable[[np.ndarray], Mapping[str, float]], test: pd.DataFrame
    ) -> dict[str, float]:
        """The overall metrics, the warm and cold parts apart (``units: all``) and the counts.

        A part's metrics are reported when both parts have rows: with one part empty the other
        is the whole, and its numbers would only repeat the overall ones.
        """
        out = self.overall(compute)
        if self.report_parts:
            parts = {"warm": self.evaluated & ~self.cold, "cold": self.evaluated & self.cold}
            for part, rows in parts.items():
                out[f"{part}/units"] = float(test.loc[rows, self.unit].nunique())
            if all(rows.any() for rows in parts.values()):
                for part, rows in parts.items():
                    out.update({f"{part}/{name}": v for name, v in compute(rows).items()})
        out.update({f"{DROPPED}{reason}": float(n) for reason, n in self.dropped.items()})
        return out

    def annotate(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """The predictions table with ``evaluated`` and ``cold_unit`` per row."""
        return predictions.assign(**{EVALUATED: self.evaluated, COLD_UNIT: self.cold})


def _seen_pairs(
    spec: UseCaseSpec, model: str, train: pd.DataFrame, test: pd.DataFrame, unit: str, label: str
) -> np.ndarray:
    """Per test row: its (unit, item) pair is seen in the train split, as exclude_seen says."""
    item = ranked_item_key(spec, model)
    if item is None or item not in test.columns:
        raise spec.field_error(
            _at(model, "exclude_seen"),
            f"the training set has no item column {item!r} to tell seen pairs by; materialize"
            " it again",
        )
    seen = seen_rows(spec, model, train, label)
    if seen.empty:
        return np.zeros(len(test), dtype=bool)
    pairs = pd.MultiIndex.from_frame(seen[[unit, item]])
    return pd.MultiIndex.from_frame(test[[unit, item]]).isin(pairs)


def _needs_unit(spec: UseCaseSpec, model: str) -> bool:
    """Whether the YAML asked for something only the unit column can give."""
    stage = spec.model[model]
    evaluation = stage.evaluation
    metrics = spec.metrics
    card_precision = metrics is not None and "card_precision" in (metrics.primary, *metrics.others)
    return (
        evaluation.unit is not None
        or evaluation.units == "warm"
        or evaluation.filter.drop_units_with_prior_label is not None
        or (stage.problem in RANKERS and exclude_seen(spec, model) != "none")
        or (stage.problem == "binary_classification" and card_precision)
    )


def plan_train_columns(
    spec: UseCaseSpec, model: str, columns: Collection[str], label: str
) -> list[str]:
    """The train columns :func:`plan_evaluation` reads, of those in ``columns``: the unit (who
    is warm), and for a ranker whose seen pairs are left out, the item, the label and whether a
    row is a sampled negative (``seen_rows``). A train split read in chunks holds these alone."""
    wanted = [evaluation_unit(spec, model)]
    if spec.model[model].problem in RANKERS and exclude_seen(spec, model) != "none":
        wanted += [ranked_item_key(spec, model), label, SAMPLED]
    return [c for c in dict.fromkeys(wanted) if c is not None and c in columns]


def plan_evaluation(
    spec: UseCaseSpec, model: str, train: pd.DataFrame, test: pd.DataFrame, label: str
) -> EvaluationPlan:
    """The rows of ``test`` that ``model`` is judged on, under its YAML ``evaluation``.

    ``label`` is the column whose positives are the "train positives" of ``exclude_seen``.
    Fails, naming the field, when a needed column is missing or no row is left.
    """
    stage = spec.model[model]
    unit = evaluation_unit(spec, model)
    if unit not in test.columns:
        if _needs_unit(spec, model):
            raise spec.field_error(
                _at(model, "unit"),
                f"the training set has no {unit!r} column; materialize it again (training sets"
                " carry the evaluation unit since evaluation options exist)",
            )
        # a training set from before evaluation options: every row counts, no parts to report
        everything = np.ones(len(test), dtype=bool)
        return EvaluationPlan(everything, ~everything, False, unit)
    cold = ~test[unit].isin(set(train[unit].tolist())).to_numpy()
    keep = np.ones(len(test), dtype=bool)
    dropped: dict[str, int] = {}
    flag = prior_positive_column(spec, model)
    if flag is not None:
        if flag not in test.columns:
            raise spec.field_error(
                _at(model, "filter", "drop_units_with_prior_label"),
                f"the training set has no {flag!r} column; materialize it again",
            )
        prior = test[flag].astype(bool).to_numpy()
        dropped["prior_label"] = int((keep & prior).sum())
        keep &= ~prior
    if stage.evaluation.units == "warm":
        dropped["cold_units"] = int((keep & cold).sum())
        keep &= ~cold
    if stage.problem in RANKERS and exclude_seen(spec, model) != "none":
        seen = _seen_pairs(spec, model, train, test, unit, label)
        dropped["seen"] = int((keep & seen).sum())
        keep &= ~seen
    if not keep.any():
        counts = ", ".join(f"{n} {reason}" for reason, n in dropped.items())
        raise spec.field_error(
            _at(model),
            f"no test row is left to evaluate ({len(test)} test rows, left out: {counts})",
        )
    return EvaluationPlan(keep, cold, stage.evaluation.units == "all", unit, dropped)


class PartTotals:
    """Per-unit metrics summed overall and per part (warm / cold), then averaged over units.

    Retrieval averages over users; with ``warm`` users given, the same means are also reported
    for the warm and the cold users apart, under ``warm/`` and ``cold/``.
    """

    def __init__(self, warm_users: Collection[Hashable] | None = None):
        self.warm = None if warm_users is None else set(warm_users)
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {"": 0, "warm/": 0, "cold/": 0}

    def add(self, unit: Hashable, metrics: Mapping[str, float]) -> None:
        prefixes = [""]
        if self.warm is not None:
            prefixes.append("warm/" if unit in self.warm else "cold/")
        for prefix in prefixes:
            self.counts[prefix] += 1
            for name, value in metrics.items():
                self.totals[prefix + name] = self.totals.get(prefix + name, 0.0) + value

    def means(self) -> dict[str, float]:
        """Each metric's mean over the units of its part, plus ``warm/users`` and ``cold/users``;
        the parts' means only when both parts have users (else one part is the whole)."""
        both = self.counts["warm/"] > 0 and self.counts["cold/"] > 0
        out = {}
        for name, total in self.totals.items():
            prefix = name[: name.index("/") + 1] if "/" in name else ""
            if prefix == "" or both:
                out[name] = total / max(self.counts[prefix], 1)
        if self.warm is not None:
            out["warm/users"] = float(self.counts["warm/"])
            out["cold/users"] = float(self.counts["cold/"])
        return out
