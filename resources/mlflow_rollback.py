"""Rolling ``champion`` back to an earlier version, with the event recorded where people look.

:meth:`resources.mlflow_resource.MLflowResource.rollback` is the entry point; the work is here,
on a plain :class:`mlflow.MlflowClient`, so the resource keeps to its stores, logging and the
promotion gate.
"""

from __future__ import annotations

import time

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from resources.mlflow_logging import NOT_FOUND
from runtime.layout import CHAMPION
from runtime.promotion import (
    LAST_ROLLBACK_TAG,
    RESTORED_TAG,
    ROLLBACK_TAG_PREFIX,
    ROLLED_BACK_TAG,
    RollbackEvent,
)


def _champion(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as error:
        if error.error_code in NOT_FOUND:
            return None
        raise


def roll_back(
    client: MlflowClient,
    name: str,
    to_version: str | int,
    reason: str,
    experiment_id: str | None = None,
) -> RollbackEvent:
    """Move ``champion`` of ``name`` back to ``to_version`` and record why.

    The version losing the alias is tagged ``playbook.rolled_back=true``, the one getting it
    ``playbook.restored=true``; both get ``playbook.rollback.{reason,at,from,to}``, the
    registered model gets ``playbook.last_rollback`` (one line), and with ``experiment_id`` a
    finished run named ``rollback`` holds the same as tags and params, so the event shows in
    the MLflow UI beside the training runs. Raises ``ValueError`` when there is no champion
    or it already is ``to_version``, and MLflow's error when the version does not exist.
    """
    target = str(to_version)
    client.get_model_version(name, target)  # fails clearly on an unknown version
    current = _champion(client, name)
    if current is None or current == target:
        raise ValueError(
            f"{name}: cannot roll back to version {target}: champion is {current or 'unset'}"
        )
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record = {"reason": reason, "at": at, "from": current, "to": target}
    run_id = None
    if experiment_id is not None:
        run = client.create_run(
            experiment_id,
            run_name="rollback",
            tags={
                "playbook.event": "rollback",
                "playbook.registered_name": name,
                **{ROLLBACK_TAG_PREFIX + k: v for k, v in record.items()},
            },
        )
        run_id = run.info.run_id
        for key in ("from", "to"):
            client.log_param(run_id, f"{key}_version", record[key])
        client.set_terminated(run_id)
    client.set_registered_model_alias(name, CHAMPION, target)
    for version, flag in ((current, ROLLED_BACK_TAG), (target, RESTORED_TAG)):
        client.set_model_version_tag(name, version, flag, "true")
        for key, value in record.items():
            client.set_model_version_tag(name, version, ROLLBACK_TAG_PREFIX + key, value)
    client.set_registered_model_tag(
        name, LAST_ROLLBACK_TAG, f"{at}: v{current} -> v{target}: {reason}"
    )
    return RollbackEvent(name, current, target, reason, at, run_id)
