"""Kafka plumbing, one place: topic names and configs, creating them, reading a topic to its
end, publishing (confluent-kafka), and always-current local copies of compacted topics."""
