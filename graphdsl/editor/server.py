"""`graphdsl lsp`: the language server editors start for `.nn` files, speaking the Language Server
Protocol over stdin and stdout (pygls). It answers from the front end alone (analysis.py: parse,
lower, check; nothing is compiled): diagnostics as the user types, with the command line's
messages, hover, completion, go to definition and the outline (describe.py).

A document is analysed in a worker thread, so that the server goes on reading the editor's
messages meanwhile; keystrokes that arrive during one analysis are analysed together, as the text
they leave, and every request waits for the analysis of the text it is about.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from graphdsl.editor import describe
from graphdsl.editor.analysis import Analysis, Statements, analyse
from graphdsl.errors import SpecError, SpecWarning
from graphdsl.version import __version__

log = logging.getLogger(__name__)

SYMBOL_KINDS = {"input": types.SymbolKind.Variable, "target": types.SymbolKind.Variable,
                "param": types.SymbolKind.Field, "const": types.SymbolKind.Constant,
                "setting": types.SymbolKind.Constant, "computed": types.SymbolKind.Variable,
                "loop variable": types.SymbolKind.Variable, "block": types.SymbolKind.Namespace,
                "training": types.SymbolKind.Event}
ITEM_KINDS = {"variable": types.CompletionItemKind.Variable, "constant": types.CompletionItemKind.Constant,
              "function": types.CompletionItemKind.Function, "keyword": types.CompletionItemKind.Keyword,
              "setting": types.CompletionItemKind.Property, "value": types.CompletionItemKind.Value}


def analysed(text: str, filename: str, statements: Statements) -> Analysis:
    """The analysis of a text; a bug in graphdsl is reported on the spec instead of ending the server."""
    try:
        return analyse(text, filename, statements)
    except Exception as err:
        log.exception("analysing %s", filename)
        problem = SpecError(f"graphdsl could not check this spec: internal error ({type(err).__name__}: {err}). "
                            "This is a bug in graphdsl; please report it with your spec.")
        return Analysis(text, (problem,), (), None)


class Analyses:
    """Each open document's latest analysis, made one at a time in a worker thread."""

    def __init__(self, server: LanguageServer):
        self.server = server
        self.done: dict = {}       # uri -> the Analysis of the text last analysed
        self.running: dict = {}    # uri -> the future of the analysis being made
        self.published: dict = {}  # uri -> the Analysis whose problems the editor has
        self.statements: dict = {}  # uri -> its statements, parsed (analysis.Statements)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphdsl-analysis")

    def start(self, uri: str, doc: TextDocument) -> asyncio.Future:
        kept = self.statements.setdefault(uri, Statements())
        future = asyncio.get_running_loop().run_in_executor(self.worker, analysed, doc.source, doc.path or uri, kept)

        def finished(done: asyncio.Future) -> None:  # runs before any request awaiting it resumes
            if self.running.get(uri) is done:
                del self.running[uri]
            self.done[uri] = done.result()
        future.add_done_callback(finished)
        self.running[uri] = future
        return future

    async def latest(self, uri: str) -> tuple:
        """(the document, the analysis of its text as it is now)."""
        while True:
            doc = self.server.workspace.get_text_document(uri)
            found = self.done.get(uri)
            if found is not None and found.text == doc.source:
                return doc, found
            await (self.running.get(uri) or self.start(uri, doc))

    async def publish(self, uri: str) -> None:
        """Send the document's problems, once per analysis; a closed document's are cleared."""
        doc, found = await self.latest(uri)
        if uri not in self.server.workspace.text_documents or self.published.get(uri) is found:
            return
        self.published[uri] = found
        self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, version=doc.version, diagnostics=[diagnostic(doc, found.lines, p) for p in found.problems]))

    def close(self, uri: str) -> None:
        for kept in (self.done, self.published, self.statements):
            kept.pop(uri, None)
        self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def editor_range(doc: TextDocument, lines: list, span) -> types.Range:
    """A span of the spec (lines from 1, columns in characters from 1) in the editor's units."""
    if span is None:
        return types.Range(types.Position(0, 0), types.Position(0, 0))
    start, end = types.Position(span.line - 1, span.col - 1), types.Position(span.end_line - 1, span.end_col - 1)
    return doc.position_codec.range_to_client_units(lines, types.Range(start, end))


def diagnostic(doc: TextDocument, lines: list, problem) -> types.Diagnostic:
    """A SpecError or SpecWarning as the editor shows it: the command line's message and hint."""
    severity = types.DiagnosticSeverity.Warning if isinstance(problem, SpecWarning) else types.DiagnosticSeverity.Error
    message = problem.message + (f"\nhint: {problem.hint}" if problem.hint else "")
    return types.Diagnostic(range=editor_range(doc, lines, problem.span), message=message, severity=severity,
                            source="graphdsl")


server = LanguageServer("graphdsl", __version__)
analyses = Analyses(server)


async def position_of(uri: str, position: types.Position) -> tuple:
    """(the document, its analysis, the position as the spec counts: line from 1, column from 0)."""
    doc, found = await analyses.latest(uri)
    at = doc.position_codec.position_from_client_units(found.lines, position)
    return doc, found, at.line + 1, at.character


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def changed(ls: LanguageServer, params) -> None:
    await analyses.publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    analyses.close(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: LanguageServer, params: types.HoverParams) -> types.Hover | None:
    doc, found, line, col = await position_of(params.text_document.uri, params.position)
    said = describe.hover(found, line, col)
    if said is None:
        return None
    text, (start, end) = said
    where = doc.position_codec.range_to_client_units(
        found.lines, types.Range(types.Position(line - 1, start), types.Position(line - 1, end)))
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text), range=where)


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["(", ",", "="]))
async def completion(ls: LanguageServer, params: types.CompletionParams) -> types.CompletionList:
    _, found, line, col = await position_of(params.text_document.uri, params.position)
    items = [types.CompletionItem(label=i.label, kind=ITEM_KINDS[i.kind], detail=i.detail or None,
                                  insert_text=i.insert)
             for i in describe.completions(found, line, col)]
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
async def definition(ls: LanguageServer, params: types.DefinitionParams) -> list:
    doc, found, line, col = await position_of(params.text_document.uri, params.position)
    at = describe.word_at(found.line(line), col)
    defined = found.definitions.get(at[0], []) if at else []
    return [types.Location(uri=doc.uri, range=editor_range(doc, found.lines, d.ident.span)) for d in defined]


def document_symbol(doc: TextDocument, lines: list, symbol: describe.Symbol) -> types.DocumentSymbol:
    return types.DocumentSymbol(
        name=symbol.name, kind=SYMBOL_KINDS[symbol.kind], detail=symbol.detail or None,
        range=editor_range(doc, lines, symbol.span), selection_range=editor_range(doc, lines, symbol.selection),
        children=[document_symbol(doc, lines, child) for child in symbol.children] or None)


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def document_symbols(ls: LanguageServer, params: types.DocumentSymbolParams) -> list:
    doc, found = await analyses.latest(params.text_document.uri)
    return [document_symbol(doc, found.lines, symbol) for symbol in describe.outline(found)]


def serve() -> None:
    """Serve one editor on stdin and stdout until it shuts the server down."""
    server.start_io()
