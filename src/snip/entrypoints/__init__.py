"""Entrypoints: the thin HTTP and CLI layers over the service layer."""
