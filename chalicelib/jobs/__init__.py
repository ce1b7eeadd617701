"""Scheduled jobs that run outside the request path (view refresh, pre-warm, slot generation)."""
