"""Every setting, typed, read once from the environment, with defaults and units."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .core.secretbox import SecretBox

#: The domain families, then the operational ones hookstream publishes itself
#: (streams.core.operational): a deployment that lists families without `webhook` and
#: `delivery` has no topics for them, and its operational events are not published.
DEFAULT_FAMILIES = ("task", "project", "comment", "user", "webhook", "delivery")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


#: The highest rate limit a webhook (or the deployment's default) may have, in deliveries
#: per second: beyond it a limit limits nothing one worker could do anyway.
MAX_RATE_LIMIT = 10_000
#: A stage's fetch wait stays well under librdkafka's socket timeout (60 s), which it must
#: undercut by a second or more, and 10 s is already a long wait for a delivery.
MAX_FETCH_WAIT_MS = 10_000


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1,
         maximum: int = 2**31 - 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    """A whole number >= 1, or None when unset (decided elsewhere)."""
    return _int(env, name, 1) if env.get(name, "").strip() else None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first by default), case-insensitive."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _auto_bool(env: Mapping[str, str], name: str) -> bool | None:
    """1/0 as _bool; unset or `auto` is None (decided per request)."""
    if env.get(name, "").strip().lower() in ("", "auto"):
        return None
    return _bool(env, name)


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    networks = []
    for item in raw.split(","):
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name} must list addresses or CIDRs, got {item.strip()!r}") from None
    return tuple(networks)


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise SettingsError(f"{name} must list at least one item")
    return items


#: What Kafka allows in a topic name; a family is one dot-free part of `domain.<family>` and
#: of its event types (`<family>.<action>`).
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_FAMILY = re.compile(r"[A-Za-z0-9_-]+")
#: Room left for our longest topic name under Kafka's 249 characters.
MAX_TOPIC_PREFIX = 200
#: Python's level names, `info` (the default) first.
LOG_LEVELS = ("info", *(name.lower() for name in logging.getLevelNamesMapping()
                        if name != "INFO"))


#: Bind addresses that mean every interface (no other worker can reach us there), and the
#: loopback address of each, where this machine reaches a worker bound to it.
LOOPBACK_OF_EVERY_INTERFACE = {"0.0.0.0": "127.0.0.1", "::": "::1"}
#: Labels of letters, digits, '-' and '_' (Docker's container names have them); the last
#: one not all digits, which getaddrinfo would read as a short IPv4 form (`999`, `1.2.3`).
_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                       r"(?![0-9]+\.?$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?")


def _host(env: Mapping[str, str], name: str) -> str | None:
    """An IP address or a host name (None if unset)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(raw):
        raise SettingsError(f"{name} must be an IP address or a host name, got {raw[:80]!r}")
    return raw


def _topic_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("HOOKSTREAM_TOPIC_PREFIX", "").strip()
    if len(raw) > MAX_TOPIC_PREFIX or not _TOPIC_CHARS.fullmatch(raw):
        raise SettingsError("HOOKSTREAM_TOPIC_PREFIX must be at most "
                            f"{MAX_TOPIC_PREFIX} of A-Z a-z 0-9 . _ -, got {raw[:80]!r}")
    return raw


def _families(env: Mapping[str, str]) -> tuple[str, ...]:
    families = _list(env, "HOOKSTREAM_EVENT_FAMILIES", DEFAULT_FAMILIES)
    for family in families:
        if len(family) > 100 or not _FAMILY.fullmatch(family):
            raise SettingsError("HOOKSTREAM_EVENT_FAMILIES must list names of A-Z a-z 0-9 _ -"
                                f" (they name topics and event types), got {family[:80]!r}")
    return families


def _proxy_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("HOOKSTREAM_EGRESS_PROXY", "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a port that is none
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        # Not quoted back: the URL may carry the proxy's password.
        raise SettingsError("HOOKSTREAM_EGRESS_PROXY must be an http(s)://[user:password@]"
                            "host[:port] URL")
    return raw


def _delays(env: Mapping[str, str]) -> tuple[float, ...]:
    raw = env.get("HOOKSTREAM_RETRY_DELAYS", "").strip()
    if not raw:
        return (60.0, 300.0, 1800.0)
    try:
        delays = tuple(float(x) for x in raw.split(","))
    except ValueError:
        raise SettingsError(
            f"HOOKSTREAM_RETRY_DELAYS must be three numbers of seconds, got {raw!r}"
        ) from None
    # Three retry topics (1m, 5m, 30m) exist; the delays compress, the topics stay.
    if len(delays) != 3 or not all(math.isfinite(d) and d >= 0 for d in delays):
        raise SettingsError(
            f"HOOKSTREAM_RETRY_DELAYS must be three non-negative numbers, got {raw!r}"
        )
    return delays


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    home: Path = Path(".hookstream")
    #: The address the web server binds to (HOOKSTREAM_WEB_HOST).
    web_host: str = "127.0.0.1"
    #: The host other workers reach this one's web server at (the API forwards a history
    #: read to the worker that holds it): HOOKSTREAM_WEB_ADVERTISED_HOST, else the bind
    #: address, else (bound to every interface) this machine's name.
    web_advertised_host: str = "127.0.0.1"
    web_port: int = 6066
    #: Seconds for one delivery attempt, connect to last byte.
    delivery_timeout: float = 10.0
    allow_insecure_targets: bool = False
    families: tuple[str, ...] = DEFAULT_FAMILIES
    #: Attempts in flight per worker; each holds one HTTP connection.
    delivery_concurrency: int = 200
    #: Requests awaiting their answer per webhook (the answer frees the slot, before the
    #: outcome is logged), so one slow endpoint cannot take every slot.
    per_webhook_concurrency: int = 16
    #: Attempts in flight per workspace (default: half of delivery_concurrency), so one
    #: tenant's flood or hanging endpoints always leave slots for the others.
    per_workspace_concurrency: int = 100
    #: Webhooks one workspace may have; creating one more is refused (409).
    max_webhooks_per_workspace: int = 100
    #: Dead letters of one workspace that /v1/dead-letters lists (the newest); older ones
    #: stay on the topic for `hookstream dlq`. About half a kilobyte each, on every worker.
    dead_letters_listed: int = 10_000
    #: A webhook whose next job would wait longer than this for a slot has its jobs parked
    #: on the first retry topic instead of queued in memory (streams.delivery.pressure).
    defer_after: float = 30.0
    #: Deliveries per second per webhook for webhooks without a rate limit of their own
    #: (streams.delivery.ratelimit); 0: none (the per-webhook concurrency still bounds).
    default_rate_limit: int = 0
    retry_delays: tuple[float, ...] = (60.0, 300.0, 1800.0)
    #: Consecutive failed attempts (of domain events; no success between) at which a
    #: webhook is disabled; `webhook.failing` is published at 50% and 90% of it
    #: (streams.delivery.failing). 0: not counted. Outpost alerts and disables at 20; ours
    #: is higher because one delivery's four failed attempts already disable a webhook (the
    #: dead-letter rule), so this limit only ever decides for busy endpoints, where 20
    #: attempts can be a second's hiccup.
    failure_limit: int = 100
    #: Outcomes per deliveries partition the duplicate guard remembers (the newest; about
    #: 100 bytes each): a crash's re-read jobs whose outcome is among them are not sent
    #: again (streams.delivery.guard). 0 turns the guard off.
    duplicate_guard_size: int = 50_000
    #: Milliseconds the broker may hold a stage's fetch that finds nothing (librdkafka's
    #: fetch.wait.max.ms; at most MAX_FETCH_WAIT_MS): the longest a record can wait for
    #: the next fetch, and on an idle worker, 1000/this fetches a second per stage and
    #: broker.
    fetch_wait_ms: int = 50
    #: Partitions for topics we create. Workers beyond this count sit idle.
    partitions: int = 6
    #: Copies of each partition of the topics we create, and how many must hold a record
    #: before an acks=all produce succeeds. None: from the cluster's size
    #: (streams.kafka.topics.replication_for: 3 and 2 on 3+ brokers, 1 and 1 on one).
    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    log_level: str = "info"
    #: `json` (one object a line, with delivery/webhook/event ids) or `text`.
    log_format: str = "json"
    #: Seconds between samples of lag, backlog and throughput (metrics, console charts).
    sample_interval: float = 10.0
    #: Seconds the old secret keeps signing after a rotation.
    rotation_grace: float = 24 * 3600.0
    #: http(s)://host:port every delivery leaves through, so receivers can allowlist it.
    egress_proxy: str | None = None
    #: Console cookies get `Secure`: True, False, or None for "when the request came over
    #: https" (directly, or per X-Forwarded-Proto from a trusted proxy).
    console_secure_cookies: bool | None = None
    #: Addresses (CIDRs) of reverse proxies whose X-Forwarded-For/-Proto are believed.
    trusted_proxies: tuple[str, ...] = ()
    # Secrets: kept out of repr so a logged Settings never shows them.
    master_key: str | None = field(default=None, repr=False)
    admin_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        concurrency = _int(env, "HOOKSTREAM_DELIVERY_CONCURRENCY", 200)
        replicas = _optional_int(env, "HOOKSTREAM_REPLICATION_FACTOR")
        min_insync = _optional_int(env, "HOOKSTREAM_MIN_INSYNC_REPLICAS")
        if replicas is not None and min_insync is not None and min_insync > replicas:
            raise SettingsError(f"HOOKSTREAM_MIN_INSYNC_REPLICAS={min_insync} is more than "
                                f"HOOKSTREAM_REPLICATION_FACTOR={replicas}")
        bind = _host(env, "HOOKSTREAM_WEB_HOST") or "127.0.0.1"
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or "127.0.0.1:9092",
            topic_prefix=_topic_prefix(env),
            home=Path(env.get("HOOKSTREAM_HOME", "").strip() or ".hookstream"),
            web_host=bind,
            web_advertised_host=(_host(env, "HOOKSTREAM_WEB_ADVERTISED_HOST")
                                 or (socket.gethostname() if bind in LOOPBACK_OF_EVERY_INTERFACE
                                     else bind)),
            web_port=_int(env, "HOOKSTREAM_WEB_PORT", 6066, maximum=65535),
            delivery_timeout=_float(env, "HOOKSTREAM_DELIVERY_TIMEOUT", 10.0),
            allow_insecure_targets=_bool(env, "HOOKSTREAM_ALLOW_INSECURE_TARGETS"),
            families=_families(env),
            delivery_concurrency=concurrency,
            per_workspace_concurrency=_int(env, "HOOKSTREAM_PER_WORKSPACE_CONCURRENCY",
                                           max(1, concurrency // 2)),
            max_webhooks_per_workspace=_int(env, "HOOKSTREAM_MAX_WEBHOOKS_PER_WORKSPACE", 100),
            dead_letters_listed=_int(env, "HOOKSTREAM_DEAD_LETTERS_LISTED", 10_000),
            per_webhook_concurrency=_int(env, "HOOKSTREAM_PER_WEBHOOK_CONCURRENCY", 16),
            defer_after=_float(env, "HOOKSTREAM_DEFER_AFTER", 30.0),
            default_rate_limit=_int(env, "HOOKSTREAM_DEFAULT_RATE_LIMIT", 0, minimum=0,
                                    maximum=MAX_RATE_LIMIT),
            retry_delays=_delays(env),
            failure_limit=_int(env, "HOOKSTREAM_FAILURE_LIMIT", 100, minimum=0,
                               maximum=1_000_000),
            duplicate_guard_size=_int(env, "HOOKSTREAM_DUPLICATE_GUARD_SIZE", 50_000,
                                      minimum=0),
            fetch_wait_ms=_int(env, "HOOKSTREAM_FETCH_WAIT_MS", 50, maximum=MAX_FETCH_WAIT_MS),
            partitions=_int(env, "HOOKSTREAM_PARTITIONS", 6),
            replication_factor=replicas,
            min_insync_replicas=min_insync,
            log_level=_choice(env, "HOOKSTREAM_LOG_LEVEL", LOG_LEVELS),
            log_format=_choice(env, "HOOKSTREAM_LOG_FORMAT", ("json", "text")),
            sample_interval=_float(env, "HOOKSTREAM_SAMPLE_INTERVAL", 10.0),
            rotation_grace=_float(env, "HOOKSTREAM_ROTATION_GRACE", 24 * 3600.0),
            egress_proxy=_proxy_url(env),
            console_secure_cookies=_auto_bool(env, "HOOKSTREAM_CONSOLE_SECURE_COOKIES"),
            trusted_proxies=_networks(env, "HOOKSTREAM_TRUSTED_PROXIES"),
            master_key=env.get("HOOKSTREAM_MASTER_KEY", "").strip() or None,
            admin_key=env.get("HOOKSTREAM_ADMIN_KEY", "").strip() or None,
        )

    def secret_box(self) -> SecretBox:
        return SecretBox.from_env(self.master_key, self.home)

    def local_api_url(self) -> str:
        """Where this machine reaches a worker's API (the console calls its own, the CLI
        its default): the bind address, or loopback when bound to every interface."""
        host = LOOPBACK_OF_EVERY_INTERFACE.get(self.web_host, self.web_host)
        return f"http://{url_host(host)}:{self.web_port}"

    def topic(self, name: str) -> str:
        """The real name of one of our topics, with the deployment's prefix."""
        return f"{self.topic_prefix}{name}"


def url_host(host: str) -> str:
    """`host` as the host part of a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host
