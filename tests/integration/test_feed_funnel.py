"""The shipped feed's funnel beats its own popular list end to end, on the served rules.

A week of the full-size feed world is materialized up to ``funnel_evaluation`` (what serving
needs beyond it is skipped). The check compares recall@20 of the test requests' clicks; the
margin asserted is well under what four seeds gave (+11% to +31% over the popular list, with
about 900 requests each), so it holds with the seed, and far above where the funnel stood when
the ranker picked the items (-25% to -41%).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dagster_project.use_case_files import load_use_cases
from tests.integration.test_raw_assets import _run

pytestmark = pytest.mark.integration

SKIP = (
    "feature_store",
    "serving_bundle",
    "bento",
    "triton_repository",
    "experiment_analysis",
    "drift_report",
    "performance",
)
MARGIN = 1.05  # the funnel's recall@20 must be at least 5% above the popular list's


def test_shipped_feed_funnel_beats_the_popular_list(tmp_path: Path) -> None:
    from configs import CONFIG_DIR

    (spec,) = load_use_cases([CONFIG_DIR / "feed.yaml"])
    source = spec.source.model_copy(update={"days": 7})  # full-size world, one week
    # promotion by the offline gate alone: waiting for a served load test (slo) is not this test's
    update = {"source": source} | ({"slo": None} if "slo" in type(spec).model_fields else {})
    spec = spec.model_copy(update=update).with_path(spec.path)
    result = _run(spec, tmp_path, stages_to_skip=SKIP)
    assert result.success
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "beats_popular_list"
    ]
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "funnel_evaluation"
    ]
    metadata = event.materialization.metadata
    funnel, popular = check.metadata["funnel"].value, check.metadata["popular list"].value
    assert check.passed, metadata["evaluation"].value
    assert funnel >= MARGIN * popular, metadata["evaluation"].value
    assert funnel == metadata["metric/recall@20"].value
    assert check.description == f"recall@20: funnel {funnel:.3f} vs popular list {popular:.3f}"
    assert metadata["metric/requests"].value > 500  # enough requests for the margin to mean it
    # retrieval picks the items and the ranker only orders them: the same recall either way
    table = _table(metadata["evaluation"].value)
    assert table["recall@20"]["retrieval order"] == pytest.approx(funnel, abs=1e-4)
    assert table["recall@20"]["popular list"] == pytest.approx(popular, abs=1e-4)
    assert funnel <= metadata["metric/candidate_recall@500"].value

    requests = pd.read_parquet(tmp_path / "tables" / "feed" / "funnel_evaluation.parquet")
    assert requests.final.map(len).max() == 20
    assert (requests.final.map(len) < 20).mean() < 0.05  # the category cap rarely shortens it
    # what the service drops is never shown: the user's recent history as of the request
    history = pd.read_parquet(
        tmp_path / "tables" / "feed" / "training_sets" / "ranking_training_set.parquet"
    )
    first = history.drop_duplicates("request_id").set_index("request_id")
    for row in requests.head(200).itertuples():
        recent = first.loc[row.request_id, "user_activity__item_id_last20_30d"]
        seen = set() if recent is None else set(recent)
        assert not seen & set(row.final)


def _table(markdown: str) -> dict[str, dict[str, float]]:
    """``{metric: {column: value}}`` of the evaluation's markdown table."""
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()]
    header, rows = lines[0], lines[2:]
    return {row[0]: dict(zip(header[1:], map(float, row[1:]), strict=True)) for row in rows}
