"""Hypothesis strategies for bodies of POST /v1/webhooks/{id}/test: near the valid ones
(`event` and look-alike keys, catalog types among the values) and outright garbage. Shared
by the validation's unit tests and the live endpoint's integration test."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from streams.core import catalog

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10)

#: Objects whose keys and values are near a valid test body.
TEST_BODIES = st.dictionaries(
    st.sampled_from(["event", "Event", "type", "events"]) | st.text(max_size=10),
    st.sampled_from(sorted(catalog.ALL_EVENT_TYPES)) | JSON_VALUES,
    max_size=3)

#: What a client could send as the raw body: those objects, any JSON, or any bytes.
RAW_TEST_BODIES = (TEST_BODIES.map(lambda b: json.dumps(b).encode())
                   | JSON_VALUES.map(lambda b: json.dumps(b).encode())
                   | st.binary(max_size=64))
