"""Triton exports without a server: ONNX towers, LightGBM text, and every generated config.

The towers must give PyTorch's embeddings under ONNX Runtime (1e-4) on random inputs and on
rows encoded as served; the LightGBM text must give the served model's margins from the float32
matrix; every ``config.pbtxt`` of both variants must parse into ``tritonclient``'s
``ModelConfig`` with the inputs, outputs, batching and instance groups the exports declare; and
malformed configs must fail here, naming the file, rather than at deploy time.
"""

from __future__ import annotations

import copy
from pathlib import Path

import dagster as dg
import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from tritonclient.grpc import model_config_pb2 as mc

from assets.models.tabular import train_classifier, train_expected_value, train_ranker
from assets.serving import triton_assets
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime.models.two_tower import TwoTowerConfig, TwoTowerModel
from serving.triton.client import calibrated
from serving.triton.config import (
    ConfigError,
    check_config,
    config_text,
    parse_config,
    read_config,
)
from serving.triton.lightgbm_export import (
    booster_text,
    export_parity,
    exported_margins,
    feature_array,
    tree_heads,
)
from serving.triton.onnx_export import (
    EMBEDDING,
    ParityError,
    export_tower,
    item_tower_inputs,
    onnx_embeddings,
    onnx_parity,
    user_tower_inputs,
)
from serving.triton.repository import (
    MAX_BATCH_SIZE,
    ExportedModel,
    export_model,
    gpu_config,
    read_manifest,
    write_repository,
)
from tests.unit.test_tabular_models import (
    FAST,
    FRAUD_FEATURES,
    _parts,
    feed_frame,
    fraud_frame,
    search_frame,
)
from tests.unit.test_two_tower import World, _make_world, _train

torch.set_num_threads(2)

TINY = TwoTowerConfig(epochs=1, batch_size=512, seed=3)
FEED_FEATURES = ["item__x_click", "item__x_buy", "item_attributes__price"]


@pytest.fixture(scope="module")
def world() -> World:
    return _make_world()


@pytest.fixture(scope="module")
def towers(world: World) -> TwoTowerModel:
    return _train(world, TINY)


@pytest.fixture(scope="module")
def fraud() -> pd.DataFrame:
    return fraud_frame(3000)


@pytest.fixture(scope="module")
def rows(fraud: pd.DataFrame) -> pd.DataFrame:
    """Test rows to score; a level never seen in training and a missing one must both reach
    the trees as NaN."""
    frame = _parts(fraud)[2].copy()
    frame.loc[frame.index[:5], "card_attributes__country"] = "XX"
    frame.loc[frame.index[5:10], "card_attributes__country"] = None
    return frame


@pytest.fixture(scope="module")
def served(fraud: pd.DataFrame) -> dict[str, object]:
    """One served model of each LightGBM kind, as the model assets train them."""
    train, valid, _ = _parts(fraud)
    search = search_frame(groups=200)
    s_train, s_valid, _ = _parts(search)
    feed = feed_frame(groups=300)
    f_train, f_valid, _ = _parts(feed)
    return {
        "demo.scorer": train_classifier(train, valid, FRAUD_FEATURES, "is_fraud", FAST),
        "demo.ranker": train_ranker(
            s_train, s_valid, ["doc__f1", "doc__f2", "doc__f3"], "relevance", "request_id", FAST
        ),
        "demo.ranking": train_expected_value(
            f_train, f_valid, FEED_FEATURES, "clicked", "purchased", "item_attributes__price", FAST
        ),
    }


def _frames(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "demo.scorer": rows,
        "demo.ranker": search_frame(groups=50, seed=9),
        "demo.ranking": feed_frame(groups=50, seed=9),
    }


@pytest.fixture(scope="module")
def exported(towers: TwoTowerModel, served: dict[str, object]) -> list[ExportedModel]:
    models = export_model("demo.retrieval", "3", towers)
    for name, model in served.items():
        models += export_model(name, "1", model)
    return models


# --------------------------------------------------------------------------- ONNX towers


def test_towers_match_pytorch_on_random_and_served_rows(towers: TwoTowerModel, world: World):
    users = world.frame.drop_duplicates("user_id")
    for tower, inputs, expected in (
        ("user", user_tower_inputs(towers, users), towers.user_embeddings(users)),
        ("item", item_tower_inputs(towers, world.items), towers.item_embeddings(world.items)[1]),
    ):
        onnx_model, signature = export_tower(towers, tower)
        assert onnx_parity(towers, tower, onnx_model) <= 1e-4  # random inputs, edge rows
        assert onnx_parity(towers, tower, onnx_model, inputs) <= 1e-4
        got = onnx_embeddings(onnx_model, inputs)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert set(inputs) == set(signature.input_names)
        assert signature.output.dims == (towers.config.embedding_dim,)


def test_towers_leave_out_empty_inputs_and_batch_dynamically(towers: TwoTowerModel):
    # the user tower has no numeric feature, the item tower no list feature
    user, user_sig = export_tower(towers, "user")
    item, item_sig = export_tower(towers, "item")
    assert user_sig.input_names == ["ids", "cats", "seqs"]
    assert item_sig.input_names == ["ids", "nums", "cats"]
    for graph, signature in ((user, user_sig), (item, item_sig)):
        session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == signature.input_names
        for tensor in [*session.get_inputs(), *session.get_outputs()]:
            assert tensor.shape[0] == "batch"  # the dynamic batch axis
    inputs = user_tower_inputs(
        towers,
        pd.DataFrame({"user_id": [0, -5]}).assign(
            user_attributes__country=["US", None], user_activity__recent_items=[[1, 2], []]
        ),
    )
    assert onnx_embeddings(user, inputs).shape == (2, towers.config.embedding_dim)
    one = {k: v[:1] for k, v in inputs.items()}
    np.testing.assert_allclose(
        onnx_embeddings(user, one)[0], onnx_embeddings(user, inputs)[0], atol=1e-6
    )


def test_parity_fails_when_the_graph_drifts_from_pytorch(towers: TwoTowerModel):
    onnx_model, _ = export_tower(towers, "item")
    changed = copy.deepcopy(towers)
    with torch.no_grad():
        changed.net.item.mlp[0].weight.add_(0.05)
    with pytest.raises(ParityError, match=r"item tower: ONNX Runtime differs from PyTorch by"):
        onnx_parity(changed, "item", onnx_model)


# --------------------------------------------------------------------------- LightGBM


def _served_margins(model: object, head: str, frame: pd.DataFrame) -> np.ndarray:
    tree = tree_heads(model)[head]
    if hasattr(tree, "margin"):
        return tree.margin(frame)
    return tree.predict(frame)  # a ranker's score is its raw margin


def test_lightgbm_text_gives_the_served_margins(served, rows, tmp_path: Path):
    for name, frame in _frames(rows).items():
        for head, tree in tree_heads(served[name]).items():
            text = booster_text(tree)
            assert "objective=regression\n" in text
            x = feature_array(tree, frame)
            assert x.dtype == np.float32 and x.shape == (len(frame), tree.booster.num_feature())
            expected = _served_margins(served[name], head, frame)
            np.testing.assert_allclose(exported_margins(text, x), expected, atol=1e-5, rtol=0)
            path = tmp_path / f"{name}{head}.txt"
            path.write_text(text)
            from_file = lgb.Booster(model_file=str(path)).predict(x)  # what FIL's loader reads
            np.testing.assert_allclose(from_file, expected, atol=1e-5, rtol=0)
            assert export_parity(tree, text) == pytest.approx(0.0, abs=1e-9)


def test_feature_array_holds_category_codes_and_nan(served, rows):
    scorer = served["demo.scorer"]
    x = feature_array(scorer, rows)
    column = list(scorer.booster.feature_name()).index("card_attributes__country")
    levels = scorer.categories["card_attributes__country"]
    codes = x[:, column]
    assert np.isnan(codes[:10]).all()  # unseen "XX" and missing
    expected = [levels.index(c) for c in rows["card_attributes__country"].iloc[10:20]]
    assert codes[10:20].tolist() == expected
    assert "card__merchant_id_last5_7d" not in scorer.booster.feature_name()  # lists dropped


def test_client_calibration_equals_predict_proba(served, rows):
    scorer = served["demo.scorer"]
    margins = exported_margins(booster_text(scorer), feature_array(scorer, rows))
    expected = scorer.predict_proba(rows)
    np.testing.assert_allclose(calibrated(scorer, margins), expected, atol=1e-6)


def test_objective_rewrite_refuses_unexpected_text(served):
    scorer = copy.copy(served["demo.scorer"])

    class _NoObjective:
        def model_to_string(self, num_iteration: int) -> str:
            return "tree\nversion=v4\nTree=0\n"

    scorer.booster = _NoObjective()
    with pytest.raises(ValueError, match="0 'objective=' header lines"):
        booster_text(scorer)


# --------------------------------------------------------------------------- repository


def test_every_config_parses_with_the_declared_tensors(exported, tmp_path: Path):
    paths = write_repository(exported, tmp_path / "repo")
    manifest = read_manifest(tmp_path / "repo")
    expected_names = {
        "demo.retrieval.user",
        "demo.retrieval.item",
        "demo.scorer",
        "demo.ranker",
        "demo.ranking.click",
        "demo.ranking.purchase",
    }
    assert set(manifest) == expected_names
    for variant, folder in paths.items():
        assert {p.name for p in folder.iterdir()} == expected_names
        for model in exported:
            text = (folder / model.name / "config.pbtxt").read_text()
            config = parse_config(text)  # tritonclient's ModelConfig protobuf
            assert isinstance(config, mc.ModelConfig)
            assert config.name == model.name
            assert config.max_batch_size == MAX_BATCH_SIZE
            assert config.HasField("dynamic_batching")
            (group,) = config.instance_group
            kind = "KIND_GPU" if variant == "gpu" else "KIND_CPU"
            assert mc.ModelInstanceGroup.Kind.Name(group.kind) == kind and group.count == 1
            declared = manifest[model.name]
            for field, tensors in (("inputs", config.input), ("outputs", config.output)):
                got = [
                    {
                        "name": t.name,
                        "dtype": mc.DataType.Name(t.data_type).removeprefix("TYPE_").lower(),
                        "dims": list(t.dims),
                    }
                    for t in tensors
                ]
                renamed = [
                    {**spec, "dtype": spec["dtype"].replace("float", "fp")}
                    for spec in declared[field]
                ]
                assert got == renamed, (variant, model.name, field)
            params = {k: v.string_value for k, v in config.parameters.items()}
            version = folder / model.name / "1"
            assert (version / model.artifact_name).read_bytes() == model.artifact
            if variant == "cpu":
                assert config.backend == "python"
                assert params == {"artifact": model.artifact_name}
                assert (version / "model.py").is_file()
            elif model.format == "onnx":
                assert (config.backend, config.platform) == ("onnxruntime", "onnxruntime_onnx")
                assert not (version / "model.py").exists()
            else:
                assert config.backend == "fil"
                assert params["model_type"] == "lightgbm"
                assert params["output_class"] == "false"  # the raw margin, as a regressor
            read_config(folder / model.name)  # parses and passes the load-time rules
    scorer = manifest["demo.scorer"]
    assert scorer["feature_columns"][0] == "card__x1"
    assert manifest["demo.retrieval.user"]["outputs"] == [
        {"name": EMBEDDING, "dtype": "float32", "dims": [TINY.embedding_dim]}
    ]


def test_repository_refuses_an_existing_folder_and_duplicate_names(exported, tmp_path):
    write_repository(exported[:1], tmp_path / "repo")
    with pytest.raises(FileExistsError):
        write_repository(exported[:1], tmp_path / "repo")
    with pytest.raises(ValueError, match="duplicate Triton model names"):
        write_repository([exported[0], exported[0]], tmp_path / "again")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name: "m"\nbackend: "fil"\nmax_batch_size: "many"', "max_batch_size"),
        ('name: "m"\nbackend: "fil"\ninstance_group [{ kind: KIND_TPU }]', "KIND_TPU"),
        ('name: "m"\nbakend: "fil"', "bakend"),
        ('name: "m"\ninput [{ name: "x" data_type: TYPE_FP32 dims: [ 3 ] }', "Expected"),
    ],
)
def test_malformed_config_fails_to_parse_naming_the_file(text: str, message: str, tmp_path):
    path = tmp_path / "m" / "config.pbtxt"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        read_config(path.parent)
    assert str(path) in str(error.value)


def test_configs_triton_would_refuse_at_load_time_fail_the_check(exported):
    text = config_text(gpu_config(exported[0]), "a header\nof two lines")
    assert text.startswith("# a header\n# of two lines\n")
    good = parse_config(text)
    check_config(good)
    bad = copy.deepcopy(good)
    bad.input[0].dims[:] = [0]
    bad.max_batch_size = 0
    bad.ClearField("instance_group")
    with pytest.raises(ConfigError) as error:
        check_config(bad, "repo/m/config.pbtxt")
    message = str(error.value)
    assert message.startswith("repo/m/config.pbtxt: ")
    assert "dynamic_batching: needs max_batch_size > 0" in message
    assert "dims [0]" in message and "instance_group" in message


# --------------------------------------------------------------------------- asset


def test_asset_writes_both_variants_and_keeps_them_when_an_export_fails(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    (asset,) = triton_assets.triton_repository_assets(spec)
    champions = {"fraud.scorer": ("4", served["demo.scorer"])}
    monkeypatch.setattr(triton_assets, "_champions", lambda spec, mlflow: champions)
    resources = {
        "mlflow": MLflowResource(home=str(tmp_path)),
        "home": HomeResource(path=str(tmp_path)),
    }

    dg.materialize([asset], resources=resources)
    result = dg.materialize([asset], resources=resources)  # replaces the first one
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    folder = tmp_path / "triton" / "fraud"
    assert metadata["path"].value == str(folder)
    assert metadata["versions"].value == {"fraud.scorer": "4"}
    assert 'backend: "fil"' in metadata["config_sample"].value
    assert sorted(p.name for p in folder.iterdir()) == ["cpu", "gpu", "manifest.json"]
    before = (folder / "gpu" / "fraud.scorer" / "config.pbtxt").read_text()

    def broken(name, version, model):
        raise ParityError("user tower: ONNX Runtime differs from PyTorch by 0.3 > 0.0001")

    monkeypatch.setattr(triton_assets, "export_model", broken)
    failed = dg.materialize([asset], resources=resources, raise_on_error=False)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("fraud.scorer version 4: export failed: user tower")
    assert (folder / "gpu" / "fraud.scorer" / "config.pbtxt").read_text() == before
    assert [p.name for p in (tmp_path / "triton").iterdir()] == ["fraud"]  # nothing staged left
