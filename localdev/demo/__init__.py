"""The demo of README's first command: a receiver that verifies and prints deliveries."""
