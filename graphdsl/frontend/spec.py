"""The front end's product: a checked spec (its graph, what each name is, what it asks for), which
the rest of graphdsl reads."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphdsl.errors import Span
from graphdsl.ir.graph import Graph
from graphdsl.training.config import Training


@dataclass(frozen=True)
class Request:
    """Something the spec asks to see: `show`, `grad ... wrt`, or `jacobian ... wrt`."""

    kind: str
    names: tuple          # show: the names; grad: the wrt names; jacobian: (of, wrt)
    loss: str | None = None
    at: np.ndarray | None = None
    span: Span | None = None


@dataclass
class Spec:
    """A checked spec: its graph, what each name is, and what it asks for."""

    graph: Graph
    kinds: dict                      # name -> input | target | param | const | node
    made_by: dict                    # name -> the declaration kind, function or op that made it
    requests: list = field(default_factory=list)
    filename: str = "<spec>"
    text: str = ""                   # the spec as written
    settings: dict = field(default_factory=dict)   # name -> value, after `--set`
    training: Training | None = None
    warnings: list = field(default_factory=list)   # SpecWarnings: legal, but most likely not meant
    # what models build from this spec, by key (kernels, training plans and loops): built once,
    # shared by every model of the spec
    programs: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def loss(self) -> str | None:
        """The loss the first `grad` statement names, else the one `minimize` trains."""
        named = next((r.loss for r in self.requests if r.kind == "grad"), None)
        return named or (self.training.loss if self.training is not None else None)

    def names_of(self, *kinds) -> list:
        return [n for n, k in self.kinds.items() if k in kinds]
