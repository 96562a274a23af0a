"""Use-case YAML files and the schema that defines them (``configs.schema``)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
