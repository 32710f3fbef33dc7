"""Graph to graph: reverse-mode autodiff, minibatching, and the NumPy reference interpreter."""
