"""Audit HMAC key settings: a single key, a keyring for rotation, the signing key id, and
refusals that name the variable (and the key id) but never a secret."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings

LONG1 = "a" * 32
LONG2 = "b" * 40
VARIABLES = (
    "ROLLOUT_BOT_AUDIT_HMAC_KEY",
    "ROLLOUT_BOT_AUDIT_HMAC_KEYS",
    "ROLLOUT_BOT_AUDIT_HMAC_KEY_ID",
    "ROLLOUT_BOT_SECRETS_DIR",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    for value in env.values():
        for part in value.replace(",", ":").split(":"):
            if len(part) >= 8:
                assert part not in message
    return message


def test_no_key_means_a_plain_trail() -> None:
    assert load_settings().audit_keyring() is None


def test_the_single_key_signs_as_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_BOT_AUDIT_HMAC_KEY", LONG1 + "\n")
    keyring = load_settings().audit_keyring()
    assert keyring is not None
    assert keyring.signing_kid == "default"
    assert dict(keyring.keys) == {"default": LONG1.encode()}
    assert LONG1 not in repr(keyring)


def test_a_keyring_with_a_signing_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_BOT_AUDIT_HMAC_KEYS", f"2026a:{LONG1}, 2026b:{LONG2}")
    monkeypatch.setenv("ROLLOUT_BOT_AUDIT_HMAC_KEY_ID", "2026b")
    keyring = load_settings().audit_keyring()
    assert keyring is not None
    assert keyring.signing_kid == "2026b"
    assert dict(keyring.keys) == {"2026a": LONG1.encode(), "2026b": LONG2.encode()}


def test_one_key_in_the_keyring_needs_no_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_BOT_AUDIT_HMAC_KEYS", f"only:{LONG1}")
    keyring = load_settings().audit_keyring()
    assert keyring is not None and keyring.signing_kid == "only"


def test_the_single_key_joins_the_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_BOT_AUDIT_HMAC_KEY", LONG1)
    monkeypatch.setenv("ROLLOUT_BOT_AUDIT_HMAC_KEYS", f"new:{LONG2}")
    monkeypatch.setenv("ROLLOUT_BOT_AUDIT_HMAC_KEY_ID", "new")
    keyring = load_settings().audit_keyring()
    assert keyring is not None
    assert sorted(keyring.keys) == ["default", "new"] and keyring.signing_kid == "new"


def test_a_short_single_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, ROLLOUT_BOT_AUDIT_HMAC_KEY="short-secret")
    assert "ROLLOUT_BOT_AUDIT_HMAC_KEY " in message and "32 bytes" in message


def test_a_short_key_in_the_keyring_is_refused_by_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, ROLLOUT_BOT_AUDIT_HMAC_KEYS=f"old:{LONG1},new:short-secret")
    assert "ROLLOUT_BOT_AUDIT_HMAC_KEYS" in message and "'new'" in message


@pytest.mark.parametrize(
    "value",
    [f"no-colon-{LONG1}", f"bad id:{LONG1}", f"dup:{LONG1},dup:{LONG2}", " , "],
    ids=["no-colon", "bad-id", "duplicate", "empty"],
)
def test_a_malformed_keyring_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert "ROLLOUT_BOT_AUDIT_HMAC_KEYS" in refused(monkeypatch, ROLLOUT_BOT_AUDIT_HMAC_KEYS=value)


def test_several_keys_need_a_signing_id(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, ROLLOUT_BOT_AUDIT_HMAC_KEYS=f"a:{LONG1},b:{LONG2}")
    assert "ROLLOUT_BOT_AUDIT_HMAC_KEY_ID" in message and "a, b" in message


def test_an_unknown_signing_id_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(
        monkeypatch,
        ROLLOUT_BOT_AUDIT_HMAC_KEYS=f"a:{LONG1}",
        ROLLOUT_BOT_AUDIT_HMAC_KEY_ID="c",
    )
    assert "ROLLOUT_BOT_AUDIT_HMAC_KEY_ID" in message and "'c'" in message


def test_default_cannot_be_both_the_single_key_and_a_keyring_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = refused(
        monkeypatch,
        ROLLOUT_BOT_AUDIT_HMAC_KEY=LONG1,
        ROLLOUT_BOT_AUDIT_HMAC_KEYS=f"default:{LONG2}",
        ROLLOUT_BOT_AUDIT_HMAC_KEY_ID="default",
    )
    assert "'default'" in message
