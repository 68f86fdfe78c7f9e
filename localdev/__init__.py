"""For a developer's machine, not for production: a local Kafka broker from Maven Central's
jars (`hookstream kafka up`), the demo (`make dev`) and the benchmarks (`make bench`)."""
