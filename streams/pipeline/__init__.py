"""The consumer-group stage that fan-out and delivery run on, and the records stages exchange.

records  - Origin, Produce, and the quarantined copy of a bad input
offsets  - which offset is safe to commit while records finish out of order (pure)
stage    - the loop: concurrency, pause and hold, commits that follow outcomes
clients  - what the loop uses of its Kafka clients, and the factories of aiokafka's
           consumer and a librdkafka producer
landing  - producing until the broker took it; what it would never take (RecordTooLarge)
local    - an in-memory broker behind those factories, for tests of the loop without Kafka
agents   - the same no-record-stalls rule for the faust agents
"""
