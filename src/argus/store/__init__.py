"""Persistent state: the database, its schema and migrations, and the store functions."""
