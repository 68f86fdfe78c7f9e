"""Writes topics.yaml (Strimzi KafkaTopic resources) from streams/kafka/topics.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.settings import Settings
from streams.kafka.topics import all_topics, replication_for

#: Production sizes: a cluster of (at least) 3 brokers, so the replication rule's 3 copies
#: with min.insync.replicas 2, as `hookstream topics create` does on such a cluster.
PARTITIONS, BROKERS = 24, 3
REPLICATION = replication_for(BROKERS)


def render() -> str:
    settings = Settings(partitions=PARTITIONS, replication_factor=REPLICATION.factor,
                        min_insync_replicas=REPLICATION.min_insync)
    docs = ["# Every hookstream topic as a Strimzi KafkaTopic (production sizes).\n"
            "# Generated from streams/kafka/topics.py by `python deploy/kubernetes/gen_topics.py`;"
            " do not edit."]
    for spec in all_topics(settings):
        config = {**spec.config, "min.insync.replicas": str(REPLICATION.min_insync)}
        lines = ["apiVersion: kafka.strimzi.io/v1beta2", "kind: KafkaTopic", "metadata:",
                 f"  name: {spec.name.replace('.', '-')}", "  labels:",
                 "    strimzi.io/cluster: hookstream", "spec:", f"  topicName: {spec.name}",
                 f"  partitions: {spec.partitions}", f"  replicas: {REPLICATION.factor}",
                 "  config:"]
        lines += [f'    {key}: "{value}"' for key, value in sorted(config.items())]
        docs.append("\n".join(lines))
    return "\n---\n".join(docs) + "\n"


if __name__ == "__main__":
    (Path(__file__).parent / "topics.yaml").write_text(render())
