"""deploy/kubernetes/topics.yaml is generated from streams/kafka/topics.py and must not drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_strimzi_topics_match_the_topic_list() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_topics", ROOT / "deploy" / "kubernetes" / "gen_topics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "deploy" / "kubernetes" / "topics.yaml").read_text()
    assert committed == module.render(), "run: python deploy/kubernetes/gen_topics.py"
