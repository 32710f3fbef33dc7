"""graphdsl in editors and docs: a Pygments lexer for `.nn` text (`lexer`) and the language server
`graphdsl lsp` (`server`), which answers from the front end's analysis of a spec (`analysis`,
`describe`); `vocabulary` holds the words of the language both read, taken from the grammar and
the op registry."""
