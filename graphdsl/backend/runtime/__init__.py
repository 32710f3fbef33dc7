"""Numba helpers that generated code imports (as K, T and M); compiled once into Numba's cache."""
