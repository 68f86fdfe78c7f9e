"""What one worker process holds, built once from its settings (context.Runtime): the faust
app, the secret box, the subscriptions and API-key views, and the topics its parts share."""
