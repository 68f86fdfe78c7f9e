"""What an operator sees: every metric, listed once (metrics), consumer lag read from Kafka
(metrics.LagProbe), and the JSON log lines (logs)."""
