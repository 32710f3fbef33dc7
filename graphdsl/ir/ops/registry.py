"""The op registry: for every op its shape rule, backward rule, NumPy reference and code template.

It is the single source of truth for what an op means. Rules sit side by side,
as in micrograd, but as data: the interpreter runs `ref`, the code generator
emits `code`, autodiff calls `vjp`, and shape checking calls `shape`.

- shape(*arg_shapes, **attrs) -> shape, or raise ShapeError
- ref(*arrays, **attrs) -> np.ndarray
- code(args, attrs, in_shapes, out_shape) -> an expression string, or a list of
  statements assigning `{out}` (a few ops need loops or several lines); None for the
  ops whose loops `loops.LOOPS` writes (products, sums, broadcasts, logsumexp, pick, onehot)
- vjp(g, y, *args, **attrs) -> one cotangent (a Sym) or None per argument, where
  g is the cotangent of the output, y the output and args the inputs, all Syms.
  An op with vjp=None is used only in backward graphs (`backward_only`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from graphdsl.backend import loops


@dataclass(frozen=True)
class Op:
    name: str
    shape: Callable
    ref: Callable
    code: Callable | None
    vjp: Callable | None
    doc: str
    backward_only: bool = False
    elementwise: bool = False  # `code` then also works on single numbers, so it can run in loops


OPS: dict[str, Op] = {}


def register(name, *, shape, ref, code, vjp=None, doc, backward_only=False, elementwise=False):
    if isinstance(code, str):
        template = code
        code = lambda args, attrs, in_shapes, out_shape: template.format(  # noqa: E731
            *args, **attrs, math=loops.math_module(out_shape))
    OPS[name] = Op(name, shape, ref, code, vjp, doc, backward_only, elementwise)
