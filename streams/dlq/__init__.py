"""Dead letters as the API lists them: an index of hookstream.dlq kept by every worker.

index - pure: each workspace's letters in time order, bounded, paged by cursor
view  - tails hookstream.dlq (headers only) and hookstream.dlq-replayed into the index
"""
