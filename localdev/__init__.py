"""For a developer's machine, not for production: a local Kafka broker, or a cluster of
them, from Maven Central's jars (`hookstream kafka up [--brokers 3]`), the demo
(`make dev`) and the benchmarks (`make bench`)."""
