"""Database-specific SQL, one package per dialect."""
