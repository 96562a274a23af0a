"""Write a Dagster instance (``dagster.yaml``) that keeps runs, events and schedules in Postgres.

Why: the default instance in ``<home>/dagster`` is SQLite files, which serialize writers. That is
fine for ``playbook materialize`` (one process), but the multiprocess executor (the default for
runs launched from the UI, a schedule or a sensor: one process per step), the daemon and the
webserver all write events at once, and on Kubernetes they run in different pods that share no
disk. With ``storage: postgres`` they all share one database (``dagster-postgres``).

The password is never written: the file names an environment variable (``{env: ...}``) that
Dagster reads in every process that opens the instance, so the file can be committed, baked into
an image or mounted from a ConfigMap. ``playbook materialize``, ``make dev`` and ``dagster-daemon``
pick the file up from ``<home>/dagster`` (``DAGSTER_HOME``) as they would the SQLite one::

    export DAGSTER_PG_PASSWORD=...   # in every shell that runs Playbook or Dagster
    python -m dagster_project.instance_config --home .playbook --host 127.0.0.1 --db dagster
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resources.home import home_layout, instance_settings

# The name the official Dagster Helm chart uses for the same variable (deploy/dagster/values.yaml).
PASSWORD_ENV = "DAGSTER_PG_PASSWORD"
INSTANCE_FILE = "dagster.yaml"
# dagster-postgres is written for psycopg2 (it installs psycopg2-binary and reads its error codes),
# but SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed: name it.
SCHEME = "postgresql+psycopg2"


@dataclass(frozen=True)
class PostgresSettings:
    """Where the Dagster instance's database is; the password comes from ``password_env``."""

    hostname: str
    port: int = 5432
    username: str = "dagster"
    db_name: str = "dagster"
    password_env: str = PASSWORD_ENV
    scheme: str = SCHEME
    # libpq connection parameters, e.g. {"sslmode": "require"} for a managed database
    params: Mapping[str, str] = field(default_factory=dict)


def postgres_instance_config(settings: PostgresSettings) -> dict[str, Any]:
    """The ``dagster.yaml`` content: all three storages (runs, events, schedules) in Postgres.

    The rest is what the default Playbook instance has: telemetry off (no network on the
    machines this runs on, and its banner hides the CLI's summary), and
    :func:`resources.home.instance_settings`: our packages' loggers captured into each run's
    event log, one run at a time per use case, and runs whose process died marked failed.
    """
    database: dict[str, Any] = {
        "hostname": settings.hostname,
        "port": settings.port,
        "username": settings.username,
        "password": {"env": settings.password_env},
        "db_name": settings.db_name,
        "scheme": settings.scheme,
    }
    if settings.params:
        database["params"] = dict(settings.params)
    return {
        "telemetry": {"enabled": False},
        **instance_settings(),
        "storage": {"postgres": {"postgres_db": database}},
    }


def write_postgres_instance(
    dagster_home: str | os.PathLike[str], settings: PostgresSettings
) -> Path:
    """Write ``<dagster_home>/dagster.yaml`` for ``settings`` (replacing what is there)."""
    folder = Path(dagster_home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INSTANCE_FILE
    text = yaml.safe_dump(postgres_instance_config(settings), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dagster_project.instance_config",
        description="Point a Playbook home's Dagster instance at a Postgres database.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--home", help="Playbook home (default: $PLAYBOOK_HOME or ./.playbook)")
    where.add_argument("--dagster-home", help="write DIR/dagster.yaml instead of <home>/dagster")
    parser.add_argument("--host", default=os.environ.get("DAGSTER_PG_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DAGSTER_PG_PORT", 5432)))
    parser.add_argument("--user", default=os.environ.get("DAGSTER_PG_USERNAME", "dagster"))
    parser.add_argument("--db", default=os.environ.get("DAGSTER_PG_DB", "dagster"))
    parser.add_argument(
        "--password-env",
        default=PASSWORD_ENV,
        help=f"environment variable holding the password (default {PASSWORD_ENV})",
    )
    parser.add_argument("--sslmode", help="libpq sslmode, e.g. require")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: write the instance file and print where it went."""
    parser = _parser()
    args = parser.parse_args(argv)
    folder = args.dagster_home or str(home_layout(args.home).dagster())
    if "://" in folder:  # an s3:// home: the instance file is read from a local DAGSTER_HOME
        parser.error(f"{folder} is not a local folder: pass --dagster-home DIR")
    settings = PostgresSettings(
        hostname=args.host,
        port=args.port,
        username=args.user,
        db_name=args.db,
        password_env=args.password_env,
        params={"sslmode": args.sslmode} if args.sslmode else {},
    )
    path = write_postgres_instance(folder, settings)
    print(f"wrote {path}; export {settings.password_env} before starting Dagster")  # noqa: T201
    return path


if __name__ == "__main__":
    main()
