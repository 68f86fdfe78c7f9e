"""Each webhook's recent delivery history, kept on the worker that owns its partition."""
