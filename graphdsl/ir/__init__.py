"""The graph IR and its op registry."""
