"""The ``playbook`` commands that only read YAML stay light and quiet.

``list``, ``validate``, ``new`` and ``schema`` once imported Dagster, Feast, torch, MLflow,
statsmodels and BentoML (10-20 s) and printed their deprecation warnings before the first line
of output. Each check runs in a fresh interpreter: the test process may have imported anything.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import pytest

from dagster_project.cli_support import THIRD_PARTY_NOISE, Noise, plain_stdout, silence
from tests.conftest import REPO

HEAVY = ("dagster", "feast", "torch", "mlflow", "bentoml", "statsmodels")
PLAYBOOK = "from dagster_project.cli import main; main()"


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_importing_the_cli_imports_no_heavy_library() -> None:
    probe = (
        f"import dagster_project.cli, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = _python("-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [["list"], ["validate"], ["schema"], ["--help"]])
def test_yaml_commands_print_no_warning(command: list[str]) -> None:
    done = _python("-c", PLAYBOOK, *command)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr


def _shown(*raised: tuple[str, type[Warning], str]) -> list[str]:
    """Messages that reach the user when each (message, category, module) is warned, after a
    library has put an ``always`` filter in front of ours, as Feast does on import."""
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_args, **_kw: shown.append(str(message))
        silence(*THIRD_PARTY_NOISE)
        warnings.simplefilter("always", DeprecationWarning)
        for message, category, module in raised:
            filename = f"/venv/site-packages/{module.replace('.', '/')}.py"
            warnings.warn_explicit(message, category, filename, 1, module=module)
    return shown


def test_listed_third_party_noise_is_dropped_and_the_rest_shown() -> None:
    noise = "GitWildMatchPattern ('gitwildmatch') is deprecated. Use 'gitignore' instead."
    shown = _shown(
        (noise, DeprecationWarning, "pathspec.pattern"),
        ("The ``noload`` loader strategy is deprecated", DeprecationWarning, "mlflow.store"),
        # the same text raised by another package, and our own warnings, still show
        (noise, DeprecationWarning, "somelib.matcher"),
        ("field x is deprecated, use y", DeprecationWarning, "configs.schema.base"),
        ("a source file is empty", UserWarning, "assets.raw.file_source"),
    )
    assert shown == [
        noise,
        "field x is deprecated, use y",
        "a source file is empty",
    ]


def test_noise_matches_category_message_and_package() -> None:
    noise = Noise(DeprecationWarning, r"old thing", "lib")
    assert noise.matches("Old thing is gone", DeprecationWarning, "/x/lib/a.py")
    assert not noise.matches("old thing is gone", PendingDeprecationWarning, "/x/lib/a.py")
    assert not noise.matches("old thing is gone", DeprecationWarning, "/x/library/a.py")
    assert not noise.matches("a new thing", DeprecationWarning, "/x/lib/a.py")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, expected", [(io.StringIO, "7 views\n"), (_Terminal, None)])
def test_colour_codes_are_stripped_only_when_stdout_is_not_a_terminal(
    stream: type[io.StringIO], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    coloured = "\x1b[1m\x1b[32m7\x1b[0m views\n"  # what Feast prints with colorama's Fore/Style
    out = stream()
    monkeypatch.setattr(sys, "stdout", out)
    with plain_stdout():
        print(coloured, end="")
    assert sys.stdout is out
    assert out.getvalue() == (coloured if expected is None else expected)
