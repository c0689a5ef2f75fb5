"""Adapters: storage, caches and other I/O behind the ports the service layer names."""
