"""Delivery: jobs in, signed HTTP POSTs out, one log record per attempt.

models    - the job, attempt and dead-letter records, their statuses (pure)
routing   - where a job goes after an attempt: the log, a retry topic, the dead letters (pure)
pressure  - which endpoints are slow enough that their jobs are deferred (pure)
slots     - a bounded set of attempt slots (per webhook)
fairness  - the worker's slots shared fairly between workspaces
client    - the HTTP client: timeouts, limits, no redirects, connects only to vetted addresses
sender    - one attempt: build the body, sign, POST, classify the outcome
stage     - the delivery stage: a job in, an attempt under the caps, its records out
"""
