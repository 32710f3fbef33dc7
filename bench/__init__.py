"""graphdsl benchmark suite: python -m bench.run (see bench/run.py)."""
