"""Booking domain: request models, read queries, write commands."""
