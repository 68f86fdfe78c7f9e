"""Run a real Apache Kafka 4 (KRaft) on this machine without Docker: one broker, or a
cluster of several (`hookstream kafka up --brokers 3`), each node broker and controller.

Why: local dev and crash tests need a genuine broker (transactions, consumer groups,
restarts, a broker dying under load), and Docker is not always there. Jars come from Maven
Central via deploy/kafka/pom.xml. All state lives under HOOKSTREAM_HOME:

- kafka-libs/: the jars, shared by every node;
- kafka/: the single broker (127.0.0.1:9092, controller 9093): data/ (survives restarts),
  logs/ (server.log, kafka.out), {server,log4j2}.properties (rewritten on every start),
  kafka.pid (the only pid ever signalled) and cluster.id;
- kafka-cluster/: a cluster: node-<i>/ laid out as kafka/ above, one cluster.id for all,
  layout.json (broker count and ports of the last start). Node i listens on
  9192 + 100 * (i - 1) and its controller on the port after (HOOKSTREAM_KAFKA_CLUSTER_PORT
  moves the first).

config.py renders what a node is told, node.py runs one JVM, cluster.py runs them all.
"""

from .cluster import KafkaStatus, LocalKafka, PartitionState
from .config import (
    CLUSTER_PORT,
    LocalKafkaError,
    cluster_ports,
    quorum_voters,
    render_log4j2_properties,
    render_server_properties,
)
from .node import KafkaNode, NodeStatus

__all__ = [
    "CLUSTER_PORT", "KafkaNode", "KafkaStatus", "LocalKafka", "LocalKafkaError", "NodeStatus",
    "PartitionState", "cluster_ports", "quorum_voters", "render_log4j2_properties",
    "render_server_properties",
]
