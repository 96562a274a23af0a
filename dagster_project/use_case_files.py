"""Find and load the use-case YAML files without importing Dagster or any asset factory.

They lived in ``dagster_project.loader``, but importing that imports every asset factory and
through them Dagster, Feast, torch, MLflow, statsmodels and BentoML: 10-20 s on a 2-core
machine, before ``playbook list`` could print a line. The loader now imports them from here. These read ``configs.schema`` alone
(~0.3 s), and import the file-source checks (pandas, pyarrow, fsspec) only when a spec reads
files, so the commands that only read YAML answer in about a second. The results are the same:
the same files, the same checks, the same all-or-nothing ``SpecError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from configs import use_case_dir
from configs.schema import UseCaseSpec, load_specs
from configs.schema.consistency import Problem
from configs.schema.source import FileSource


def config_dir() -> Path:
    """The folder of use-case YAML files (:func:`configs.use_case_dir`): ``PLAYBOOK_CONFIGS``,
    else the current folder's ``configs/`` when it holds YAML, else the shipped use cases."""
    return use_case_dir()


def config_paths(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """YAML files named directly or found in folders (default: the configs folder)."""
    found: list[Path] = []
    for path in (Path(p) for p in (paths or [config_dir()])):
        found.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return found


def file_source_problems(spec: UseCaseSpec) -> Iterator[Problem]:
    """The loader's file-system checks, imported only for a spec with a file source.

    Those checks peek into CSV and Parquet files with pandas and pyarrow (~1.5 s to import);
    a synthetic source has no file to check, so it should not pay for them.
    """
    if not isinstance(spec.source, FileSource):
        return
    from assets.raw.source_checks import file_source_problems as check_files

    yield from check_files(spec)


def load_use_cases(paths: Iterable[str | Path] | None = None) -> list[UseCaseSpec]:
    """Validate every config, file-system checks included; all or nothing (raises SpecError)."""
    return load_specs(config_paths(paths), extra_checks=[file_source_problems])
