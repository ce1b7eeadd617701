"""`python -m bench`: the cache and API benchmark (see docs/performance.md)."""
