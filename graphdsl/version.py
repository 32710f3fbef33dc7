"""graphdsl's version, read by the package metadata and the module cache's key."""
__version__ = "0.1.0"
