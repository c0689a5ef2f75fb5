"""Settings: every knob snip has, read from SNIP_* environment variables by pydantic-settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from snip.domain.codes import MAX_CODE_LENGTH, MAX_CUSTOM_CODE_LENGTH, MIN_CODE_LENGTH
from snip.domain.urls import MAX_URL_BYTES, origin_of


class Settings(BaseSettings):
    """Read once, in `snip.bootstrap`; never at import time. The README lists every field."""

    model_config = SettingsConfigDict(env_prefix="SNIP_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./snip.db",
        description="Where links live: sqlite:///PATH (default, embedded) or postgresql://…",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="The public origin short links are built on, e.g. https://s.example.com",
    )
    code_length: int = Field(7, ge=MIN_CODE_LENGTH, le=MAX_CODE_LENGTH,
                             description="Length of random codes")
    custom_code_max_length: int = Field(MAX_CUSTOM_CODE_LENGTH, ge=1, le=MAX_CUSTOM_CODE_LENGTH,
                                        description="Longest custom code accepted")
    default_redirect_status: Literal[301, 302, 307, 308] = Field(
        302, description="Redirect status for links created without one"
    )
    reuse_default: bool = Field(
        False, description="Give the same URL the same link when a request does not say `reuse`"
    )
    max_url_bytes: int = Field(MAX_URL_BYTES, ge=100, le=MAX_URL_BYTES,
                               description="Longest destination URL accepted, in bytes")
    permanent_redirect_max_age: int = Field(
        300, ge=0, le=86400,
        description="Cache-Control max-age (seconds) sent with 301/308, so edits still reach browsers",
    )
    cache_size: int = Field(100_000, ge=0, description="Redirect cache entries per process (0: off)")
    cache_ttl: float = Field(60.0, gt=0, description="Seconds a cached link is trusted")
    negative_cache_ttl: float = Field(5.0, gt=0, description="Seconds an unknown code is remembered")
    visit_flush_interval: float = Field(
        1.0, gt=0, description="Seconds between batched writes of visit counts"
    )
    auto_migrate: bool = Field(True, description="Apply database migrations on start")
    db_pool_size: int = Field(10, ge=1, le=1000, description="Database connections per process")
    db_connect_timeout: float = Field(
        2.0, gt=0, description="Seconds to wait for a database connection before answering 503"
    )
    db_statement_timeout: float = Field(
        5.0, gt=0, description="Seconds a database statement may take before it is abandoned (503)"
    )
    db_pool_timeout: float = Field(
        10.0, gt=0, description="Seconds a request waits for a free database connection (then 503)"
    )
    redis_url: str | None = Field(
        None,
        description="Redis for the shared cache and cross-process invalidation, e.g. "
        "redis://127.0.0.1:6379/0 (unset: in-process cache only)",
    )
    redis_prefix: str = Field(
        "snip:", description="Prefix of snip's Redis keys and channels (share a Redis safely)"
    )
    redis_cache_ttl: float = Field(
        300.0, gt=0, description="Seconds a link stays in the shared Redis cache"
    )
    redis_timeout: float = Field(
        0.25, gt=0, description="Seconds to wait for Redis before falling back to the database"
    )
    host: str = Field("127.0.0.1", description="Address `snip serve` binds to")
    port: int = Field(8000, ge=0, le=65535, description="Port `snip serve` listens on")
    workers: int = Field(1, ge=1, description="Processes `snip serve` starts")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log lines as JSON, or readable; auto: readable on a terminal"
    )
    access_log: bool = Field(False, description="Log one line per request")
    metrics_enabled: bool = Field(True, description="Record and serve Prometheus metrics")
    metrics_token: str | None = Field(
        None, description="If set, /metrics requires `Authorization: Bearer <token>`"
    )
    metrics_dir: str | None = Field(
        None,
        description="Directory where worker processes share metrics; `snip serve` makes one",
    )

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxies (addresses or networks, JSON list or comma-separated) whose "
        "X-Forwarded-For/Forwarded headers name the client; empty: the socket peer is the client",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [v for v in value.split(",") if v.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        from snip.entrypoints.clients import parse_networks

        parse_networks(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str) -> str:
        origin_of(value)  # raises ValueError with a clear message
        return value.rstrip("/")
