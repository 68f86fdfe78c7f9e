"""Hypothesis strategies for hostile record values: what anyone who can write to a topic
might write. Shared by the decoders' unit tests and the fuzz test against the broker.

Random bytes, deep nesting, hostile JSON and wrong fingerprints are bad by construction.
Mutated Avro usually is, but a flipped byte inside a name can leave a valid record, so a
test that needs bad records only keeps those the decoder refuses. `valid_samples` gives
the good encodings that get mutated.
"""

from __future__ import annotations

from hypothesis import strategies as st

from streams.core.schemas import EVENT, FAMILY_DATA, SOE_MAGIC, registry
from streams.delivery.models import AttemptRecord, DeadLetter, DeliveryJob, Outcome
from streams.subscriptions.commands import Command

T0 = 1_760_437_800_123


def sample_job(**overrides: object) -> DeliveryJob:
    fields: dict[str, object] = {
        "delivery_id": "dlv_0123456789abcdef01234567", "webhook_id": "wh_1",
        "workspace_id": "ws_1", "event_id": "evt_1", "event_type": "task.created",
        "event_timestamp": "2025-10-14T10:30:00Z", "data_json": '{"id":"task_1","n":[1,2]}',
        "attempt": 2, "created_at": T0, "due_at": T0 + 60_000, "source_topic": "domain.task",
        "source_partition": 1, "source_offset": 5,
        "outcomes": (Outcome(1, T0, 503, 12, "HTTP 503: busy"),)}
    fields.update(overrides)
    return DeliveryJob(**fields)  # type: ignore[arg-type]


def valid_samples() -> dict[str, bytes]:
    """One good single-object encoding per record type on our input topics."""
    job = sample_job()
    return {
        "event": registry().encode(EVENT, {
            "id": "evt_a", "event": "task.created", "timestamp": "2025-10-14T10:30:00Z",
            "workspace_id": "ws_1", "data": (FAMILY_DATA["task"], {"id": "t", "name": "n"})}),
        "command": Command(op="create", webhook_id="wh_1", workspace_id="ws_1", webhook={
            "url": "https://example.com/h", "events": ["task.*"],
            "secret": "whsec_0123456789"}).encode(),
        "job": job.encode(),
        "dead letter": DeadLetter(job, "attempts_exhausted", "HTTP 503", T0).encode(),
        "attempt record": AttemptRecord.of(job, job.outcomes[0], "retrying", T0).encode(),
    }


def _zigzag_varint(n: int) -> bytes:
    """Avro's long encoding: a length or count the reader will believe."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


#: Lengths and counts that make a reader allocate, overflow, or read past the end.
_HUGE = st.sampled_from([2**31, 2**31 - 1, 2**40, 2**62, 2**63 - 1, -1, -2**31, -2**63,
                         10**12])


@st.composite
def mutated_avro(draw: st.DrawFn, samples: dict[str, bytes]) -> bytes:
    """A valid encoding with its header kept and its body damaged: bytes flipped, huge or
    negative lengths spliced in, cut short, or grown. The damage is real: the mutated
    body is never the original."""
    original = samples[draw(st.sampled_from(sorted(samples)))]
    body = bytearray(original[10:])
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "length", "cut", "insert"]))
        at = draw(st.integers(0, len(body)))
        if op == "flip" and body:
            body[min(at, len(body) - 1)] ^= draw(st.integers(1, 255))
        elif op == "length":
            body[at:at + draw(st.integers(0, 3))] = _zigzag_varint(
                draw(st.one_of(_HUGE, st.integers(-2**63, 2**63 - 1))))
        elif op == "cut":
            del body[at:]
        else:
            body[at:at] = draw(st.binary(min_size=1, max_size=12))
    mutated = original[:10] + bytes(body)
    if mutated == original:
        mutated += b"\x00"  # trailing bytes: still damage
    return mutated


def deep_nesting(depth: int) -> list[bytes]:
    """JSON nested `depth` deep: unclosed and closed arrays, objects, and both in a field."""
    event = b'{"event":"task.created","timestamp":"2025-10-14T10:30:00Z","workspace_id":"w",'
    return [
        b"[" * depth,
        b'{"a":' * depth,
        b"[" * depth + b"]" * depth,
        b'{"a":' * depth + b"1" + b"}" * depth,
        event + b'"data":{"id":"x","deep":' + b"[" * depth + b"]" * depth + b"}}",
    ]


_JSON_ATOMS = st.sampled_from([
    b"1" * 5000, b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"1E-400",
    b'"\\ud800"', b'"\\udfff\\ud800"', b'"\xed\xa0\x80"', b'"\xff"', b"9" * 400, b"null",
    b"true", b'""', b"0.1e-999999999", b"-0", b"1" + b"0" * 20, b'"\\u0000"',
])


@st.composite
def hostile_json(draw: st.DrawFn) -> bytes:
    """JSON-like text built from awkward atoms: huge or non-finite numbers, lone
    surrogates (escaped and raw), invalid UTF-8, wrong shapes; sometimes cut short."""
    atoms = draw(st.lists(_JSON_ATOMS, min_size=1, max_size=4))
    shape = draw(st.sampled_from(["array", "object", "event", "bare"]))
    if shape == "array":
        text = b"[" + b",".join(atoms) + b"]"
    elif shape == "object":
        text = b"{" + b",".join(b'"k%d":' % i + a for i, a in enumerate(atoms)) + b"}"
    elif shape == "event":
        text = (b'{"event":"task.created","timestamp":' + atoms[0]
                + b',"workspace_id":"w","data":{"id":' + atoms[-1] + b"}}")
    else:
        text = atoms[0]
    if draw(st.booleans()):
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    return text


def wrong_fingerprint() -> st.SearchStrategy[bytes]:
    """The single-object marker, 8 bytes that are no schema's fingerprint, any body."""
    known = set(registry().by_fingerprint)
    return st.builds(lambda fp, body: SOE_MAGIC + fp + body,
                     st.binary(min_size=8, max_size=8).filter(lambda fp: fp not in known),
                     st.binary(max_size=64))


def hostile_bytes(samples: dict[str, bytes] | None = None) -> st.SearchStrategy[bytes]:
    """Any of the above, or plain random bytes."""
    samples = samples if samples is not None else valid_samples()
    return st.one_of(
        st.binary(max_size=256), mutated_avro(samples), hostile_json(), wrong_fingerprint(),
        st.sampled_from(deep_nesting(5000) + deep_nesting(1000)),
    )
