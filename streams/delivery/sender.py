"""One delivery attempt: body, signature, POST, outcome. Never raises for the receiver's faults."""

from __future__ import annotations

import asyncio
import functools
import time

import aiohttp
import httpx

from ..core import signing
from ..core.payload import webhook_body
from ..core.secretbox import SecretBox, SecretBoxError, is_sealed
from ..core.text import inert
from ..core.timeutil import now_ms
from ..core.urls import UrlPolicyError, check_url
from ..subscriptions.model import Subscription
from .client import DeliveryClient
from .models import DeliveryJob, Outcome, requested_wait

#: Enough of a response body to say why a receiver failed, never more.
_ERROR_BODY_BYTES = 200


def build_request(sub: Subscription, job: DeliveryJob, now_s: int,
                  box: SecretBox | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of one attempt. Sealed secrets and header values are opened with
    `box`. The webhook's custom headers come first: ours are set after them, so none of
    the names we sign with could be overridden even if one slipped past the rules."""
    body = webhook_body(job.event_id, job.event_type, job.event_timestamp, sub.id, job.data_json)

    def reveal(secret: str) -> str:
        return box.open(secret) if box is not None and is_sealed(secret) else secret

    secrets = [reveal(sub.secret)]
    if sub.previous_secret and (sub.previous_secret_until or 0) > now_s * 1000:
        secrets.append(reveal(sub.previous_secret))
    headers = {name: reveal(value) for name, value in sub.headers}
    headers |= {
        "Content-Type": "application/json",
        signing.WEBHOOK_ID_HEADER: sub.id,
        signing.TIMESTAMP_HEADER: str(now_s),
        signing.EVENT_HEADER: job.event_type,
        signing.DELIVERY_HEADER: job.delivery_id,
    }
    if sub.signature_scheme == "standard-webhooks":
        headers[signing.STANDARD_ID_HEADER] = job.delivery_id
        headers[signing.STANDARD_TIMESTAMP_HEADER] = str(now_s)
        headers[signing.STANDARD_SIGNATURE_HEADER] = " ".join(
            signing.sign_standard(job.delivery_id, now_s, body, s) for s in secrets)
    else:
        headers[signing.SIGNATURE_HEADER] = signing.sign(body, secrets[0])
        if len(secrets) > 1:
            headers[signing.PREVIOUS_SIGNATURE_HEADER] = signing.sign(body, secrets[1])
    return body, headers


@functools.lru_cache(maxsize=8192)
def _checked_url(url: str, allow_insecure: bool) -> str:
    """check_url, remembered: the rules are pure and every attempt asks (refusals, which
    raise, are not remembered). Resolved addresses are checked per connection anyway.
    The URL is sent in the form returned, so a subscription stored before the rules knew
    some spelling is still sent only where the rules would send it now."""
    return check_url(url, allow_insecure=allow_insecure)


async def attempt(
    client: DeliveryClient, sub: Subscription, job: DeliveryJob,
    *, timeout: float, allow_insecure: bool, box: SecretBox | None = None,
) -> Outcome:
    """POST the job to the subscription's URL once, within `timeout` seconds in all."""
    started_ms = now_ms()
    started = time.perf_counter()
    code: int | None = None
    error: str | None = None
    wait_s: float | None = None
    try:
        url = _checked_url(sub.url, allow_insecure)
        body, headers = build_request(sub, job, started_ms // 1000, box)
        async with asyncio.timeout(timeout):
            code, answer, retry_after = await client.post(url, body, headers,
                                                          keep=_ERROR_BODY_BYTES)
            if not 200 <= code < 300:
                text = answer.decode("utf-8", "replace")
                error = f"HTTP {code}" + (f": {text}" if text.strip() else "")
            # Read now: an HTTP-date means that long after the answer came.
            wait_s = requested_wait(code, retry_after, time.time())
    except UrlPolicyError as exc:
        error = f"target refused: {exc}"
    except SecretBoxError as exc:
        error = f"cannot sign: {exc}"
    except TimeoutError:
        error = f"timed out after {timeout:g}s"
    except (httpx.HTTPError, aiohttp.ClientError, OSError, ValueError) as exc:
        # Refused, reset, DNS and TLS errors all land here; ValueError is a request the
        # client would not build (a header it refuses), which no retry will change.
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    # The receiver wrote part of it (its body's first bytes): inert before it is stored,
    # logged (the dead-letter agent's warning) or shown, so it forges no log line.
    # Line breaks and tabs (a pretty-printed body) read as spaces.
    return Outcome(job.attempt, started_ms, code, elapsed_ms,
                   inert(" ".join(error.split())) if error else error, wait_s)
