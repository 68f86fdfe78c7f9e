"""The control plane: commands that create and change webhooks, and the table they build."""
