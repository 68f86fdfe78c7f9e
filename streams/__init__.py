"""hookstream: webhook delivery on Apache Kafka.

The pure core (settings, catalog, schemas, events, matching, signing, payload, policy,
control.commands) imports no Kafka, faust or HTTP code. The rest wires it to topics.
"""

__version__ = "0.1.0"
