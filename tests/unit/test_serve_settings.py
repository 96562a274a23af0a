"""The services' deployment settings, read from the environment of ``bentoml serve``."""

from __future__ import annotations

import pytest

from serving.service import (
    ACCESS_LOG_ENV,
    KEEPALIVE_AGE_ENV,
    KEEPALIVE_ENV,
    WORKERS_ENV,
    ServeSettings,
)


def test_defaults_and_values_from_the_environment() -> None:
    assert ServeSettings.from_env({}) == ServeSettings(workers=1, access_log=False)
    settings = ServeSettings.from_env({WORKERS_ENV: "3", ACCESS_LOG_ENV: "true"})
    assert settings == ServeSettings(workers=3, access_log=True)
    assert ServeSettings.from_env({WORKERS_ENV: "cpu_count"}).workers == "cpu_count"
    assert ServeSettings.from_env({}).keepalive_requests == 100
    assert ServeSettings.from_env({KEEPALIVE_ENV: "0"}).keepalive_requests == 0
    assert ServeSettings.from_env({}).keepalive_seconds == 1.0
    assert ServeSettings.from_env({KEEPALIVE_AGE_ENV: "0.5"}).keepalive_seconds == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({WORKERS_ENV: "0"}, "PLAYBOOK_WORKERS='0': expected a whole number of at least 1"),
        ({WORKERS_ENV: "many"}, "PLAYBOOK_WORKERS='many': expected a whole number"),
        ({ACCESS_LOG_ENV: "maybe"}, "PLAYBOOK_ACCESS_LOG='maybe': expected true or false"),
        ({KEEPALIVE_ENV: "-1"}, "PLAYBOOK_KEEPALIVE_REQUESTS='-1': expected a whole number"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServeSettings.from_env(env)
