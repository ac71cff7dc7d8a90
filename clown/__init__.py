"""clown: a host service that runs and manages CLI coding agents."""

__version__ = "0.1.0"
