"""The service layer: use cases that tie the domain to storage and caches through small ports."""
