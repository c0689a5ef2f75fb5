"""SQL storage: SQLite (embedded default) and PostgreSQL through SQLAlchemy 2 async Core."""
