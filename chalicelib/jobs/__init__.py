"""Scheduled jobs (slot generation) that run outside the request path."""
