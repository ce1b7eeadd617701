"""PostgreSQL access: connections, migrations, seed data."""
