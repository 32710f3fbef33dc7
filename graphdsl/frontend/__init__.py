"""The front end: spec text to a checked Spec (parser, AST, expansion, lowering, `minimize`)."""
