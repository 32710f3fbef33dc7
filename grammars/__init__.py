"""The graphdsl grammar, installed as the package graphdsl.grammars."""
