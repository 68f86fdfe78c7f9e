"""Fan-out: each domain event x its workspace's subscriptions -> one delivery job each
(stage: the handler on the pipeline's stage loop)."""
