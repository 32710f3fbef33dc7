"""The Numba back end: source generation, the training loop, the module cache, and the runtime helpers."""
