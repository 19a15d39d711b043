"""Settings: each from its environment variable, flags over the environment, bad values
refused with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.settings import Settings, SettingsError


def test_environment_then_flags() -> None:
    environ = {
        "CASCADE_POLICY": "p.yaml",
        "CASCADE_LEDGER": "jsonl:///x.jsonl",
        "CASCADE_LEDGER_QUEUE": "7",
        "CASCADE_LOG_LEVEL": "DEBUG",
        "CASCADE_POLICY_POLL_S": "0.5",
        "UNRELATED": "ignored",
    }
    settings = Settings.from_env(environ, policy_path=Path("flag.yaml"), port=None)
    assert settings.policy_path == Path("flag.yaml")  # the flag wins; None flags do not
    assert (settings.ledger_url, settings.ledger_queue) == ("jsonl:///x.jsonl", 7)
    assert (settings.log_level, settings.policy_poll_s, settings.port) == ("debug", 0.5, 8080)
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CASCADE_LEDGER_QUEUE": "many"}, "CASCADE_LEDGER_QUEUE: Input should be a valid integer"),
        ({"CASCADE_LEDGER_BATCH": "0"}, "CASCADE_LEDGER_BATCH: Input should be greater than"),
        ({"CASCADE_LOG_LEVEL": "loud"}, "CASCADE_LOG_LEVEL: Input should be 'debug'"),
        ({"CASCADE_POLICY_POLL_S": "-1"}, "CASCADE_POLICY_POLL_S: Input should be greater than 0"),
    ],
)
def test_bad_values_name_their_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_every_setting_but_the_address_has_a_variable() -> None:
    internal = {"host", "port", "workers_replaced", "ledger_writer_socket", "metrics_folder"}
    assert set(Settings.variables().values()) == set(Settings.model_fields) - internal
