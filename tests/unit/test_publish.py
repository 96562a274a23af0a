"""Atomic folder publishing: a failed or interrupted publish never loses the published version."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import publish
from runtime.publish import publishing, recover


def _write(folder: Path, text: str) -> None:
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text(text, encoding="utf-8")


def _read(folder: Path) -> str:
    return (folder / "data.txt").read_text(encoding="utf-8")


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_publish_replaces_after_verifying(tmp_path: Path) -> None:
    final = tmp_path / "bundle"
    seen = []
    with publishing(final, verify=lambda staged: seen.append(_read(staged))) as staging:
        _write(staging, "v1")
    with publishing(final, verify=lambda staged: seen.append(_read(staged))) as staging:
        assert _read(final) == "v1"  # still served while v2 is built
        _write(staging, "v2")
    assert _read(final) == "v2" and seen == ["v1", "v2"]
    assert _hidden(tmp_path) == []  # no staging or retired folder left behind


@pytest.mark.parametrize("fails_in", ["build", "verify", "nothing written"])
def test_a_failed_publish_keeps_the_old_version(tmp_path: Path, fails_in: str) -> None:
    final = tmp_path / "index"
    with publishing(final) as staging:
        _write(staging, "good")

    def verify(staged: Path) -> None:
        if fails_in == "verify":
            raise ValueError("does not load")

    with pytest.raises((RuntimeError, ValueError, FileNotFoundError)):
        with publishing(final, verify=verify) as staging:
            if fails_in != "nothing written":
                _write(staging, "half")
            if fails_in == "build":
                raise RuntimeError("killed mid-build")
    assert _read(final) == "good"
    assert _hidden(tmp_path) == []


def test_a_crash_between_the_renames_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old folder is renamed aside first; dying before the new one is renamed in leaves the
    old one under its retired name, and the next publish (or a reader's ``recover``) puts it
    back, so it is never lost."""
    final = tmp_path / "repository"
    with publishing(final) as staging:
        _write(staging, "old")
    real_rename = Path.rename

    def dies_after_first_rename(self: Path, target: Path) -> Path:
        moved = real_rename(self, target)
        if publish.RETIRED in Path(target).name:
            raise SystemExit("killed between the two renames")
        return moved

    monkeypatch.setattr(Path, "rename", dies_after_first_rename)
    with pytest.raises(SystemExit):
        with publishing(final) as staging:
            _write(staging, "new")
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not final.exists() and any(publish.RETIRED in n for n in _hidden(tmp_path))
    assert recover(final) is True
    assert _read(final) == "old"
    assert recover(final) is False  # nothing left to restore
    with publishing(final) as staging:
        _write(staging, "new")
    assert _read(final) == "new"
