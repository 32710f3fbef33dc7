"""graphdsl's files: replaced atomically (a reader, or a crash at any moment, finds the old complete
file or the new complete one, never half of either), a run's outputs checked against its inputs and
each other before it starts, output files locked while a run writes them, and the private cache
directory of generated code."""
from __future__ import annotations

import atexit
import errno
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
    killed writer left is removed by the next write of the same file. A symbolic link is followed,
    so the file it names is replaced and the link kept; a device or FIFO is never replaced."""
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "it is not a regular file (writing replaces the file, and this is a "
                                    "device, FIFO, socket or directory)")
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


def read_regular(path) -> bytes:
    """The bytes of a regular file. Anything else is an OSError, before a byte is read: a FIFO would
    block until some other process writes to it, and a device such as /dev/zero never ends. The file
    is opened without blocking (O_NONBLOCK, which a regular file ignores), then looked at."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file (a FIFO, device or socket)")
        return f.read()


def same_file(a, b) -> bool:
    """Whether two paths name one file: the same path once links and `..` are resolved, or, for
    files that exist, the same file however reached (a hard link, a case-insensitive name)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): the paths differ, so the files will
        return False


def path_argument(name: str, value) -> None:
    """A Python argument naming a file must be a str or a path: open() would take an int as a file
    descriptor, and closing it afterwards would close the process's stdout."""
    if not isinstance(value, (str, os.PathLike)):
        raise DataError(f"{name} is the path of a file, not {value!r}")


def check_outputs(inputs: list, outputs: list, may_share: tuple = ()) -> None:
    """Refuse a run's outputs before it starts: one that names an input or another output (a run
    would overwrite the file it reads, or write two things to one file), that is not a regular file
    (a device or FIFO), or whose folder does not exist. `inputs` are (what it is, path) pairs and
    `outputs` (option, path) pairs, None paths skipped; `may_share` holds the (option, what) pairs
    that may name one file, as --checkpoint and --resume's file do to go on with a run."""
    inputs = [(what, path) for what, path in inputs if path is not None]
    outputs = [(flag, path) for flag, path in outputs if path is not None]
    for k, (flag, path) in enumerate(outputs):
        for what, given in inputs:
            if (flag, what) not in may_share and same_file(path, given):
                raise DataError(f"{flag} {path} is {what} ({given}): the run would overwrite what it reads; "
                                "write to another file")
        for other, given in outputs[:k]:
            if same_file(path, given):
                raise DataError(f"{flag} {path} is also the file of {other} ({given}): the run would write both "
                                "into it; give each its own file")
        if os.path.exists(path) and not os.path.isfile(path):
            raise DataError(f"{flag} {path} is not a regular file (a device, FIFO or folder): write to a file")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise DataError(f"{flag} {path}: the folder {folder} does not exist")


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
    fallback = fallback_dir()  # first: without one either, the error says so, not the warning
    warn_once("cache", f"cannot write the cache {path} ({err.strerror or err}); "
                       "compiling into a temporary directory instead (set GRAPHDSL_CACHE_DIR to change it)")
    return fallback


@lru_cache(maxsize=1)
def fallback_dir() -> Path:
    """A private directory for this process when the cache cannot be used. mkdtemp makes it
    0700 and new, so no other user can plant a module in it; it goes when the process ends."""
    try:
        path = Path(tempfile.mkdtemp(prefix="graphdsl-cache-"))
    except OSError as err:
        raise DataError(f"graphdsl compiles into a cache directory, and neither {configured_cache_dir()} nor "
                        f"a temporary directory can be written ({err.strerror or err}): set "
                        "GRAPHDSL_CACHE_DIR to a directory you can write") from None
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
