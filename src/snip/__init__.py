"""snip: a self-hosted URL shortener built like an SRE would build it."""

__version__ = "0.1.0"
