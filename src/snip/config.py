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
        1.0, gt=0,
        description="Batch age: seconds a recorded click waits at most before its batch is written",
    )
    # -- click recording (issue 4) --
    track_clicks: bool = Field(True, description="Record every redirect as a click (analytics)")
    ip_tracking: Literal["off", "anonymized", "full"] = Field(
        "anonymized",
        description="Client address kept with a click: off, anonymized (IPv4 /24, IPv6 /48), full",
    )
    geoip_db: str | None = Field(
        None, description="Path of a MaxMind-format .mmdb (GeoLite2-Country): clicks get a country"
    )
    clicks_queue_size: int = Field(
        50_000, ge=1,
        description="Clicks held in memory per process before new ones are dropped (and counted)",
    )
    clicks_batch_size: int = Field(
        500, ge=1, le=1000, description="Clicks written per batch (one INSERT)"
    )
    clicks_counter_shards: int = Field(
        8, ge=1, le=256, description="Counter rows per link that writers spread visits over"
    )
    clicks_stream: str = Field(
        "clicks",
        description="Redis Stream (after SNIP_REDIS_PREFIX) clicks go to when SNIP_REDIS_URL is set",
    )
    clicks_claim_idle: float = Field(
        30.0, gt=0,
        description="Seconds a stream entry stays pending before another worker claims it",
    )
    clicks_embedded_worker: bool = Field(
        True,
        description="With Redis: every `snip serve` process also consumes the click stream "
        "(turn off when dedicated `snip worker` processes do)",
    )
    clicks_writer: Literal["process", "inline"] = Field(
        "process",
        description="Without Redis: `snip serve` classifies and writes clicks in one writer "
        "process beside its HTTP workers (process), or each worker does it itself (inline)",
    )
    clicks_writer_socket: str | None = Field(
        None, description="Set by `snip serve` for its workers: the click writer's Unix socket",
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
    # -- click stats and retention (issue 4) --
    click_retention_days: int = Field(
        90, ge=0, le=36500,
        description="Raw clicks older than this many days are rolled up per day and deleted "
        "(`snip clicks purge`, and on a schedule in `snip serve`); 0 keeps them forever",
    )
    click_purge_interval: float = Field(
        3600.0, ge=1,
        description="Seconds between scheduled purges of old clicks in each `snip serve` process",
    )
    # -- users and API keys (issue 5) --
    anonymous_create: bool = Field(
        True,
        description="Let requests without an API key create links (POST /shorten, the home page "
        "form, POST /api/v1/links); turn off for public deployments",
    )
    initial_api_key: str | None = Field(
        None, repr=False,
        description="The first admin's API key, used instead of a random one when `snip serve` "
        "starts on a database without users (at least 32 characters)",
    )
    auth_cache_ttl: float = Field(
        5.0, ge=0, le=300,
        description="Seconds a process trusts an API key it has checked: a revoked key stops "
        "working in other processes within this time (0: check every request)",
    )

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxies (addresses or networks, JSON list or comma-separated) whose "
        "X-Forwarded-For/Forwarded headers name the client; empty: the socket peer is the client",
    )

    # -- abuse: the domain blocklist and URL checkers (issue 5)
    blocklist: str = Field(
        "", description="Domains to block, comma-separated; each blocks its subdomains too "
        "(applied to existing links at start)",
    )
    blocklist_file: str | None = Field(
        None, description="A file of domains to block, one per line, `#` comments "
        "(read at start, like SNIP_BLOCKLIST)",
    )
    blocklist_refresh: float = Field(
        2.0, ge=0, le=3600,
        description="Seconds between checks for blocklist changes made by other processes "
        "(0: never)",
    )
    url_checkers: str = Field(
        "", description="More URL checkers, comma-separated `package.module:factory`; each "
        "factory gets the settings and returns a checker",
    )
    url_check_timeout: float = Field(
        2.0, gt=0, le=60,
        description="Seconds a URL checker may take, unless it sets its own `timeout`",
    )

    # -- rate limits (N/second|minute|hour|day, e.g. 60/minute or 100/15minutes; "off" or 0)
    rate_limit_create: str = Field(
        "60/minute", description="Links one API key may create (a bulk of N links counts N)"
    )
    rate_limit_anonymous_create: str = Field(
        "10/minute", description="Links created without an API key, per client address"
    )
    rate_limit_not_found: str = Field(
        "60/minute",
        description="Requests for unknown codes per client address (against enumeration)",
    )
    rate_limit_password: str = Field(
        "5/minute", description="Password attempts on protected links, per client address"
    )
    rate_limit_password_link: str = Field(
        "30/minute", description="Password attempts on one protected link, from all addresses"
    )
    rate_limit_reports: str = Field("20/hour", description="Abuse reports per client address")
    rate_limit_max_keys: int = Field(
        100_000, ge=1,
        description="Clients each in-process limit remembers (the least recently seen are "
        "forgotten first; bounds memory)",
    )

    @field_validator("rate_limit_create", "rate_limit_anonymous_create", "rate_limit_not_found",
                     "rate_limit_password", "rate_limit_password_link", "rate_limit_reports")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        from snip.service_layer.limits import parse_rate

        parse_rate(value)  # raises ValueError with the accepted forms
        return value

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
