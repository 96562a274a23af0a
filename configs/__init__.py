"""Use-case YAML files and the schema that defines them (``configs.schema``).

``CONFIG_DIR`` is this folder: the shipped use cases and ``playbook.schema.json``. A project keeps
its own use cases in its ``configs/`` folder, or in the folder ``$PLAYBOOK_CONFIGS`` names.
"""

import os
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
CONFIGS_ENV = "PLAYBOOK_CONFIGS"


def project_config_dir() -> Path:
    """Where ``playbook new`` writes: ``$PLAYBOOK_CONFIGS``, else ``configs/`` in the current
    folder (the project a user works in, not the folder the package is installed in)."""
    listed = os.environ.get(CONFIGS_ENV, "").strip()
    return Path(listed).expanduser() if listed else Path.cwd() / "configs"


def use_case_dir() -> Path:
    """The folder the commands read by default: ``$PLAYBOOK_CONFIGS``; else the current folder's
    ``configs/`` when it holds a YAML file; else the shipped use cases (``CONFIG_DIR``)."""
    folder = project_config_dir()
    if os.environ.get(CONFIGS_ENV, "").strip() or any(folder.glob("*.yaml")):
        return folder
    return CONFIG_DIR
