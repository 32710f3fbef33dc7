"""The op registry, filled by importing the op families: `OPS[name]` is everything graphdsl knows
about an op (see registry.Op)."""
from graphdsl.ir.ops import elementwise, linalg, nn, reduce, structure  # noqa: F401  (each fills OPS)
from graphdsl.ir.ops.registry import OPS

__all__ = ["OPS"]
