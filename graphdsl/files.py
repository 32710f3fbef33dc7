"""graphdsl's files: replaced atomically (a reader, or a crash at any moment, finds the old complete
file or the new complete one, never half of either), appended files cut back to whole lines, output
files locked while a run writes them, and the private cache directory of generated code."""
from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
import uuid
from functools import lru_cache
from pathlib import Path

from graphdsl.errors import DataError

try:
    import fcntl
except ImportError:  # Windows has no flock: output files go unlocked there
    fcntl = None

TMP = ".tmp-"


def replace_atomically(path, write) -> None:
    """Call write(binary file) on a temp file beside `path`, fsync it, then os.replace it over
    `path`. The temp file (`.tmp-<name>.<pid>.<random>`) sits in the same directory, so the replace
    is a rename on one filesystem; `open(..., "x")` rather than mkstemp gives it the usual
    umask permissions, not 0600. An OSError propagates, and no temp file stays behind; one that a
    killed writer left is removed by the next write of the same file."""
    path = Path(path)
    remove_stale_temps(path)
    tmp = path.with_name(f"{TMP}{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files of `path` whose writer process is gone (killed mid-write: SIGKILL runs
    no cleanup). Those of a live process, this one included, are being written. A pid reused since
    keeps its file until a later write; a writer on another machine sharing the directory looks
    gone, so two machines must not write one file."""
    prefix = f"{TMP}{path.name}."
    try:
        entries = [e.name for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return  # the write itself reports an unusable directory
    for name in entries:
        pid, _, token = name[len(prefix):].partition(".")
        if pid.isdigit() and len(token) == 32 and token.isalnum() and not alive(int(pid)):
            (path.parent / name).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (this process does)."""
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill would end the process: keep its file
        return True
    try:
        os.kill(pid, 0)  # signal 0 checks that the process exists, and sends nothing
    except (ProcessLookupError, OverflowError):  # no such process, or no pid at all
        return False
    except OSError:  # another user's process: keep its file
        return True
    return True


def cut_torn_line(path) -> None:
    """Truncate a file appended to line by line after its last newline: a process killed in
    the middle of an append can leave a line without one."""
    with open(path, "rb+") as f:
        text = f.read()
        f.truncate(text.rfind(b"\n") + 1)


def locked_for_writing(path):
    """An open handle on `path` (created if missing, its contents untouched) holding an exclusive
    lock until it is closed; a DataError if another process holds one. A run locks its output files
    before writing a byte, so a second run writing the same file is refused instead of interleaving
    rows with the first. The lock is the operating system's (flock), so it ends with the process,
    even a killed one, and never goes stale."""
    try:
        handle = open(path, "ab")
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or err}") from None
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataError(f"cannot write {path}: another graphdsl run is writing it (or this run names it "
                        "twice); wait for that run to finish, or write to another file") from None
    except OSError:  # a filesystem that keeps no locks (some network mounts): write unlocked, not refuse
        pass
    return handle


# -- the cache ---------------------------------------------------------------------------------

_warned: set = set()


def warn_once(kind: str, message: str) -> None:
    """One line on stderr per kind of cache trouble and process: a fault is worth one mention."""
    if kind not in _warned:
        _warned.add(kind)
        print(f"graphdsl: warning: {message}", file=sys.stderr, flush=True)


def exposure(path) -> str | None:
    """Why another user could have written `path`, a cache directory or a file in one, or None. It
    must belong to this user (or root) and be writable by no group or others; a file may be, in a
    directory no one else may enter (as graphdsl makes its own: 0700), since no one else reaches it.
    The directories above are not checked: keep a cache where only you can rename it (a sticky
    directory such as /tmp will do)."""
    if not hasattr(os, "geteuid"):  # Windows keeps no POSIX owners and modes
        return None
    path = Path(path)
    st = os.stat(path)
    if st.st_uid not in (os.geteuid(), 0):
        return f"{path} belongs to another user"
    if st.st_mode & 0o022 and (stat.S_ISDIR(st.st_mode) or os.stat(path.parent).st_mode & 0o011):
        return f"other users may write {path} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def configured_cache_dir() -> Path:
    """GRAPHDSL_CACHE_DIR, else the user's cache directory for graphdsl."""
    env = os.environ.get("GRAPHDSL_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("graphdsl"))


def cache_dir() -> Path:
    """Where generated modules and their compiled code live: the configured directory, created
    0700. graphdsl runs the code there, so a directory another user could have written into
    (`exposure`) is not used, nor one that cannot be created: a private temporary directory stands
    in, with one warning."""
    path = configured_cache_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        why = exposure(path)
    except OSError as err:
        return stand_in(path, err)
    if why is None:
        return path
    warn_once("cache", f"not using the cache {path}: {why}, so the code in it could be someone else's; "
                       "compiling into a private temporary directory instead (make the cache yours alone "
                       f"with `chmod 700 {path}`, or set GRAPHDSL_CACHE_DIR to a directory of your own)")
    return fallback_dir()


def stand_in(path: Path, err: OSError) -> Path:
    """The private temporary directory standing in for a cache that cannot be written, with one warning."""
    warn_once("cache", f"cannot write the cache {path} ({err.strerror or err}); "
                       "compiling into a temporary directory instead (set GRAPHDSL_CACHE_DIR to change it)")
    return fallback_dir()


@lru_cache(maxsize=1)
def fallback_dir() -> Path:
    """A private directory for this process when the cache cannot be used. mkdtemp makes it
    0700 and new, so no other user can plant a module in it; it goes when the process ends."""
    path = Path(tempfile.mkdtemp(prefix="graphdsl-cache-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
