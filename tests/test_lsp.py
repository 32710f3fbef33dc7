"""`graphdsl lsp`, driven over stdio as an editor drives it (pytest-lsp, with VS Code's client
capabilities): diagnostics appear and clear as a spec is edited, with the command line's messages;
hover, completion, go to definition and the outline; a spec with broken syntax; a spec of 300 lines.
Then the analysis behind it: statement by statement, it must parse and report what parsing the whole
spec does, and it never brings in Numba."""
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_lsp
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from graphdsl.cli import main
from graphdsl.editor.analysis import analyse
from graphdsl.errors import SpecError
from graphdsl.frontend.lower import lower
from graphdsl.frontend.parser import parse

ROOT = Path(__file__).resolve().parents[1]
SERVER = [sys.executable, "-c", "from graphdsl.cli import main; main()", "lsp"]
# the 300-line spec bench/lsp_latency.py times, loaded from its file (bench/ is not installed)
BENCH = importlib.util.spec_from_file_location("lsp_latency", ROOT / "bench" / "lsp_latency.py")
LATENCY = importlib.util.module_from_spec(BENCH)
BENCH.loader.exec_module(LATENCY)
on_the_server = pytest.mark.asyncio(loop_scope="module")

# The README's worked example, and the error docs/language.md prints for it with W_h [2, 3].
NET = """input  x[2] = [0, 1]
target y = 1
param W_h = [[2.5, 1], [-1.5, -3]]
param b_h = [1.5, 2]
param W_o = [1, 0.5]
param b_o = -1

z_h   = W_h x + b_h
h     = sigmoid(z_h)
z_o   = W_o h + b_o
y_hat = sigmoid(z_o)
L     = bce(y_hat, y)

show z_h, h, z_o, y_hat, L
grad L wrt W_h, b_h, W_o, b_o, z_h, z_o, y_hat
"""
WRONG = NET.replace("param W_h = [[2.5, 1], [-1.5, -3]]", "param W_h[2, 3] = xavier(seed=0)")
MLP = """setting hidden = [4, 3]
input x[2] = [1, 2]
target k = 1
a = x
for n in hidden
    param W[n, size(a)] = xavier()
    param b[n] = zeros()
    a = sigmoid(W a + b)
end
param V[2, size(a)] = xavier()
z = V a
L = softmax_ce(z, k)
minimize L using sgd(lr=0.1), epochs=2
"""
MESSAGE = ("cannot multiply `W_h` ([2, 3]) and `x` ([2]): the matrix [2, 3] has 3 columns but the vector [2] "
           "has 2 entries")


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
    yield
    await lsp_client.shutdown_session()


async def diagnostics(client: LanguageClient, uri: str) -> list:
    """The next diagnostics the server sends for `uri`."""
    while True:
        params = await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        if params.uri == uri:
            return list(params.diagnostics)


async def opened(client: LanguageClient, name: str, text: str) -> tuple:
    """(the uri, its first diagnostics) of a spec opened in the editor."""
    uri = f"file:///specs/{name}"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="graphdsl", version=1, text=text)))
    return uri, await diagnostics(client, uri)


async def edited(client: LanguageClient, uri: str, version: int, text: str) -> list:
    """The diagnostics after the editor replaces the whole text."""
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
    return await diagnostics(client, uri)


def at(text: str, line_text: str, word: str, nth: int = 0) -> types.Position:
    """The position of the `nth` `word` on the first line that starts with `line_text`."""
    lines = text.split("\n")
    line = next(i for i, content in enumerate(lines) if content.startswith(line_text))
    col = -1
    for _ in range(nth + 1):
        col = lines[line].index(word, col + 1)
    return types.Position(line, col)


async def hovered(client: LanguageClient, uri: str, position: types.Position) -> str:
    found = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), position))
    return found.contents.value if found else ""


async def completed(client: LanguageClient, uri: str, position: types.Position) -> dict:
    found = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(uri), position))
    return {item.label: item.kind for item in found.items}


@on_the_server
async def test_diagnostics_appear_with_the_command_lines_message_and_clear(client: LanguageClient):
    uri, found = await opened(client, "net.nn", WRONG)
    product = at(WRONG, "z_h", "W_h x")
    end = types.Position(product.line, product.character + len("W_h x"))
    assert [(d.message, d.severity, d.range) for d in found] == [
        (MESSAGE, types.DiagnosticSeverity.Error, types.Range(product, end))]
    assert await edited(client, uri, 2, NET) == []
    warned = await edited(client, uri, 3, NET + "p = W_h * x\n")
    assert [d.severity for d in warned] == [types.DiagnosticSeverity.Warning]
    assert warned[0].message.startswith("`W_h` ([2, 2]) * `x` ([2]) multiplies entry by entry")
    assert warned[0].range.start == types.Position(NET.count("\n"), 4)
    assert await edited(client, uri, 4, NET) == []


@on_the_server
async def test_a_hint_follows_the_message(client: LanguageClient):
    # tests/golden/call_a_value.err holds what `graphdsl run` prints for this spec
    golden = (ROOT / "tests" / "golden" / "call_a_value.err").read_text(encoding="utf-8").splitlines()
    head, hint = golden[0], golden[-1]
    _, found = await opened(client, "call.nn", (ROOT / "tests" / "golden" / "call_a_value.nn").read_text())
    line, col = (int(n) for n in head.split(":")[1:3])
    assert found[0].message == head.split(": error: ", 1)[1] + "\n" + hint.strip()
    assert found[0].range.start == types.Position(line - 1, col - 1)


@on_the_server
async def test_positions_are_in_the_editors_units(client: LanguageClient):
    text = 'data "\U0001F600.csv", x\n'  # an emoji is one character but two UTF-16 code units, as VS Code counts
    _, found = await opened(client, "emoji.nn", text)
    before = text[:text.index(", x") + 2]
    assert [(d.message.split("\n")[0], d.range.start) for d in found] == [
        ("unexpected name `x`", types.Position(0, len(before.encode("utf-16-le")) // 2))]


@on_the_server
async def test_hover_gives_kind_shape_and_an_ops_derivative(client: LanguageClient):
    uri, _ = await opened(client, "hover.nn", NET)
    param = await hovered(client, uri, at(NET, "z_h", "W_h"))
    assert "param `W_h` [2, 2]" in param and "param W_h = [[2.5, 1], [-1.5, -3]]" in param
    assert "`z_h` [2]" in await hovered(client, uri, at(NET, "h ", "z_h"))
    sigmoid = await hovered(client, uri, at(NET, "h ", "sigmoid"))
    # d sigmoid(x)/dx = sigmoid(x) (1 - sigmoid(x)): the rule as autodiff applies it to the gradient g of y
    assert "dL/dx = g * y * (1 - y), where g = dL/dy and y = sigmoid(x)" in sigmoid
    assert "`reduce`" in await hovered(client, uri, at(NET, "L ", "bce"))
    assert await hovered(client, uri, types.Position(0, 0)) == ""  # a keyword: nothing to say


@on_the_server
async def test_completion_offers_names_functions_and_settings(client: LanguageClient):
    text = NET + "q = sig\nr = sum(h, \ns = mse(h, y, reduce=\nminimize L using \n"
    uri, _ = await opened(client, "complete.nn", text)
    end = text.count("\n")
    names = await completed(client, uri, types.Position(end - 4, 7))
    assert names["sigmoid"] == types.CompletionItemKind.Function
    assert names["xavier"] == types.CompletionItemKind.Function
    assert names["W_h"] == names["z_h"] == types.CompletionItemKind.Variable
    assert "axis" in await completed(client, uri, types.Position(end - 3, 11))
    assert set(await completed(client, uri, types.Position(end - 2, 21))) == {"mean", "sum"}
    assert {"sgd", "adam"} <= set(await completed(client, uri, types.Position(end - 1, 17)))
    assert "input" in await completed(client, uri, types.Position(end, 0))


@on_the_server
async def test_go_to_definition(client: LanguageClient):
    uri, _ = await opened(client, "definition.nn", NET)
    found = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(uri), at(NET, "h ", "z_h")))
    defined = at(NET, "z_h", "z_h")
    assert [(f.uri, f.range) for f in found] == [
        (uri, types.Range(defined, types.Position(defined.line, defined.character + 3)))]


@on_the_server
async def test_the_outline_lists_definitions_blocks_and_training(client: LanguageClient):
    uri, _ = await opened(client, "mlp.nn", MLP)
    found = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(types.TextDocumentIdentifier(uri)))
    assert [(s.name, s.detail) for s in found] == [
        ("hidden", "setting"), ("x", "input [2]"), ("k", "target scalar"), ("a", "computed [2]"),
        ("for n in hidden", None), ("V", "param [2, 3]"), ("z", "computed [2]"), ("L", "computed scalar"),
        ("minimize L", "sgd")]
    assert [(s.name, s.detail) for s in found[4].children] == [  # one shape for each pass of the block
        ("n", "loop variable"), ("W", "param [4, 2], [3, 4]"), ("b", "param [4], [3]"), ("a", "computed [4], [3]")]
    assert "loop variable over `hidden`, taking each of [4, 3]" in await hovered(client, uri, at(MLP, "for", "n"))


@on_the_server
async def test_a_spec_with_broken_syntax_keeps_hover_and_outline(client: LanguageClient):
    broken = NET.replace("h     = sigmoid(z_h)", "h     = sigmoid(z_h")
    uri, found = await opened(client, "broken.nn", broken)
    assert [d.message.split("\n")[0] for d in found] == ["`(` is never closed"]
    assert found[0].range.start.line == at(broken, "h ", "h").line
    assert "param `W_o` [2]" in await hovered(client, uri, at(broken, "z_o", "W_o"))
    assert "`z_h` [2]" in await hovered(client, uri, at(broken, "z_h", "z_h"))
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(types.TextDocumentIdentifier(uri)))
    assert [s.name for s in symbols] == ["x", "y", "W_h", "b_h", "W_o", "b_o", "z_h", "z_o", "y_hat", "L"]


@on_the_server
async def test_a_300_line_spec(client: LanguageClient):
    text = LATENCY.long_spec(300)
    assert text.count("\n") == 300
    uri, found = await opened(client, "deep.nn", text)
    assert found == []
    lines = text.split("\n")
    changed = lines[:150] + ["z_new = W3 h2 + b"] + lines[150:]  # b: an unknown name
    began = time.perf_counter()
    found = await edited(client, uri, 2, "\n".join(changed))
    took = time.perf_counter() - began
    assert [(d.message.split("\n")[0], d.range.start) for d in found] == [
        ("unknown name `b`", types.Position(150, 16))]
    assert "param `W70` [8, 8]" in await hovered(client, uri, at("\n".join(changed), "param W70", "W70"))
    assert took < 5  # a sanity bound only: bench/lsp_latency.py times it (about 20 ms a keystroke)


def test_without_pygls_the_command_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)  # as if pygls were not installed
    monkeypatch.delitem(sys.modules, "graphdsl.editor.server", raising=False)
    done = CliRunner().invoke(main, ["lsp"])
    assert done.exit_code == 2
    assert 'pip install "graphdsl[lsp]"' in done.output and "Traceback" not in done.output


def test_the_analysis_compiles_nothing():
    script = ("import sys\nfrom graphdsl.editor.analysis import analyse\n"
              f"found = analyse(open({str(ROOT / 'specs' / 'mlp.nn')!r}).read())\n"
              "assert found.spec is not None and not found.problems\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numba'))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def whole(text: str) -> tuple:
    """(the statements, or None, and str() of the first SpecError, or None) parsing and lowering the
    whole text at once, as the command line does."""
    try:
        program = parse(text, "fuzz.nn")
    except SpecError as err:
        return None, str(err)
    try:
        lower(program, text, "fuzz.nn")
    except SpecError as err:
        return program.statements, str(err)
    return program.statements, None


SEEDS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "specs").glob("*.nn"))]
PIECES = ["(", ")", "[", "]", "\\\n", "\n", "\r\n", "#", '"', '"(#"', "for n in h\n", "end\n", " x", "= 1", ",", ":",
          "sigmoid(", "'"]


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.floats(0, 1), st.sampled_from(PIECES)), max_size=3))
def test_statement_by_statement_is_parsing_the_whole_spec(seed, edits):
    text = seed
    for where, piece in edits:
        cut = int(where * len(text))
        text = text[:cut] + piece + text[cut:]
    statements, error = whole(text)
    found = analyse(text, "fuzz.nn")
    if statements is not None:
        assert list(found.statements) == statements
    assert (str(found.problems[0]) if found.problems and isinstance(found.problems[0], SpecError) else None) == error


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "golden").glob("*.nn")), ids=lambda p: p.stem)
def test_the_analysis_reports_what_the_command_line_prints(path):
    found = analyse(path.read_text(encoding="utf-8"), path.name)
    assert str(found.problems[0]) + "\n" == path.with_suffix(".err").read_text(encoding="utf-8")
