"""The op registry: everything graphdsl knows about an op sits in its entry, and no other module
lists op names. The interpreter runs `ref`, shape checking calls `shape`, autodiff `vjp`,
minibatching `batch`, the code generator `code` or `emit` and the flags, the summary `mults`,
and the front end `call` and `infix`.

- doc: what the op computes, in a line
- shape(*arg_shapes, **attrs) -> shape, or raise ShapeError
- ref(*arrays, **attrs) -> np.ndarray
- vjp(g, y, *args, **attrs) -> one cotangent (a Sym) or None per argument, where g is the
  cotangent of the output, y the output and args the inputs, all Syms; None exactly for the
  ops used only in backward graphs (`backward_only`)
- code(args, attrs, in_shapes, out_shape) -> an expression string, or a list of statements
  assigning `{out}`; a template string is formatted with the args, the attrs and `{math}`
  (where exp and tanh come from, see loops.math_module)
- emit(out, args, in_shapes, out_shape, **attrs) -> statements: loops writing the op into
  buffer `out` (a local for a scalar), built from loops.py's primitives. An op has code or
  emit, never both.
- batch(node, args, flags, size) -> Sym: the op on `size` examples at once, given its
  rewritten args and which of them hold examples (see batching.py); it raises Unbatchable
  where there is no rule
- mults(arg_shapes, out_shape) -> the scalar multiplications the op computes (`summary` counts a
  forward graph's, the interpreted training run's estimate a step's)
- call: how a spec calls the op by name (a Call), or None where a spec cannot
- infix: the operator symbol a spec writes it with (`+`), or None

Flags, and the facets only some ops have (None for the others), so that no other module needs
an op's name:
- elementwise: `code` also works on single numbers, so it can run entry by entry in loops
- backward_only: made only by vjp rules, never differentiated
- view(arg, out_shape) -> an expression: an array result is a view of its operand (of an array
  operand; a scalar one is copied into a buffer)
- reads_fused: its loops (emit) read fused operands, as elementwise loops do
- fused_read(args, in_shapes, idx, **attrs) -> (statements, expression): the op only reads its
  operand, broadcast, so a reader's loops can read its value at indices `idx` in place
- blas: a matrix product `a @ b` that BLAS may run (loops.blas says when)
- class_index: which operand holds class indices into the last axis of the first operand (the
  scores), so a model checks a leaf given there before any kernel runs
- scratch(arg_shapes) -> a shape, or None: a buffer made once that `emit` works in, given as its
  `scratch` setting (`s7` for node 7)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from graphdsl.backend import loops


@dataclass(frozen=True)
class Call:
    """How a spec calls an op: `name(params..., setting=value)`. `kwargs` maps each setting to
    (kind, default), kinds as the front end checks them (int | count | axis); the op always gets
    every setting, the default where the call gives none."""

    params: tuple
    kwargs: dict = field(default_factory=dict)


UNARY = Call(("x",))  # called by name on one value, `sigmoid(x)`


@dataclass(frozen=True)
class Op:
    """One op's entry: every facet and flag the module docstring lists (register fills them all)."""

    name: str
    doc: str
    shape: Callable
    ref: Callable
    vjp: Callable | None
    code: Callable | None
    emit: Callable | None
    batch: Callable
    mults: Callable
    call: Call | None
    infix: str | None
    elementwise: bool
    view: Callable | None
    reads_fused: bool
    fused_read: Callable | None
    blas: bool
    class_index: int | None
    scratch: Callable | None

    @property
    def backward_only(self) -> bool:
        """Made only by vjp rules, never differentiated: it has no vjp."""
        return self.vjp is None


OPS: dict[str, Op] = {}
INFIX: dict[str, str] = {}  # operator symbol -> op name


def no_mults(arg_shapes, out_shape) -> int:
    """The count of an op that multiplies nothing: sums, divisions, powers, copies, and the
    arithmetic inside elementwise functions such as sigmoid and exp are not counted."""
    return 0


def mult_per_entry(arg_shapes, out_shape) -> int:
    """One multiplication for each entry of the output."""
    return math.prod(out_shape)


def template(text: str) -> Callable:
    """A code template as a `code` function."""
    return lambda args, attrs, in_shapes, out_shape: text.format(
        *args, **attrs, math=loops.math_module(out_shape))


def register(name, *, doc, shape, ref, vjp, code=None, emit=None, batch, mults, call, infix=None,
             elementwise=False, view=None, reads_fused=False, fused_read=None, blas=False, class_index=None,
             scratch=None):
    """Enter an op in OPS. The facets every op has take no default, so an entry missing one fails
    here, when its family is imported; vjp=None says the op is made only by vjp rules."""
    if (code is None) == (emit is None):
        raise TypeError(f"op {name}: give code or emit, not both or neither")
    OPS[name] = Op(name=name, doc=doc, shape=shape, ref=ref, vjp=vjp,
                   code=template(code) if isinstance(code, str) else code, emit=emit, batch=batch, mults=mults,
                   call=call, infix=infix, elementwise=elementwise, view=view, reads_fused=reads_fused,
                   fused_read=fused_read, blas=blas, class_index=class_index, scratch=scratch)
    if infix is not None:
        INFIX[infix] = name
