"""Settings: fail fast naming the variable, never echo a secret, accept mounted secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

SECRET = "xoxb-very-secret-value"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "REDIS_URL",
        "ROLLOUT_BOT_SECRETS_DIR",
        "ROLLOUT_BOT_THREADS",
        "SLACK_API_URL",
        "ROLLOUT_BOT_HEALTH_PORT",
        "ROLLOUT_BOT_LOG_FORMAT",
        "ROLLOUT_BOT_LOG_LEVEL",
        "ROLLOUT_BOT_POLICY_RELOAD_INTERVAL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_missing_token_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is required but not set"):
        load_settings()


def test_invalid_values_name_their_variable_and_never_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    monkeypatch.setenv("ROLLOUT_BOT_THREADS", "lots")
    monkeypatch.setenv("SLACK_API_URL", "ftp://nope")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "ROLLOUT_BOT_THREADS" in message and "SLACK_API_URL" in message
    assert SECRET not in message


def test_secrets_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@redis:6379/0")
    settings = load_settings()
    assert SECRET not in repr(settings) and "hunter2" not in repr(settings)
    assert settings.slack_bot_token.get_secret_value() == SECRET


def test_mounted_secret_files_fill_what_the_environment_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "SLACK_BOT_TOKEN").write_text(SECRET + "\n")
    (tmp_path / "SLACK_SIGNING_SECRET").write_text("from-file")
    monkeypatch.setenv("ROLLOUT_BOT_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "from-env")
    settings = load_settings()
    assert settings.slack_bot_token.get_secret_value() == SECRET
    assert settings.slack_signing_secret is not None
    assert settings.slack_signing_secret.get_secret_value() == "from-env"


def test_a_secrets_dir_that_does_not_exist_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_BOT_SECRETS_DIR", "/nonexistent/secrets")
    with pytest.raises(ConfigError, match="ROLLOUT_BOT_SECRETS_DIR"):
        load_settings()


def test_observability_settings_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    defaults = load_settings()
    assert (defaults.health_port, defaults.log_format, defaults.log_level) == (8080, "text", "INFO")
    monkeypatch.setenv("ROLLOUT_BOT_HEALTH_PORT", "9090")
    monkeypatch.setenv("ROLLOUT_BOT_LOG_FORMAT", "JSON")
    monkeypatch.setenv("ROLLOUT_BOT_LOG_LEVEL", "debug")
    settings = load_settings()
    assert (settings.health_port, settings.log_format, settings.log_level) == (
        9090,
        "json",
        "DEBUG",
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("ROLLOUT_BOT_LOG_FORMAT", "yaml"),
        ("ROLLOUT_BOT_LOG_LEVEL", "loud"),
        ("ROLLOUT_BOT_HEALTH_PORT", "70000"),
        ("ROLLOUT_BOT_POLICY_RELOAD_INTERVAL", "0"),
    ],
)
def test_bad_observability_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()
