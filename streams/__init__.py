"""hookstream: webhook delivery on Apache Kafka.

The folder tree is the architecture (README, "Architecture"): `core` holds the pure rules
(no Kafka, faust or HTTP import), `kafka` the plumbing, `pipeline` the stage loop, then one
package per part of the pipeline, and `worker` puts them together in one process.
tests/unit/test_layers.py checks that imports point one way.
"""

__version__ = "0.1.0"
