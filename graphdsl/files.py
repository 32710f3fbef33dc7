"""Files replaced atomically: a reader, or a crash at any moment, finds the old complete
file or the new complete one, never half of either. And appended files cut back to whole lines."""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def replace_atomically(path, write) -> None:
    """Call write(binary file) on a temp file beside `path`, fsync it, then os.replace it over
    `path`. The temp file (`.tmp-<name>.<random>`) sits in the same directory, so the replace
    is a rename on one filesystem; `open(..., "x")` rather than mkstemp gives it the usual
    umask permissions, not 0600. An OSError propagates, and no temp file stays behind."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cut_torn_line(path) -> None:
    """Truncate a file appended to line by line after its last newline: a process killed in
    the middle of an append can leave a line without one."""
    with open(path, "rb+") as f:
        text = f.read()
        f.truncate(text.rfind(b"\n") + 1)


def cache_dir() -> Path:
    """GRAPHDSL_CACHE_DIR, else the user's cache directory for graphdsl."""
    env = os.environ.get("GRAPHDSL_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("graphdsl"))
