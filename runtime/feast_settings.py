"""Settings a Feast repo reads from the environment at run time, never from disk.

A Redis connection string may hold a password (``host:port,password=...``). Playbook writes
``connection_string: ${PLAYBOOK_REDIS}`` into ``feature_store.yaml``, never the value: Feast 0.67
expands ``${NAME}`` in the file's text when it loads it (``feast.repo_config.load_repo_config``
runs ``os.path.expandvars``), so Feast's CLI and a served Bento read the variable at run time, and
no file under the home, no bundle and no Bento holds the secret.

``os.path.expandvars`` leaves an unset ``${NAME}`` as it is, and Feast would then try to connect to
a host literally called ``${NAME}``. :func:`check` says instead which variable is missing, which
setting reads it and whose repo it is; it also refuses a value that Feast's text expansion would
garble (a newline, `` #`` starting a YAML comment), which :func:`expand` (the pipeline's own loading,
after parsing) does not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REDIS_ENV = "PLAYBOOK_REDIS"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingSetting(RuntimeError):
    """A setting a Feast repo reads from the environment is not there (or cannot be used)."""


def reference(name: str) -> str:
    """``${name}``: how ``feature_store.yaml`` names an environment variable."""
    return "${" + name + "}"


def references(config: Any, where: str = "") -> dict[str, str]:
    """``{variable: setting}`` of every ``${NAME}`` in a parsed config, the setting as a dotted
    key (``online_store.connection_string``)."""
    found: dict[str, str] = {}
    if isinstance(config, Mapping):
        for key, value in config.items():
            found.update(references(value, f"{where}.{key}" if where else str(key)))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            found.update(references(value, f"{where}[{i}]"))
    elif isinstance(config, str):
        found.update({name: where for name in _REFERENCE.findall(config)})
    return found


def _missing(config: Any, env: Mapping[str, str], owner: str, file: Path | str) -> None:
    unset = {name: key for name, key in references(config).items() if not env.get(name)}
    if unset:
        settings = "; ".join(f"{key} reads ${name}" for name, key in sorted(unset.items()))
        names = ", ".join(sorted(unset))
        raise MissingSetting(
            f"{owner}: {file} takes settings from the environment at run time, and {names}"
            f" {'is' if len(unset) == 1 else 'are'} not set ({settings}). Set"
            f" {'it' if len(unset) == 1 else 'them'} where the pipeline or the service runs,"
            f" e.g. {REDIS_ENV}=host:6379,password=..., for a Redis online store; Playbook never"
            " writes the value to disk."
        )


def expand(config: Any, env: Mapping[str, str], owner: str, file: Path | str) -> Any:
    """``config`` (parsed) with every ``${NAME}`` replaced by ``env[NAME]``; a
    :class:`MissingSetting` naming the variables and settings when one is unset."""
    _missing(config, env, owner, file)
    if isinstance(config, Mapping):
        return {key: expand(value, env, owner, file) for key, value in config.items()}
    if isinstance(config, list):
        return [expand(value, env, owner, file) for value in config]
    if isinstance(config, str):
        return _REFERENCE.sub(lambda match: env[match.group(1)], config)
    return config


def check(repo: Path, owner: str, env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`MissingSetting` unless ``<repo>/feature_store.yaml`` will load in Feast
    with the environment ``env`` (default ``os.environ``): every ``${NAME}`` it names is set, and
    Feast's expansion of the text gives each setting exactly the variable's value."""
    env = os.environ if env is None else env
    file = repo / "feature_store.yaml"
    text = file.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    _missing(config, env, owner, file)
    if not references(config):
        return
    wanted = expand(config, env, owner, file)
    try:
        got = yaml.safe_load(_REFERENCE.sub(lambda match: env[match.group(1)], text))
    except yaml.YAMLError:
        got = None
    if got != wanted:
        names = ", ".join(sorted(references(config)))
        raise MissingSetting(
            f"{owner}: the value of {names} cannot be carried by Feast's expansion of {file}"
            " (it holds a newline, a YAML comment or a leading quote); percent-encode or change it"
        )
