"""One typed settings object, read from `CLOUDSYNC_*` environment variables and an optional TOML file.

Every field is documented where it is declared; a malformed value raises `ConfigError` naming the
environment variable. Secrets (passwords in URLs, the signing key) are never printed: `describe()`
masks them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from cloudsync.dsn import mask_dsn
from cloudsync.errors import ConfigError

ENV_PREFIX = "CLOUDSYNC_"


def _doc(text: str, secret: bool = False) -> dict[str, Any]:
    return {"doc": text, "secret": secret}


@dataclass(frozen=True)
class Settings:
    home: str = field(default=".cloudsync", metadata=_doc("Folder for embedded state: SQLite files, Redis, logs."))
    redis_url: str = field(
        default="", metadata=_doc("Redis URL for broker, leases and rate limits; empty: embedded Redis.", True)
    )
    control_url: str = field(
        default="", metadata=_doc("Control database URL; empty means SQLite at HOME/control.db.", True)
    )
    cloud_url: str = field(default="", metadata=_doc("Cloud (target) database URL; empty means HOME/cloud.db.", True))
    chunk_rows: int = field(default=50000, metadata=_doc("Rows per full-resync chunk (planned by key ranges)."))
    read_batch_rows: int = field(default=5000, metadata=_doc("Rows fetched from the source per round trip."))
    visibility_timeout_s: int = field(
        default=3600, metadata=_doc("Redis visibility timeout: an unacked message is redelivered after this.")
    )
    chunk_lease_s: int = field(default=60, metadata=_doc("A chunk's lease; renewed while the chunk makes progress."))
    max_deliveries: int = field(default=5, metadata=_doc("Deliveries of one chunk before it is failed for good."))
    retry_max: int = field(default=12, metadata=_doc("Retries of a chunk after transient errors."))
    retry_countdown_max_s: int = field(default=60, metadata=_doc("Ceiling of the exponential retry backoff."))
    worker_concurrency: int = field(default=2, metadata=_doc("Worker processes started by `cloudsync worker`."))
    log_level: str = field(default="INFO", metadata=_doc("Python log level name."))
    secret_key: str = field(default="", metadata=_doc("Key that signs job grants; generated in HOME if empty.", True))
    flower_user: str = field(default="", metadata=_doc("Flower basic-auth user."))
    flower_password: str = field(default="", metadata=_doc("Flower basic-auth password.", True))
    flower_port: int = field(default=5555, metadata=_doc("Flower HTTP port."))
    stale_after_s: int = field(default=3600, metadata=_doc("A venue with no successful sync for this long is stale."))
    min_pos_version: str = field(default="10.37", metadata=_doc("POS versions below this are flagged for update."))
    dispatch_interval_ms: int = field(
        default=1000, metadata=_doc("How often beat's dispatcher looks for venues due an incremental sync.")
    )
    reindex_check_ms: int = field(
        default=1000, metadata=_doc("A venue database found free of index maintenance is not asked again for "
                                    "this long: one look serves every chunk of the venue on every worker "
                                    "(0: each chunk asks).")
    )

    def __post_init__(self) -> None:
        for name, minimum in (("chunk_rows", 1), ("read_batch_rows", 1), ("worker_concurrency", 1),
                              ("max_deliveries", 1), ("chunk_lease_s", 5), ("visibility_timeout_s", 60),
                              ("dispatch_interval_ms", 50), ("reindex_check_ms", 0)):
            if getattr(self, name) < minimum:
                raise ConfigError(env_name(name), f"must be at least {minimum}, got {getattr(self, name)}")
        if self.retry_countdown_max_s * 2 >= self.visibility_timeout_s:
            raise ConfigError(env_name("visibility_timeout_s"), "must exceed twice CLOUDSYNC_RETRY_COUNTDOWN_MAX_S")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(env_name("log_level"), f"unknown level {self.log_level!r}")

    @property
    def home_path(self) -> Path:
        return Path(self.home).resolve()

    @property
    def control_dsn(self) -> str:
        return self.control_url or f"sqlite:///{self.home_path / 'control.db'}"

    @property
    def cloud_dsn(self) -> str:
        return self.cloud_url or f"sqlite:///{self.home_path / 'cloud.db'}"

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    def describe(self) -> dict[str, object]:
        """The settings with secrets masked: safe to print or log."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = mask_dsn(value) if "://" in str(value) else "***"
            out[f.name] = value
        return out


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _coerce(name: str, kind: type, raw: object) -> object:
    if kind is int:
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ConfigError(env_name(name), f"expected a whole number, got {raw!r}") from None
    if kind is bool:
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(env_name(name), f"expected true or false, got {raw!r}")
    return str(raw)


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from the optional TOML file, then the environment, then explicit overrides."""
    env = dict(os.environ if environ is None else environ)
    hints = get_type_hints(Settings)
    values: dict[str, object] = {}
    config_file = env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(ENV_PREFIX + "CONFIG", f"cannot read {config_file}: {err}") from err
        for key, raw in data.items():
            if key not in hints:
                raise ConfigError(ENV_PREFIX + "CONFIG", f"unknown setting {key!r} in {config_file}")
            values[key] = _coerce(key, hints[key], raw)
    known = {env_name(f.name) for f in dataclasses.fields(Settings)} | {ENV_PREFIX + "CONFIG"}
    for f in dataclasses.fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is not None:
            values[f.name] = _coerce(f.name, hints[f.name], raw)
    for key, raw in overrides.items():
        values[key] = _coerce(key, hints[key], raw)
    ignored = {"CLOUDSYNC_STAFF", "CLOUDSYNC_PIN", "CLOUDSYNC_TEST_MSSQL_URL", "CLOUDSYNC_REQUIRE_SERVICES"}
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known and k not in ignored
                     and not k.startswith(ENV_PREFIX + "TEST_"))
    if unknown:
        raise ConfigError(unknown[0], "unknown setting (see `cloudsync config`)")
    return Settings(**values)  # type: ignore[arg-type]
