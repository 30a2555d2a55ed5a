"""Slack: Block Kit messages, the Socket Mode click listener, posting."""
