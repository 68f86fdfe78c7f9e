"""streams.settings: typed settings from an explicit environment mapping."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.asyncconsumer import AsyncConsumer
from streams.pipeline.clients import kafka_consumer
from streams.settings import DEFAULT_FAMILIES, Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.topic_prefix == ""
    assert s.home == Path(".hookstream")
    assert s.web_host == "127.0.0.1"
    assert s.web_port == 6066
    assert s.delivery_timeout == 10.0
    assert s.allow_insecure_targets is False
    assert s.families == DEFAULT_FAMILIES == (
        "task", "project", "comment", "user", "webhook", "delivery")
    assert s.failure_limit == 100
    assert s.delivery_concurrency == 200
    assert s.per_webhook_concurrency == 16
    assert s.defer_after == 30.0
    assert s.retry_delays == (60.0, 300.0, 1800.0)
    assert s.partitions == 6
    assert s.replication_factor is None and s.min_insync_replicas is None  # the cluster's
    assert s.log_level == "info"


def test_blank_values_mean_default() -> None:
    env = {name: "  " for name in (
        "KAFKA_BOOTSTRAP_SERVERS", "HOOKSTREAM_TOPIC_PREFIX", "HOOKSTREAM_HOME",
        "HOOKSTREAM_WEB_HOST", "HOOKSTREAM_WEB_PORT", "HOOKSTREAM_DELIVERY_TIMEOUT",
        "HOOKSTREAM_ALLOW_INSECURE_TARGETS", "HOOKSTREAM_EVENT_FAMILIES",
        "HOOKSTREAM_DELIVERY_CONCURRENCY", "HOOKSTREAM_PER_WEBHOOK_CONCURRENCY",
        "HOOKSTREAM_RETRY_DELAYS", "HOOKSTREAM_PARTITIONS", "HOOKSTREAM_REPLICATION_FACTOR",
        "HOOKSTREAM_LOG_LEVEL", "HOOKSTREAM_FAILURE_LIMIT", "HOOKSTREAM_FETCH_WAIT_MS")}
    assert Settings.from_env(env) == Settings()


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", " kafka:9092,kafka2:9092 ", "bootstrap_servers",
         "kafka:9092,kafka2:9092"),
        ("HOOKSTREAM_TOPIC_PREFIX", "test-abc.", "topic_prefix", "test-abc."),
        ("HOOKSTREAM_HOME", "/var/lib/hookstream", "home", Path("/var/lib/hookstream")),
        ("HOOKSTREAM_WEB_HOST", "0.0.0.0", "web_host", "0.0.0.0"),
        ("HOOKSTREAM_WEB_PORT", "8080", "web_port", 8080),
        ("HOOKSTREAM_WEB_PORT", " 9000 ", "web_port", 9000),
        ("HOOKSTREAM_DELIVERY_TIMEOUT", "2.5", "delivery_timeout", 2.5),
        ("HOOKSTREAM_DELIVERY_TIMEOUT", "30", "delivery_timeout", 30.0),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "1", "allow_insecure_targets", True),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "TRUE", "allow_insecure_targets", True),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "yes", "allow_insecure_targets", True),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "on", "allow_insecure_targets", True),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "0", "allow_insecure_targets", False),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "false", "allow_insecure_targets", False),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "No", "allow_insecure_targets", False),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "off", "allow_insecure_targets", False),
        ("HOOKSTREAM_EVENT_FAMILIES", "task, user ,,", "families", ("task", "user")),
        ("HOOKSTREAM_DELIVERY_CONCURRENCY", "50", "delivery_concurrency", 50),
        ("HOOKSTREAM_PER_WEBHOOK_CONCURRENCY", "1", "per_webhook_concurrency", 1),
        ("HOOKSTREAM_DEFER_AFTER", " 2.5 ", "defer_after", 2.5),
        ("HOOKSTREAM_RETRY_DELAYS", "1,2,3", "retry_delays", (1.0, 2.0, 3.0)),
        ("HOOKSTREAM_RETRY_DELAYS", " 0.5, 0 ,10 ", "retry_delays", (0.5, 0.0, 10.0)),
        ("HOOKSTREAM_PARTITIONS", "12", "partitions", 12),
        ("HOOKSTREAM_FETCH_WAIT_MS", "500", "fetch_wait_ms", 500),
        ("HOOKSTREAM_FETCH_WAIT_MS", " 1 ", "fetch_wait_ms", 1),
        ("HOOKSTREAM_FETCH_WAIT_MS", "10000", "fetch_wait_ms", 10_000),
        ("HOOKSTREAM_REPLICATION_FACTOR", "3", "replication_factor", 3),
        ("HOOKSTREAM_MIN_INSYNC_REPLICAS", " 2 ", "min_insync_replicas", 2),
        ("HOOKSTREAM_LOG_LEVEL", " DEBUG ", "log_level", "debug"),
        ("HOOKSTREAM_PER_WORKSPACE_CONCURRENCY", "7", "per_workspace_concurrency", 7),
        ("HOOKSTREAM_MAX_WEBHOOKS_PER_WORKSPACE", "3", "max_webhooks_per_workspace", 3),
        ("HOOKSTREAM_FAILURE_LIMIT", "20", "failure_limit", 20),
        ("HOOKSTREAM_FAILURE_LIMIT", "0", "failure_limit", 0),
        ("HOOKSTREAM_CONSOLE_SECURE_COOKIES", "1", "console_secure_cookies", True),
        ("HOOKSTREAM_CONSOLE_SECURE_COOKIES", "0", "console_secure_cookies", False),
        ("HOOKSTREAM_CONSOLE_SECURE_COOKIES", "auto", "console_secure_cookies", None),
        ("HOOKSTREAM_TRUSTED_PROXIES", "10.0.0.7, 192.168.0.0/16", "trusted_proxies",
         ("10.0.0.7/32", "192.168.0.0/16")),
    ],
)
def test_each_variable(name: str, raw: str, attribute: str, value: Any) -> None:
    s = Settings.from_env({name: raw})
    assert getattr(s, attribute) == value
    # Nothing else moves, but what is derived from it.
    derived = {"delivery_concurrency": {"per_workspace_concurrency"},
               "web_host": {"web_advertised_host"}}.get(attribute, set())
    defaults = Settings()
    for other in defaults.__dataclass_fields__:
        if other != attribute and other not in derived:
            assert getattr(s, other) == getattr(defaults, other), other


def test_a_workspace_gets_half_of_the_workers_attempts_unless_set() -> None:
    assert Settings.from_env({"HOOKSTREAM_DELIVERY_CONCURRENCY": "50"}
                             ).per_workspace_concurrency == 25
    assert Settings.from_env({"HOOKSTREAM_DELIVERY_CONCURRENCY": "1"}
                             ).per_workspace_concurrency == 1
    assert Settings.from_env({"HOOKSTREAM_DELIVERY_CONCURRENCY": "50",
                              "HOOKSTREAM_PER_WORKSPACE_CONCURRENCY": "50"}
                             ).per_workspace_concurrency == 50


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("HOOKSTREAM_WEB_PORT", "abc"),
        ("HOOKSTREAM_CONSOLE_SECURE_COOKIES", "sometimes"),
        ("HOOKSTREAM_TRUSTED_PROXIES", "10.0.0.300"),
        ("HOOKSTREAM_TRUSTED_PROXIES", "proxy.internal"),
        ("HOOKSTREAM_MAX_WEBHOOKS_PER_WORKSPACE", "0"),
        ("HOOKSTREAM_WEB_PORT", "0"),
        ("HOOKSTREAM_WEB_PORT", "80.5"),
        ("HOOKSTREAM_DELIVERY_TIMEOUT", "-1"),
        ("HOOKSTREAM_DELIVERY_TIMEOUT", "0"),
        ("HOOKSTREAM_DELIVERY_TIMEOUT", "ten"),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "maybe"),
        ("HOOKSTREAM_ALLOW_INSECURE_TARGETS", "2"),
        ("HOOKSTREAM_RETRY_DELAYS", "1,2"),
        ("HOOKSTREAM_RETRY_DELAYS", "1,2,3,4"),
        ("HOOKSTREAM_RETRY_DELAYS", "1,-2,3"),
        ("HOOKSTREAM_RETRY_DELAYS", "1,x,3"),
        ("HOOKSTREAM_RETRY_DELAYS", "1,,3"),
        ("HOOKSTREAM_EVENT_FAMILIES", ", ,"),
        ("HOOKSTREAM_DELIVERY_CONCURRENCY", "0"),
        ("HOOKSTREAM_PER_WEBHOOK_CONCURRENCY", "-3"),
        ("HOOKSTREAM_DEFER_AFTER", "0"),
        ("HOOKSTREAM_DEFER_AFTER", "soon"),
        ("HOOKSTREAM_PARTITIONS", "six"),
        # 0 would have the broker answer every empty fetch at once: a stage spinning.
        ("HOOKSTREAM_FETCH_WAIT_MS", "0"),
        # Past librdkafka's socket timeout less a second: its fetches would time out.
        ("HOOKSTREAM_FETCH_WAIT_MS", "59001"),
        ("HOOKSTREAM_FETCH_WAIT_MS", "10001"),
        ("HOOKSTREAM_FETCH_WAIT_MS", "50ms"),
        ("HOOKSTREAM_REPLICATION_FACTOR", "0"),
        ("HOOKSTREAM_REPLICATION_FACTOR", "three"),
        ("HOOKSTREAM_MIN_INSYNC_REPLICAS", "0"),
        ("HOOKSTREAM_MIN_INSYNC_REPLICAS", "-1"),
        ("HOOKSTREAM_MIN_INSYNC_REPLICAS", "2.5"),
        ("HOOKSTREAM_FAILURE_LIMIT", "-1"),
        ("HOOKSTREAM_FAILURE_LIMIT", "twenty"),
        # Each of these started a worker that failed later, or not at all, without naming it.
        ("HOOKSTREAM_LOG_LEVEL", "garbage"),
        ("HOOKSTREAM_EGRESS_PROXY", "garbage"),
        ("HOOKSTREAM_EGRESS_PROXY", "socks5://proxy:1080"),
        ("HOOKSTREAM_EGRESS_PROXY", "http://proxy:99999"),
        ("HOOKSTREAM_EGRESS_PROXY", "http://:8080"),
        ("HOOKSTREAM_TOPIC_PREFIX", "bad prefix/"),
        ("HOOKSTREAM_TOPIC_PREFIX", "é."),
        ("HOOKSTREAM_TOPIC_PREFIX", "p" * 201),
        ("HOOKSTREAM_EVENT_FAMILIES", "task,bogus fam"),
        ("HOOKSTREAM_EVENT_FAMILIES", "task,a.b"),
        ("HOOKSTREAM_WEB_HOST", "garbage host"),  # the API never listened, and nothing said
        ("HOOKSTREAM_WEB_HOST", "http://0.0.0.0"),
        ("HOOKSTREAM_WEB_ADVERTISED_HOST", "10.0.0.256"),  # getaddrinfo would read these
        ("HOOKSTREAM_WEB_ADVERTISED_HOST", "999"),  # as short IPv4 forms (0.0.3.231)
        ("HOOKSTREAM_WEB_HOST", "1.2.3"),
    ],
)
def test_bad_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: raw})
    assert name in str(info.value)


@pytest.mark.parametrize(("env", "bind", "advertised"), [
    ({}, "127.0.0.1", "127.0.0.1"),
    ({"HOOKSTREAM_WEB_HOST": "10.1.2.3"}, "10.1.2.3", "10.1.2.3"),
    ({"HOOKSTREAM_WEB_HOST": "0.0.0.0"}, "0.0.0.0", socket.gethostname()),
    ({"HOOKSTREAM_WEB_HOST": "::"}, "::", socket.gethostname()),
    ({"HOOKSTREAM_WEB_HOST": "0.0.0.0", "HOOKSTREAM_WEB_ADVERTISED_HOST": "10.0.0.7"},
     "0.0.0.0", "10.0.0.7"),
    ({"HOOKSTREAM_WEB_ADVERTISED_HOST": "worker-1.hookstream.svc"}, "127.0.0.1",
     "worker-1.hookstream.svc"),
    ({"HOOKSTREAM_WEB_ADVERTISED_HOST": "project_worker_1"}, "127.0.0.1", "project_worker_1"),
    ({"HOOKSTREAM_WEB_HOST": "localhost"}, "localhost", "localhost"),
    ({"HOOKSTREAM_WEB_ADVERTISED_HOST": "[fd00:10:244::5]"}, "127.0.0.1", "fd00:10:244::5"),
])
def test_the_api_binds_where_told_and_is_advertised_where_reachable(
        env: dict[str, str], bind: str, advertised: str) -> None:
    s = Settings.from_env(env)
    assert (s.web_host, s.web_advertised_host) == (bind, advertised)


@pytest.mark.parametrize(("bind", "url"), [
    ("127.0.0.1", "http://127.0.0.1:6066"), ("0.0.0.0", "http://127.0.0.1:6066"),
    ("::", "http://[::1]:6066"), ("10.1.2.3", "http://10.1.2.3:6066"),
    ("fd00::5", "http://[fd00::5]:6066"), ("localhost", "http://localhost:6066"),
])
def test_this_machine_reaches_the_api_where_it_is_bound(bind: str, url: str) -> None:
    # The console calls its own worker's API, the CLI a local one: 127.0.0.1 always, until
    # the API bound where HOOKSTREAM_WEB_HOST said.
    assert Settings.from_env({"HOOKSTREAM_WEB_HOST": bind}).local_api_url() == url


def test_a_refused_proxy_url_is_not_quoted_back() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"HOOKSTREAM_EGRESS_PROXY": "ftp://user:s3cr3t@proxy:21"})
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(("name", "raw"), [
    ("HOOKSTREAM_EGRESS_PROXY", "http://user:pass@proxy.internal:3128"),
    ("HOOKSTREAM_EGRESS_PROXY", "https://[::1]:8443"),
    ("HOOKSTREAM_TOPIC_PREFIX", "Prod_2-eu."),
    ("HOOKSTREAM_EVENT_FAMILIES", "task,Project_x,user-v2"),
    ("HOOKSTREAM_LOG_LEVEL", "WARN"),
])
def test_good_values_of_the_checked_variables_pass(name: str, raw: str) -> None:
    Settings.from_env({name: raw})


def test_min_insync_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(SettingsError, match="HOOKSTREAM_MIN_INSYNC_REPLICAS=3 is more than "
                                            "HOOKSTREAM_REPLICATION_FACTOR=2"):
        Settings.from_env({"HOOKSTREAM_REPLICATION_FACTOR": "2",
                           "HOOKSTREAM_MIN_INSYNC_REPLICAS": "3"})


def test_settings_error_is_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKSTREAM_TOPIC_PREFIX", "envtest.")
    monkeypatch.setenv("HOOKSTREAM_WEB_PORT", "7001")
    s = Settings.from_env()
    assert (s.topic_prefix, s.web_port) == ("envtest.", 7001)


@pytest.mark.parametrize(
    ("prefix", "name", "expected"),
    [("", "hookstream.dlq", "hookstream.dlq"),
     ("t123.", "hookstream.dlq", "t123.hookstream.dlq"),
     ("staging-", "domain.task", "staging-domain.task")],
)
def test_topic_prefix(prefix: str, name: str, expected: str) -> None:
    assert Settings.from_env({"HOOKSTREAM_TOPIC_PREFIX": prefix}).topic(name) == expected


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.web_port = 1  # type: ignore[misc]


# -- bugs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("HOOKSTREAM_DELIVERY_TIMEOUT", "nan"),
        ("HOOKSTREAM_DELIVERY_TIMEOUT", "inf"),
        ("HOOKSTREAM_RETRY_DELAYS", "nan,300,1800"),
    ],
)
def test_non_finite_seconds_refused(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


def test_web_port_above_65535_refused() -> None:
    with pytest.raises(SettingsError, match="HOOKSTREAM_WEB_PORT"):
        Settings.from_env({"HOOKSTREAM_WEB_PORT": "70000"})


def test_every_setting_is_in_the_deploy_readmes_table() -> None:
    """Each variable Settings.from_env reads has its row in deploy/README.md's table."""
    import re

    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r'"((?:HOOKSTREAM|KAFKA)_[A-Z_]+)"',
                          (root / "streams" / "settings.py").read_text()))
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", (root / "deploy" / "README.md").read_text(),
                           re.MULTILINE))
    assert "HOOKSTREAM_FAILURE_LIMIT" in read
    assert read - table == set()


def test_the_fetch_wait_reaches_the_stages_consumers() -> None:
    for raw, expected in (("", 50), ("750", 750)):
        consumer = kafka_consumer(Settings.from_env({"HOOKSTREAM_FETCH_WAIT_MS": raw}),
                                  "group", 5.0)
        assert isinstance(consumer, AsyncConsumer)
        assert consumer._config["fetch.wait.max.ms"] == expected
