"""Delivery: jobs in, signed HTTP POSTs out, one log record per attempt.

models   - the job and attempt records (pure)
client   - the HTTP client factory: timeouts, limits, no redirects, target checks
sender   - one attempt: build the body, sign, POST, classify the outcome
worker   - the consumer loop: bounded concurrency, offsets committed only when durable
"""
