"""The three-tier read cache: memory (L1), Redis (L2), PostgreSQL loaders (L3)."""
