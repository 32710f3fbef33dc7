"""graphdsl's benchmark suite (issue 5): the same network, initial weights, data and batches
trained in graphdsl and in its peers, timed interleaved in one process.

Run from the repository root:

    pip install ".[bench]"
    python -m bench.run            # everything, 10-15 minutes on 2 cores
    python -m bench.run --quick    # fewer steps and repetitions: a few minutes
    python -m bench.run --only W2,cold --reps 7

Workloads (bench/workloads.py): W1 XOR 2-2-1 batch 1, W2 Iris full batch, W3 digits batch 32,
W4 MNIST-size batch 128 (float64 for everyone, then float32 for everyone, plus the run's matrix
products alone by np.dot, timed in the same rotation: with C operands, the GEMM bound, and with
the operand layouts graphdsl's loop reads), W5 a convolutional network on digits batch 32
(specs/cnn_digits.nn's), `cold`: fresh
processes, empty and warm caches, and `depth`: fresh processes to the end of the first epoch of an
MLP of 2 to 16 hidden layers of one width (compile time against depth).
Peers (bench/peers.py): graphdsl `model.train()` with its loop compiled (engine="numba"; also
with BLAS on 1 or 2 threads, and, in `depth`, with the default engine, which interprets a run of
little work), PyTorch eager (os.cpu_count() threads, and 1 thread), JAX with the whole loop jitted
(lax.fori_loop), JAX with a jitted step, NumPy by hand (dense networks only).

Each repetition runs every peer once, in a rotated order (round-robin), so that a noisy machine
slows all of them alike, and each after a pause in which the last peer's idle threads stop
spinning (SETTLE_S); a table gives the median. Only training is timed: compiling or warming
up (graphdsl: the first train() of one epoch in the process, on an empty cache, i.e. code
generation and Numba compiling; JAX: lower().compile(), or the first step) is its own column.
graphdsl's helper kernels (backend/runtime/: kernels.py, step.py, vecmath.py) are compiled
once per install and cached; a priming child process compiles them first, so the column times
each spec's own loop, and the priming line gives the first-use times with the helpers included.
`vs graphdsl` is the peer's speed relative to graphdsl's (graphdsl's median time / the peer's):
above 1 the peer is faster. `final loss` is the mean loss over the whole data set at the trained
weights, in float64 NumPy; every peer must match NumPy by hand (PyTorch for W5) trained in the
same dtype (relative 1e-7 in float64; 3e-3 in float32, where a ReLU unit that flips sign in one
run and not another sends them apart), or the row says MISMATCH and the exit status is 1. `vs
graphdsl` compares with graphdsl in the same dtype.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def scratch(prefix: str) -> str:
    """A new temporary directory, removed when the run ends."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def fresh_caches() -> dict:
    """Environment for an empty graphdsl cache and an empty Numba cache (graphdsl's helper
    kernels are Numba-cached too, by default next to their source)."""
    return {"GRAPHDSL_CACHE_DIR": scratch("gdsl-bench-"), "NUMBA_CACHE_DIR": scratch("numba-bench-")}


if __name__ == "__main__" and "--child" not in sys.argv:
    os.environ.update(fresh_caches())  # before numba is imported: warm-up columns are cold compiles

import numpy as np  # noqa: E402

from bench import peers as P, workloads as W  # noqa: E402

# Every library's idle threads spin for a while after a call (OpenBLAS's for about 0.1-0.2 s
# here), taking a core from whichever peer runs next; two OpenBLAS copies share this process
# (NumPy's, and SciPy's, which graphdsl calls). np.dot's products right after graphdsl's took 1.5
# ms a step where they take 0.7. A pause before each timed run lets every pool park, so each peer
# runs with its library's defaults, as a user's program would.
SETTLE_S = 0.5


def settle() -> None:
    """The pause, spent busy on this thread: after a sleep the core starts slow, which cost W1's
    10 ms runs up to a third."""
    end = time.perf_counter() + SETTLE_S
    while time.perf_counter() < end:
        pass


DEFAULT_PEERS = {
    "W1": ["graphdsl", "torch", "jax-loop", "jax-step", "numpy"],
    "W2": ["graphdsl", "torch", "torch-1t", "jax-loop", "jax-step", "numpy"],
    "W3": ["graphdsl", "torch", "torch-1t", "jax-loop", "jax-step", "numpy"],
    "W4": ["graphdsl", "torch", "torch-1t", "jax-loop", "jax-step", "numpy"],
    "W5": ["graphdsl", "torch", "torch-1t", "jax-loop", "jax-step"],
}
F32_PEERS = ["graphdsl", "graphdsl-1t", "graphdsl-2t", "torch", "torch-1t", "jax-loop", "jax-step", "numpy"]
GEMM_LAYOUTS = {"contiguous": "C arrays (the bound)", "graphdsl": "graphdsl's: W and dZ read transposed"}


def fmt(x, digits=3) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.{digits}g} M"
    if x >= 1e3:
        return f"{x / 1e3:.{digits}g} k"
    return f"{x:.{digits}g}"


def table(title: str, unit: str, rows: list) -> str:
    """rows: dicts with peer, name, dtype, times, throughput work, warm, loss, ok."""
    bases = {r["dtype"]: r["times"] for r in rows if r["name"] == "graphdsl"}
    out = [f"### {title}", "", f"| peer | median s | {unit} | vs graphdsl | graphdsl / peer, per repetition | "
                                "compile/warm-up s | final loss |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        med, base = statistics.median(r["times"]), bases.get(r["dtype"])  # graphdsl in the same dtype
        vs = f"{statistics.median(base) / med:.3g}x" if base else "-"
        # each repetition's peer time over graphdsl's, taken seconds apart: the machine's drift cancels
        ratios = [t / b for t, b in zip(r["times"], base)] if base else []
        paired = f"{statistics.median(ratios):.3g}x [{min(ratios):.3g}-{max(ratios):.3g}]" if ratios else "-"
        loss = f"{r['loss']:.12g}" + ("" if r["ok"] else f" MISMATCH (ref {r['ref']:.12g})")
        warm = "-" if r["warm"] is None else f"{r['warm']:.3g}"
        out.append(f"| {r['peer']} | {med:.4g} | {fmt(r['work'] / med if r['work'] else None)} | {vs} | {paired} | "
                   f"{warm} | {loss} |")
    spread = ", ".join(f"{r['peer']} {min(r['times']):.3g}-{max(r['times']):.3g}" for r in rows)
    out += ["", f"runs: {len(rows[0]['times'])} each; min-max s: {spread}", ""]
    return "\n".join(out)


def bench_workload(key: str, args) -> tuple:
    wl = W.make(key, quick=args.quick)
    names = args.peers.split(",") if args.peers else DEFAULT_PEERS[key]
    entries = [(n, np.float64, None) for n in names]
    if key == "W4":
        entries += [(n, np.float32, None) for n in F32_PEERS if n in names]
        # the products alone, interleaved too, with C operands and as graphdsl lays them out
        entries += [("gemm", dt, layout) for dt in (np.float64, np.float32) for layout in GEMM_LAYOUTS]
    runners, rows = [], []
    for name, dt, layout in entries:
        make = P.Gemm if name == "gemm" else P.PEERS[name]
        label = make.name + (f", {layout}" if layout else "") + (" (float32)" if dt == np.float32 else "")
        print(f"  {key}: setting up {label}", file=sys.stderr, flush=True)
        peer = make(wl, dt, layout) if layout else make(wl, dt)
        warm = peer.warmup() if name.startswith(("graphdsl", "jax-")) else None
        runners.append(peer)
        rows.append({"peer": label, "name": name, "times": [], "work": wl.per_run, "warm": warm, "dtype": dt,
                     "layout": layout, "flops": getattr(peer, "flops", None)})
    reps = args.reps or (3 if args.quick else 5)
    for rep in range(reps):
        order = list(range(len(runners)))
        order = order[rep % len(order):] + order[:rep % len(order)]
        for i in order:
            peer = runners[i]
            if hasattr(peer, "prepare"):
                peer.prepare()
            settle()
            t = time.perf_counter()
            rows[i]["layers"] = peer.run()
            rows[i]["times"].append(time.perf_counter() - t)
        print(f"  {key}: repetition {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    products = [r for r in rows if r["name"] == "gemm"]
    rows = [r for r in rows if r["name"] != "gemm"]
    for r in rows:
        r["loss"] = wl.loss(r.pop("layers"))
    # the reference peer in the same dtype: float32 rounding changes the path training takes
    refs = {r["dtype"]: r["loss"] for r in rows if r["name"] == wl.reference}
    for r in rows:
        if r["dtype"] not in refs:
            refs[r["dtype"]] = wl.loss(P.PEERS[wl.reference](wl, r["dtype"]).run())
        # float32 runs agree to about 1e-7 until a ReLU unit lands on the other side of 0 in one of
        # them (which depends on summation order, and so on BLAS's threads); then they drift apart,
        # by up to 2.4e-3 in W4 (PyTorch's float32, and graphdsl's on one BLAS thread)
        tol = 3e-3 if r["dtype"] == np.float32 else 1e-7
        r["ref"], r["ok"] = refs[r["dtype"]], abs(r["loss"] - refs[r["dtype"]]) <= tol * abs(refs[r["dtype"]])
    text = table(wl.title, wl.unit, rows)
    if products:
        text += gemm_report(wl, rows, products)
    return text, all(r["ok"] for r in rows)


def gemm_report(wl, rows, products) -> str:
    """The matrix products alone (bench.peers.Gemm, timed in the same rotation as the peers): their
    throughput, the run time they bound, and the fraction of that bound graphdsl reaches; with C
    operands (the bound) and with the operand layouts of graphdsl's loop."""
    lines = ["GEMM (np.dot at W4's layer shapes, the run's steps of 3 forward + 3 weight-gradient + 2 "
             "input-gradient products, timed in the same rotation as the peers):", "",
             "| dtype | operands | GFLOP/s | GEMM-only samples/s | graphdsl's fraction of it |",
             "|---|---|---|---|---|"]
    graphdsl = {r["dtype"]: r["times"] for r in rows if r["name"] == "graphdsl"}
    for r in products:
        took = statistics.median(r["times"])
        # the median of each repetition's ratio: a repetition's two times were taken seconds apart
        frac = (statistics.median(p / g for p, g in zip(r["times"], graphdsl[r["dtype"]]))
                if r["dtype"] in graphdsl else None)
        lines.append(f"| {np.dtype(r['dtype']).name} | {GEMM_LAYOUTS[r['layout']]} | "
                     f"{r['flops'] / took / 1e9:.3g} | {fmt(wl.per_run / took)} | "
                     f"{'-' if frac is None else f'{100 * frac:.0f}%'} |")
    return "\n".join(lines) + "\n\n"


# -- cold start: fresh processes ------------------------------------------------------------

def prime_helpers(keys: list, args) -> str:
    """Compile graphdsl's helper kernels into this run's Numba cache, one child process per
    workload with a graphdsl cache of its own; returns a line giving the children's warm-ups."""
    env = {**os.environ, "GRAPHDSL_CACHE_DIR": scratch("gdsl-prime-")}
    quick = ["--quick"] if args.quick else []
    warm = []
    for key in keys:
        _, out = timed([sys.executable, "-m", "bench.run", "--child", key, "graphdsl", *quick], env)
        warm.append(f"{key} {json.loads(out.strip().splitlines()[-1])['warm']:.3g} s")
    return ("graphdsl's first use after installing, helper kernels compiling too (fresh processes): "
            + ", ".join(warm) + "\n")


def child(key: str, peer: str, quick: bool) -> None:
    """One fresh process: set up, warm up, train once; prints its timings as JSON. For a depth
    workload graphdsl does not warm up: its one train() compiles, as a user's first one does."""
    t0 = time.perf_counter()
    wl = W.make(key, quick=quick)
    p = P.PEERS[peer](wl)
    t1 = time.perf_counter()
    warm = 0.0 if key in DEPTHS and peer.startswith("graphdsl") else p.warmup()
    if hasattr(p, "prepare"):
        p.prepare()
    t2 = time.perf_counter()
    layers = p.run()
    t3 = time.perf_counter()
    print(json.dumps({"setup": t1 - t0, "warm": warm, "run": t3 - t2, "loss": wl.loss(layers)}))


def timed(cmd: list, env: dict) -> tuple:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


SEED_SPEC = "specs/seed000_s4_backprop.nn"
DEPTHS = ["D2", "D4", "D8", "D16"]


def bench_depth(args) -> tuple:
    """Fresh processes from start to the end of the first epoch, by depth: graphdsl on an empty
    graphdsl cache (its helper kernels compiled once before, as after a first use), its loop
    compiled (the numba engine) and as the default engine runs it; JAX as it starts."""
    base = {k: v for k, v in os.environ.items() if k not in ("GRAPHDSL_CACHE_DIR", "NUMBA_CACHE_DIR")}
    helpers = {"NUMBA_CACHE_DIR": scratch("numba-depth-")}
    run = lambda key, peer, env: timed([sys.executable, "-m", "bench.run", "--child", key, peer], env)  # noqa: E731
    run("D2", "graphdsl", {**base, **helpers, "GRAPHDSL_CACHE_DIR": scratch("gdsl-depth-")})
    keys = ["D2", "D16"] if args.quick else DEPTHS
    peers = ("graphdsl", "graphdsl-auto", "jax-loop")
    results = {}
    for rep in range(args.reps or (2 if args.quick else 3)):
        for key in keys:
            for peer in peers:
                env = {**base, **fresh_caches()} if peer == "jax-loop" else \
                    {**base, **helpers, "GRAPHDSL_CACHE_DIR": scratch("gdsl-depth-")}
                wall, out = run(key, peer, env)
                results.setdefault((key, peer), []).append((wall, json.loads(out.strip().splitlines()[-1])))
        print(f"  depth: repetition {rep + 1} done", file=sys.stderr, flush=True)
    return depth_table(args, keys, peers, results)


def depth_table(args, keys: list, peers: tuple, results: dict) -> tuple:
    med = lambda key, peer, f: statistics.median(f(w, i) for w, i in results[(key, peer)])  # noqa: E731
    whole = lambda key, peer: med(key, peer, lambda w, i: w)  # noqa: E731
    train = lambda key, peer: med(key, peer, lambda w, i: i["warm"] + i["run"])  # noqa: E731
    lines = ["### Compile time by depth: a fresh process to the end of the first epoch", "",
             "MLP 64-(64 x d)-10 tanh, softmax CE, SGD batch 32, one epoch of digits (57 steps). graphdsl: "
             "an empty graphdsl cache, its helper kernels compiled by an earlier process; `train s` is its one "
             "train() call: with the loop compiled (engine=\"numba\"), code generation and compiling included, "
             "and with the default engine, which interprets a run it estimates quicker uncompiled "
             "(docs/training.md). JAX: `train s` is lower().compile() and the epoch. Medians of the repetitions.", "",
             "| d | compiled: whole process s | compiled: train s | vs d = 2 | default engine: whole process s | "
             "default engine: train s | JAX whole process s | JAX train s | default engine / JAX (whole) | "
             "final loss (compiled, default, JAX) |", "|---|---|---|---|---|---|---|---|---|---|"]
    ok = True
    for key in keys:
        loss = [results[(key, p)][-1][1]["loss"] for p in peers]
        ok = ok and all(abs(x - loss[-1]) <= 1e-7 * abs(loss[-1]) for x in loss)
        g, a, j = peers
        lines.append(f"| {key[1:]} | {whole(key, g):.3g} | {train(key, g):.3g} | "
                     f"{train(key, g) / train(keys[0], g):.2f}x | {whole(key, a):.3g} | {train(key, a):.3g} | "
                     f"{whole(key, j):.3g} | {train(key, j):.3g} | {whole(key, a) / whole(key, j):.2f}x | "
                     f"{', '.join(f'{x:.12g}' for x in loss)} |")
    return "\n".join(lines + ["", f"runs: {args.reps or (2 if args.quick else 3)} each", ""]), ok


def bench_cold(args) -> tuple:
    py = sys.executable
    gdsl = str(Path(py).with_name("graphdsl"))
    spec = ROOT / SEED_SPEC  # the homework's forward values, gradients and its one SGD step
    base = {k: v for k, v in os.environ.items() if k not in ("GRAPHDSL_CACHE_DIR", "NUMBA_CACHE_DIR")}
    warm_env = {**base, **fresh_caches()}
    quick = ["--quick"] if args.quick else []
    w2 = lambda peer: [py, "-m", "bench.run", "--child", "W2", peer, *quick]  # noqa: E731
    cases = [
        ("python -c pass", [py, "-c", "pass"], False),
        ("seed spec: graphdsl run (numpy engine)", [gdsl, "run", str(spec)], True),
        ("seed spec: graphdsl run --engine numba", [gdsl, "run", str(spec), "--engine", "numba"], True),
        ("W2 training: graphdsl", w2("graphdsl"), True),
        ("W2 training: PyTorch eager", w2("torch"), False),
        ("W2 training: JAX jit(fori_loop)", w2("jax-loop"), False),
        ("W2 training: NumPy by hand", w2("numpy"), False),
    ]
    for _, cmd, _ in cases:  # warm the warm cache (twice: Numba writes some entries on first use)
        timed(cmd, warm_env)
        timed(cmd, warm_env)
    reps = args.reps or (3 if args.quick else 5)
    results = {}
    for rep in range(reps):
        for name, cmd, cached in cases:
            for which in (("empty cache", "warm cache") if cached else ("-",)):
                env = {**base, **fresh_caches()} if which == "empty cache" else warm_env
                wall, out = timed(cmd, env)
                info = json.loads(out.strip().splitlines()[-1]) if "--child" in cmd else {}
                results.setdefault((name, which), []).append((wall, info))
        print(f"  cold: repetition {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    unit = W.make("W2", quick=args.quick).epochs
    lines = ["### Cold start: a fresh process from start to result", "",
             f"The seed spec is {SEED_SPEC}: forward values, every gradient and its one SGD step. W2 rows "
             f"train {unit} epochs. `compile/warm-up s` is, inside the process, graphdsl's first train() "
             "(code generation + Numba compiling, or loading the cache) or JAX's lower().compile(); "
             "`train s` the training alone; `setup s` imports and data.", "",
             "| run | cache | median s (whole process) | setup s | compile/warm-up s | train s | final loss |",
             "|---|---|---|---|---|---|---|"]
    for (name, which), got in results.items():
        med = statistics.median(w for w, _ in got)
        info = [i for _, i in got if i]
        pick = lambda k: f"{statistics.median(i[k] for i in info):.3g}" if info and info[0].get(k) is not None else "-"  # noqa: E731
        loss = f"{info[-1]['loss']:.12g}" if info else "-"
        lines.append(f"| {name} | {which} | {med:.3g} | {pick('setup')} | {pick('warm')} | {pick('run')} | {loss} |")
    losses = [i["loss"] for got in results.values() for _, i in got if i]
    ok = not losses or max(losses) - min(losses) <= 1e-7 * abs(min(losses))
    lines += ["", f"runs: {reps} each" + ("" if ok else "; W2 losses DIFFER between processes"), ""]
    return "\n".join(lines), ok


def spin(cores: int) -> None:
    """`cores` processes that spin until this one ends: another user's work on a shared machine."""
    for _ in range(cores):
        atexit.register(subprocess.Popen([sys.executable, "-c", "while True: pass"]).kill)


def machine() -> str:
    import platform

    import numba
    import sklearn
    model = "?"
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Model name"))
    except Exception:
        pass
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"numba {numba.__version__}",
                f"scikit-learn {sklearn.__version__}"]
    for mod in ("torch", "jax"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} missing")
    return f"{model}, {os.cpu_count()} cores; " + ", ".join(versions)


def main() -> int:
    ap = argparse.ArgumentParser(description="graphdsl benchmark suite")
    ap.add_argument("--quick", action="store_true", help="fewer steps and repetitions (a few minutes)")
    ap.add_argument("--reps", type=int, help="repetitions per peer (default 5; 3 with --quick)")
    ap.add_argument("--only", default="W1,W2,W3,W4,W5,cold,depth", help="comma-separated: W1,W2,W3,W4,W5,cold,depth")
    ap.add_argument("--peers", help="comma-separated peer keys: " + ",".join(P.PEERS))
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="keep N cores busy with spinning processes while timing: a loaded machine")
    ap.add_argument("--child", nargs=2, metavar=("WORKLOAD", "PEER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    known = {"peer": (args.peers or "", list(P.PEERS)), "workload": (args.only, [*DEFAULT_PEERS, "cold", "depth"])}
    for what, (given, names) in known.items():
        unknown = [k for k in given.split(",") if k and k not in names]
        if unknown:
            ap.error(f"unknown {what} {', '.join(unknown)}; the {what}s are {', '.join(names)}")
    if args.child:
        child(*args.child, args.quick)
        return 0
    print(f"machine: {machine()}")
    spin(args.busy)
    print(f"command: {' '.join([Path(sys.executable).name, '-m', 'bench.run', *sys.argv[1:]])}\n")
    ok = True
    trained = [k for k in args.only.split(",") if k not in ("cold", "depth")
               and any(p.startswith("graphdsl") for p in (args.peers.split(",") if args.peers else DEFAULT_PEERS[k]))]
    if trained:
        print(prime_helpers(trained, args), flush=True)
    for key in args.only.split(","):
        if key == "cold":
            text, good = bench_cold(args)
        elif key == "depth":
            text, good = bench_depth(args)
        else:
            text, good = bench_workload(key, args)
        print(text, flush=True)
        ok = ok and good
    if not ok:
        print("FAILED: some final losses do not match (see MISMATCH)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
