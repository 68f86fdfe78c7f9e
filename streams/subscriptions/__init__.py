"""Every worker's view of the subscriptions: who wants which events, by workspace."""
