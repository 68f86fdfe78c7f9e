"""Secure mode (the default): only https URLs of public hosts, checked at creation and again
after DNS resolution at delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from streams.delivery.models import AttemptRecord
from streams.kafka import topics

from ..support.api import call
from ..support.hostile_urls import PRIVATE_HOST, hostile_url
from ..support.pipeline import Deployment

pytestmark = pytest.mark.integration

REFUSED_LITERALS = [
    "127.0.0.1", "[::1]", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "[fe80::1]", "100.64.0.1", "224.0.0.1", "0.0.0.0", "[::]", "240.0.0.1", "[fd00::1]",
    "[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[::ffff:169.254.169.254]", "127.1",
    "2130706433", "0x7f.0.0.1", "[2002:7f00:1::]",
]


#: Names the worker resolves, through its own /etc/hosts, to one address of each class.
NAMED = {
    "loopback.hooktest": "127.0.0.2", "private10.hooktest": "10.1.2.3",
    "private172.hooktest": "172.20.0.5", "private192.hooktest": "192.168.7.7",
    "metadata.hooktest": "169.254.169.254", "shared.hooktest": "100.64.1.1",
    "multicast.hooktest": "239.1.1.1", "unspecified.hooktest": "0.0.0.0",
    "reserved.hooktest": "240.1.1.1", "loopback6.hooktest": "::1",
    "linklocal6.hooktest": "fe80::1", "uniquelocal6.hooktest": "fd12::1",
    "mapped6.hooktest": "::ffff:10.0.0.1",
}
REBIND = "rebind.hooktest"


def _own_hosts_wrapper(tmp: Path) -> list[str]:
    """Run the worker in a mount namespace where /etc/hosts is ours: real resolution by the
    system resolver, with names we control (there is no DNS server to ask here)."""
    hosts = tmp / "hosts"
    lines = [f"{address} {name}" for name, address in NAMED.items()]
    hosts.write_text("\n".join([*lines, f"127.0.0.1 {REBIND}", Path("/etc/hosts").read_text()]))
    script = f'mount --bind "{hosts}" /etc/hosts && exec "$0" "$@"'
    return ["unshare", "--mount", "sh", "-c", script]


@pytest.fixture(scope="module")
def dep(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    home = Path(tmp_path_factory.mktemp("secure"))
    deployment = Deployment(kafka_bootstrap, home, HOOKSTREAM_ALLOW_INSECURE_TARGETS="0")
    deployment.start_worker(wrapper=_own_hosts_wrapper(home))
    yield deployment
    deployment.close()


def _create(dep: Deployment, url: str) -> tuple[int, dict]:
    answer = call(dep.workers[0].port, "POST", "/v1/webhooks", dep.env["HOOKSTREAM_ADMIN_KEY"],
                  {"workspace_id": "ws_sec", "url": url, "events": ["*"]})
    return answer.status, answer.body


@pytest.mark.parametrize("host", REFUSED_LITERALS)
def test_private_and_special_addresses_are_refused(dep: Deployment, host: str) -> None:
    status, body = _create(dep, f"https://{host}/hook")
    assert status == 400, body
    assert body["error"]["field"] == "url"


@pytest.mark.parametrize("url", [
    "https://127\u30020\u30020\u30021:6066/", "https://169\uff0e254\uff0e169\uff0e254/latest",
    "https://10\uff610\uff610\uff611/", "https://\uff11\uff12\uff17.0.0.1/",
    "https://[fec0::1]/", "https://0x7f.1/", "https://[::ffff:7f00:1]/"])
def test_unicode_and_shorthand_spellings_of_private_addresses_are_refused(
        dep: Deployment, url: str) -> None:
    """Issue 10, item 1: these answered 201 and /test then reached loopback."""
    status, body = _create(dep, url)
    assert status == 400 and body["error"]["field"] == "url", body


@pytest.mark.parametrize("url", ["https://999.1.1.1/", "https://1.2.3.4.5/",
                                 "https://exa%6dple.com/", "https://a..b.example/",
                                 "https://[fe80::1%25eth0]/", "https://example.com\\@x.com/",
                                 "https://" + "a" * 64 + ".example/"])
def test_hosts_that_do_not_normalise_are_a_400_not_a_500(dep: Deployment, url: str) -> None:
    """Issue 10, item 2: https://999.1.1.1/ answered 500."""
    status, body = _create(dep, url)
    assert status == 400 and body["error"]["field"] == "url", body


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(url=hostile_url(host=PRIVATE_HOST))
def test_no_spelling_of_a_private_address_is_accepted_by_the_api(dep: Deployment,
                                                                 url: str) -> None:
    status, body = _create(dep, url)
    assert status == 400 and body["error"]["field"] == "url", (url, status, body)


@pytest.mark.parametrize("url", ["http://example.com/hook", "https://localhost/hook",
                                 "https://user:pw@example.com/hook", "ftp://example.com/x"])
def test_insecure_urls_are_refused(dep: Deployment, url: str) -> None:
    status, body = _create(dep, url)
    assert status == 400 and body["error"]["field"] == "url", body


@pytest.mark.parametrize("name", sorted(NAMED))
def test_a_hostname_resolving_to_a_refused_address_is_refused(dep: Deployment,
                                                               name: str) -> None:
    status, body = _create(dep, f"https://{name}/hook")
    assert status == 400, body
    assert body["error"]["message"] == f"url: {name} does not resolve to a public address"


def test_a_name_that_does_not_resolve_reads_like_a_private_one(dep: Deployment) -> None:
    """Tenants cannot tell an internal name from a missing one: no DNS mapping."""
    status, body = _create(dep, "https://no-such-host.hooktest/hook")
    assert status == 400, body
    assert body["error"]["message"] == ("url: no-such-host.hooktest does not resolve to a "
                                        "public address")


def test_delivery_resolves_again_and_refuses_non_public_addresses(dep: Deployment) -> None:
    """A webhook whose name resolves privately only at delivery (DNS rebinding) is refused
    there: the command goes straight to the control topic, as any producer could."""
    name = REBIND
    wh = "wh_rebind"
    dep.command("create", wh, workspace_id="ws_rebind", webhook={
        "url": f"https://{name}:{dep.receiver.port}/rebind", "events": ["task.created"],
        "secret": "whsec_0123456789abcdef"})
    from ..support.pipeline import wait_webhook_state

    wait_webhook_state(dep, wh, {"active": True})
    log = dep.reader(topics.DELIVERY_LOG)
    dep.publish("task.created", "ws_rebind", {"id": "t"})
    found = log.wait_for(lambda ms: any(m.key() == wh.encode() for m in ms), what="attempt")
    record = AttemptRecord.decode(next(m for m in found if m.key() == wh.encode()).value())
    assert record.response_code is None
    assert record.error is not None and "does not resolve to a public address" in record.error
    assert not dep.receiver.requests
