"""`hookstream bench`: measures the pipeline against the real broker and a local receiver.

Every throughput is reported next to this machine's limit: a bare aiohttp client sending the
same number of signed POSTs to the same receiver with the same concurrency, in the same run.
"""
