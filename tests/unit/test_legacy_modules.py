"""Pickles that name modules from before the runtime layer load as today's classes."""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from runtime import legacy
from runtime.models.decision_bands import DecisionBands

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("old", sorted(legacy.MOVED))
def test_every_moved_module_is_gone_and_its_new_home_imports(old: str) -> None:
    """The hook only answers for paths with no module left behind, and maps to real modules."""
    path = REPO.joinpath(*old.split("."))
    assert not path.exists() and not path.with_suffix(".py").exists()
    importlib.import_module(legacy.MOVED[old])


def test_an_old_pickle_loads_as_the_new_class() -> None:
    bands = DecisionBands(approve_below=0.3, decline_at_or_above=0.8, summary={"review": 0.5})
    # protocol 0 spells the class as text lines, so the module name can be rewritten in place
    old = pickle.dumps(bands, protocol=0).replace(
        b"runtime.models.decision_bands", b"serving.models.decision_bands"
    )
    assert b"serving.models.decision_bands" in old
    legacy.install()
    legacy.install()  # idempotent
    loaded = pickle.loads(old)  # noqa: S301 - our own bytes
    assert type(loaded) is DecisionBands
    probabilities = np.array([0.1, 0.5, 0.9])
    assert loaded.apply_bands(probabilities).tolist() == ["approve", "review", "decline"]
    assert loaded == bands
    old_module = importlib.import_module("serving.models.decision_bands")
    assert old_module is importlib.import_module("runtime.models.decision_bands")
    assert old_module.__spec__.name == "runtime.models.decision_bands"


def test_unmoved_names_are_left_to_the_import_system() -> None:
    assert legacy.new_name("serving.service") is None
    assert legacy.new_name("serving.models_extra") is None
    assert legacy.new_name("serving.models.ranker") == "runtime.models.ranker"
