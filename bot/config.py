"""Settings from the environment (and, for secrets, one-file-per-secret mounts).

A missing or invalid setting stops start-up with a message naming the variable; secret values
are `SecretStr` so they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.audit import DEFAULT_KEY_ID, AuditKeyring, valid_key_id
from bot.domain.integrity import MIN_KEY_BYTES


class ConfigError(Exception):
    """Start-up configuration is unusable; the message names each bad variable, no values."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        # A Kubernetes Secret mounted as a volume gives one file per key.
        secrets_dir=None,
    )

    slack_bot_token: SecretStr = Field(validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_SIGNING_SECRET"
    )
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    # May hold a password (redis://:pw@host), so it is a secret too.
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), validation_alias="REDIS_URL"
    )
    kubeconfig: Path | None = Field(default=None, validation_alias="KUBECONFIG")
    policy_file: Path | None = Field(default=None, validation_alias="ROLLOUT_BOT_POLICY")
    cluster_name: str = Field(default="default", validation_alias="ROLLOUT_BOT_CLUSTER_NAME")
    # The kubeconfig contexts served, `east,west` (kubectl's names; KUBECONFIG may list several
    # files). Unset: the current context only, under ROLLOUT_BOT_CLUSTER_NAME, as before.
    # Inside a cluster, the bot's own cluster is the context named ROLLOUT_BOT_CLUSTER_NAME.
    contexts: str | None = Field(default=None, validation_alias="ROLLOUT_BOT_CONTEXTS")
    max_replicas: int = Field(
        default=100, ge=1, le=10000, validation_alias="ROLLOUT_BOT_MAX_REPLICAS"
    )
    http_host: str = Field(default="127.0.0.1", validation_alias="ROLLOUT_BOT_HTTP_HOST")
    # Request threads (HTTP server threads, or Socket Mode's concurrency): each verifies, parses,
    # hands the work on and acknowledges; a burst of requests needs one each until its ack.
    listener_threads: int = Field(default=32, ge=4, le=512, validation_alias="ROLLOUT_BOT_THREADS")
    # Threads that run acknowledged work (cluster calls, rendering, replies). Each holds the GIL
    # while it computes, and every one of them competes with the threads that acknowledge
    # requests: a few are enough to keep two cores busy, many only make acks wait longer.
    work_threads: int = Field(default=8, ge=1, le=256, validation_alias="ROLLOUT_BOT_WORK_THREADS")
    # Processes that run acknowledged work, so acks never queue behind it for the interpreter
    # (bot/workers.py); each runs ROLLOUT_BOT_WORK_THREADS threads. 0: work in this process.
    # One is enough to keep acks fast; each further one adds a core's worth of Python work
    # and about 80 MiB (it builds its own clients).
    workers: int = Field(default=1, ge=0, le=32, validation_alias="ROLLOUT_BOT_WORKERS")
    # How long a thread computing in Python may keep the interpreter before another that waits
    # gets it. The serving process only acknowledges (work runs in worker processes), so
    # Python's own 5 ms suits it; with ROLLOUT_BOT_WORKERS=0, work threads share the process
    # with acks, and a shorter interval (0.5) keeps acks from waiting a full interval each time.
    switch_interval_ms: float = Field(
        default=5.0, gt=0, le=100, validation_alias="ROLLOUT_BOT_SWITCH_INTERVAL_MS"
    )
    # Every Kubernetes request is bounded: a hung API server must give "nothing was changed",
    # not a hung thread. 10 s is well above a healthy apiserver's p99 for single-object calls.
    kube_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, validation_alias="ROLLOUT_BOT_KUBE_TIMEOUT"
    )
    # Redis answers in well under a millisecond; 2 s means it is stuck, and we refuse instead.
    redis_timeout_seconds: float = Field(
        default=2.0, gt=0, le=60, validation_alias="ROLLOUT_BOT_REDIS_TIMEOUT"
    )
    redis_prefix: str = Field(default="rollout-bot", validation_alias="ROLLOUT_BOT_REDIS_PREFIX")
    # Sentinel: `host:port,host:port,...`. When set, the Sentinels name the primary (and follow
    # a failover); REDIS_URL then only supplies the password and the database number.
    redis_sentinels: str | None = Field(default=None, validation_alias="REDIS_SENTINELS")
    redis_sentinel_master: str | None = Field(
        default=None, validation_alias="REDIS_SENTINEL_MASTER", validate_default=True
    )
    # The Sentinels' own password (`requirepass` in sentinel.conf), if they have one.
    redis_sentinel_password: SecretStr | None = Field(
        default=None, validation_alias="REDIS_SENTINEL_PASSWORD"
    )
    # Replicas that must acknowledge (Redis WAIT) what authorises a change before the bot
    # touches the cluster: a failover then cannot lose an audit entry or a decision. Unset: 1
    # with Sentinel, 0 (no WAIT at all) with a single Redis.
    redis_min_replicas: int | None = Field(
        default=None, ge=0, le=16, validation_alias="ROLLOUT_BOT_REDIS_MIN_REPLICAS"
    )
    # How long a write waits for those acknowledgements before the change is refused. Well
    # inside the time a user waits for an answer; a healthy replica acknowledges in a
    # millisecond.
    redis_wait_timeout_seconds: float = Field(
        default=2.0, gt=0, le=10, validation_alias="ROLLOUT_BOT_REDIS_WAIT_TIMEOUT"
    )

    @field_validator("redis_sentinels", mode="after")
    @classmethod
    def _sentinel_list(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        addresses = [part.strip() for part in value.split(",") if part.strip()]
        for position, address in enumerate(addresses, start=1):
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"entry {position} is not `host:port`")
        return ",".join(addresses)

    @field_validator("redis_sentinel_master", mode="after")
    @classmethod
    def _master_named(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = value.strip() if value else None
        if info.data.get("redis_sentinels") and not value:
            raise ValueError(
                "is required when REDIS_SENTINELS is set (the name the Sentinels monitor, "
                "e.g. `mymaster`)"
            )
        return value

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; empty without Sentinel."""
        if not self.redis_sentinels:
            return []
        pairs = []
        for address in self.redis_sentinels.split(","):
            host, _, port = address.rpartition(":")
            pairs.append((host.strip("[]"), int(port)))
        return pairs

    def min_replicas(self) -> int:
        """ROLLOUT_BOT_REDIS_MIN_REPLICAS, or its default: 1 with Sentinel, 0 without."""
        if self.redis_min_replicas is not None:
            return self.redis_min_replicas
        return 1 if self.redis_sentinels else 0

    # chat.update is Tier 3; one update per progress message every 2 s stays well inside it.
    progress_update_interval: float = Field(
        default=2.0, ge=0.2, le=60, validation_alias="ROLLOUT_BOT_PROGRESS_INTERVAL"
    )
    # An approved request that has not started after this long was orphaned (its replica died
    # mid-click); the sweeper starts it, still exactly once.
    approval_resume_after_seconds: float = Field(
        default=30.0, gt=0, le=3600, validation_alias="ROLLOUT_BOT_APPROVAL_RESUME_AFTER"
    )
    # Retention: trimming keeps what remains verifiable (an anchor records the cut).
    audit_max_entries: int | None = Field(
        default=None, ge=100, validation_alias="ROLLOUT_BOT_AUDIT_MAX_ENTRIES"
    )
    audit_max_age_days: float | None = Field(
        default=None, gt=0, validation_alias="ROLLOUT_BOT_AUDIT_MAX_AGE_DAYS"
    )
    # With a key the chain is HMAC-SHA256: rewriting it then needs this secret, not just Redis.
    # A single key (key id `default`) ...
    audit_hmac_key: SecretStr | None = Field(
        default=None, validation_alias="ROLLOUT_BOT_AUDIT_HMAC_KEY"
    )
    # ... and/or a keyring for rotation, `kid1:secret1,kid2:secret2`: every key verifies what
    # it signed, ROLLOUT_BOT_AUDIT_HMAC_KEY_ID names the one that signs new entries.
    audit_hmac_keys: SecretStr | None = Field(
        default=None, validation_alias="ROLLOUT_BOT_AUDIT_HMAC_KEYS"
    )
    audit_hmac_key_id: str | None = Field(
        default=None, validation_alias="ROLLOUT_BOT_AUDIT_HMAC_KEY_ID", validate_default=True
    )

    @field_validator("audit_hmac_keys", mode="after")
    @classmethod
    def _keyring_well_formed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        _parse_keyring(value.get_secret_value())  # raises naming the bad part, never a secret
        return value

    @field_validator("audit_hmac_key_id", mode="after")
    @classmethod
    def _signing_key_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        single = info.data.get("audit_hmac_key")
        ring = info.data.get("audit_hmac_keys")
        kids = set(_parse_keyring(ring.get_secret_value())) if ring is not None else set()
        if single is not None:
            if DEFAULT_KEY_ID in kids:
                raise ValueError(
                    f"cannot tell which key is {DEFAULT_KEY_ID!r}: ROLLOUT_BOT_AUDIT_HMAC_KEY "
                    f"has that id and ROLLOUT_BOT_AUDIT_HMAC_KEYS names it too"
                )
            kids.add(DEFAULT_KEY_ID)
        if value is None:
            if len(kids) > 1:
                raise ValueError(
                    "is required when several audit keys are configured (it names the key "
                    f"that signs new entries: one of {', '.join(sorted(kids))})"
                )
            return None
        value = value.strip()
        if value not in kids:
            raise ValueError(
                f"names key id {value!r}, which is not configured"
                + (f" (configured: {', '.join(sorted(kids))})" if kids else "")
            )
        return value

    def audit_keyring(self) -> AuditKeyring | None:
        """The audit trail's HMAC keys, or None when the trail is plain SHA-256."""
        keys: dict[str, bytes] = {}
        if self.audit_hmac_keys is not None:
            keys.update(_parse_keyring(self.audit_hmac_keys.get_secret_value()))
        if self.audit_hmac_key is not None:
            keys[DEFAULT_KEY_ID] = self.audit_hmac_key.get_secret_value().encode()
        if not keys:
            return None
        signing = self.audit_hmac_key_id or next(iter(keys))
        return AuditKeyring(keys, signing)

    # Seals approval requests, votes and tracked rollouts in Redis, so that whoever can write to
    # Redis still cannot make the bot run a change. Required once approvals are configured.
    state_key: SecretStr | None = Field(default=None, validation_alias="ROLLOUT_BOT_STATE_KEY")

    @field_validator("state_key", "audit_hmac_key", mode="after")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        stripped = value.get_secret_value().strip()
        if len(stripped.encode()) < MIN_KEY_BYTES:
            raise ValueError(
                f"must be at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)"
            )
        return SecretStr(stripped)

    # Socket Mode serves /healthz, /readyz and /metrics on this port (HTTP mode: on --port).
    health_port: int = Field(
        default=8080, ge=0, le=65535, validation_alias="ROLLOUT_BOT_HEALTH_PORT"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias="ROLLOUT_BOT_LOG_FORMAT"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", validation_alias="ROLLOUT_BOT_LOG_LEVEL"
    )
    # How often the policy file is checked for a new version (applied without a restart).
    policy_reload_seconds: float = Field(
        default=3.0, ge=0.5, le=300, validation_alias="ROLLOUT_BOT_POLICY_RELOAD_INTERVAL"
    )

    @field_validator("contexts", mode="after")
    @classmethod
    def _context_list(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            return None
        if len(set(names)) != len(names):
            raise ValueError("names a context more than once")
        return ",".join(names)

    def context_names(self) -> list[str]:
        """ROLLOUT_BOT_CONTEXTS as a list (empty: the current context only)."""
        return self.contexts.split(",") if self.contexts else []

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            return value.lower() if info.field_name == "log_format" else value.upper()
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _url_ends_with_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("slack_bot_token")
    @classmethod
    def _not_blank(cls, value: SecretStr) -> SecretStr:
        stripped = value.get_secret_value().strip()
        if not stripped:
            raise ValueError("must not be empty")
        return SecretStr(stripped)

    @field_validator("slack_signing_secret", "slack_app_token", mode="after")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """A secret file holding only a newline, or an empty variable, is no secret at all: it
        counts as unset, and the mode that needs it refuses to start (never a constant)."""
        if value is None:
            return None
        stripped = value.get_secret_value().strip()
        return SecretStr(stripped) if stripped else None


_VARIABLES = {
    name: str(field.validation_alias)
    for name, field in Settings.model_fields.items()
    if isinstance(field.validation_alias, str)
}


def _parse_keyring(text: str) -> dict[str, bytes]:
    """`kid1:secret1,kid2:secret2` as a dict. Errors name the entry by position or key id,
    never a secret."""
    keys: dict[str, bytes] = {}
    for position, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        kid, sep, secret = item.partition(":")
        kid, secret = kid.strip(), secret.strip()
        if not sep or not valid_key_id(kid):
            raise ValueError(
                f"entry {position} is not `key-id:secret` (a key id is 1-32 letters, digits, "
                "'.', '_' or '-')"
            )
        if kid in keys:
            raise ValueError(f"key id {kid!r} appears twice")
        if len(secret.encode()) < MIN_KEY_BYTES:
            raise ValueError(
                f"the key for id {kid!r} must be at least {MIN_KEY_BYTES} bytes "
                "(e.g. `openssl rand -hex 32`)"
            )
        keys[kid] = secret.encode()
    if not keys:
        raise ValueError("names no key")
    return keys


def load_settings(**overrides: object) -> Settings:
    """Reads the environment, then (for what it lacks) one file per setting in
    ROLLOUT_BOT_SECRETS_DIR, which is what a mounted Kubernetes Secret gives: a file named
    SLACK_BOT_TOKEN holding the token. Raises ConfigError naming each bad variable."""
    secrets_dir = os.environ.get("ROLLOUT_BOT_SECRETS_DIR")
    if secrets_dir and not os.path.isdir(secrets_dir):
        raise ConfigError("invalid configuration: ROLLOUT_BOT_SECRETS_DIR is not a directory")
    try:
        return Settings(_secrets_dir=secrets_dir or None, **overrides)  # type: ignore[call-arg,arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            # A default that is validated reports the field's name: show its variable.
            name = _VARIABLES.get(name, name)
            kind = "is required but not set" if error["type"] == "missing" else error["msg"]
            problems.append(f"{name.upper()} {kind}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
