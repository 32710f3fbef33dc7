"""How fast `graphdsl lsp` answers an editor on a 300-line spec (issue 22: within a tenth of a
second of a keystroke, without compiling anything).

Run from the repository root (`pip install ".[lsp]"` first):

    python -m bench.lsp_latency                 # 300 lines, one new line typed key by key
    python -m bench.lsp_latency --lines 600

The server runs as an editor starts it, `graphdsl lsp` over stdin and stdout, driven by pygls's
client. The spec (`long_spec`) is a deep network, a layer every four lines. A new line is typed
into its middle one key at a time; after each keystroke the time until the diagnostics for that
text arrive is taken (most of the texts typed on the way are broken: the recovery from a syntax
error is timed with the rest), then a hover and a completion on the new line. The time to open
the spec is given apart: it is the first analysis in a fresh process. Then the front end alone,
in this process: parse and lower (the analysis's two stages), for the breakdown.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from lsprotocol import types
from pygls.lsp.client import LanguageClient

URI = "file:///bench/deep.nn"
TYPED = "h_new = tanh(W3 h2 + b3) * 2"   # typed into the middle of the spec, key by key
SERVER = [sys.executable, "-c", "from graphdsl.cli import main; main()", "lsp"]


def long_spec(lines: int = 300, width: int = 8) -> str:
    """A spec of `lines` lines: a deep tanh network, one layer (W, b, z, h) every four lines."""
    head = ["# a deep network, one layer every four lines", f"input x[{width}] = 0.5", "target y = 1"]
    tail = ["y_hat = sigmoid(sum(h{last}))", "L = bce(y_hat, y)", "grad L wrt W0, b0, x"]
    body = []
    for k in range((lines - len(head) - len(tail)) // 4):
        body += [f"param W{k}[{width}, {width}] = xavier(seed={k})", f"param b{k}[{width}] = zeros()",
                 f"z{k} = W{k} {f'h{k - 1}' if k else 'x'} + b{k}", f"h{k} = tanh(z{k})"]
    tail[0] = tail[0].format(last=len(body) // 4 - 1)
    padding = ["# (end)"] * (lines - len(head) - len(body) - len(tail))
    return "\n".join(head + body + tail + padding) + "\n"


class Timed:
    """The client's side: when each version's diagnostics arrived."""

    def __init__(self, client: LanguageClient):
        self.arrived: dict = {}
        self.waiting: dict = {}

        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: types.PublishDiagnosticsParams) -> None:
            self.arrived[params.version] = (time.perf_counter(), params.diagnostics)
            for version in [v for v in self.waiting if v <= params.version]:
                self.waiting.pop(version).set_result(params.diagnostics)

    def diagnostics(self, version: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting[version] = future
        return future


async def typed(client: LanguageClient, timed: Timed, line: int) -> dict:
    """Type TYPED as a new line at `line`, key by key: seconds per keystroke for diagnostics, hover
    and completion."""
    took = {"diagnostics": [], "hover": [], "completion": []}
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(line, 0), types.Position(line, 0)), text="\n")]))
    await timed.diagnostics(2)
    here = types.TextDocumentIdentifier(uri=URI)
    for i, key in enumerate(TYPED):
        version = 3 + i
        start = time.perf_counter()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(line, i), types.Position(line, i)), text=key)]))
        await timed.diagnostics(version)
        took["diagnostics"].append(time.perf_counter() - start)
        start = time.perf_counter()
        await client.text_document_hover_async(types.HoverParams(here, types.Position(line, 0)))
        took["hover"].append(time.perf_counter() - start)
        start = time.perf_counter()
        await client.text_document_completion_async(types.CompletionParams(here, types.Position(line, i + 1)))
        took["completion"].append(time.perf_counter() - start)
    return took


async def session(lines: int) -> tuple:
    """(seconds to the first diagnostics, the per-keystroke times, the final diagnostics)."""
    client = LanguageClient("lsp-latency", "1")
    timed = Timed(client)
    await client.start_io(*SERVER)
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    start = time.perf_counter()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=URI, language_id="graphdsl", version=1, text=long_spec(lines))))
    await timed.diagnostics(1)
    opened = time.perf_counter() - start
    took = await typed(client, timed, lines // 2)
    final = timed.arrived[max(timed.arrived)][1]
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return opened, took, final


def front_end(lines: int, reps: int = 7) -> dict:
    """Median seconds of the analysis's stages, parse and lower, in this process."""
    from graphdsl.frontend.lower import lower
    from graphdsl.frontend.parser import parse

    text, times = long_spec(lines), {"parse": [], "lower": []}
    for _ in range(reps):
        start = time.perf_counter()
        program = parse(text)
        middle = time.perf_counter()
        lower(program, text)
        times["parse"].append(middle - start)
        times["lower"].append(time.perf_counter() - middle)
    return {k: statistics.median(v) for k, v in times.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main(argv=None) -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--lines", type=int, default=300, help="lines of the spec (default 300)")
    lines = args.parse_args(argv).lines
    opened, took, final = asyncio.run(session(lines))
    print(f"graphdsl lsp on a {lines}-line spec, {len(TYPED)} keystrokes typing `{TYPED}`")
    print(f"open (first analysis):  {ms(opened)}")
    print(f"{'per keystroke':22}  {'median':>10}  {'p90':>10}  {'max':>10}")
    for what, times in took.items():
        ordered = sorted(times)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        print(f"{what:22}  {ms(statistics.median(times)):>10}  {ms(p90):>10}  {ms(max(times)):>10}")
    stages = front_end(lines)
    print("front end alone, median: " + ", ".join(f"{k} {ms(v).strip()}" for k, v in stages.items()))
    if final:  # the finished line is a correct statement: its diagnostics must be clear
        print(f"unexpected problems at the end: {[d.message for d in final]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
