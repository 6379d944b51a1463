"""Publishing files and folders atomically, with the permissions the umask gives: the one place every writer goes
through (videos, frame sets, latents, LoRA files, Orbax checkpoints).

A writer writes into a temporary path beside the destination (same folder, so the final step is a rename on one
file system), and the result appears under its name only once complete:

- ``atomic_file(path)``: a file. Without ``overwrite`` the publish is link-or-fail (``os.link``, which refuses an
  existing name), so a file that appeared while this run was writing (another run with the same output) is never
  replaced: ``FileExistsError``. Where hard links are not supported, an exclusive create claims the name first.
- ``atomic_files(paths)``: a set of files in one folder (a video's ``.png`` frames), swapped in whole: with
  ``overwrite`` the old files (and ``replaces``: e.g. the extra frames of a longer earlier run) are moved aside, the
  new ones renamed in, and the old ones deleted only then; a failure puts the old ones back.
- ``atomic_dir(path)``: a folder (an Orbax checkpoint), renamed into place; with ``overwrite`` the old folder is moved
  aside, the new one renamed in, the old one deleted; on failure the old one stays.

Any failure inside the block or while publishing (an exception, Ctrl-C, SIGTERM under a raising handler) removes the
temporary path; an ``Exception`` comes out as an ``OSError`` of one line naming the destination (``writing X failed:
...``: ``write_error``, which a writer with temporaries of its own uses too), a name taken meanwhile as
``OutputExists`` (a ``FileExistsError``), a ``KeyboardInterrupt`` unchanged.

Checks before any work: ``check_creatable`` (the folder can be written), ``check_free_space``; ``file_mode`` and
``dir_mode`` are what the umask gives; ``remove_leftovers`` clears what a killed writer (SIGKILL) left in a folder it
owned. This module imports nothing of the project (the bottom layer).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from typing import Iterator, Sequence

PARTIAL_PREFIX = ".partial-"  # temporary names: hidden, and recognisable as unfinished
ASIDE_PREFIX = ".replaced-"  # what an overwrite moves aside until the new result is in place
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:  # Linux: read it without changing it (os.umask is process-wide)
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The mode a new file gets from this process's umask (0o644 under umask 022)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode a new folder gets from this process's umask (0o755 under umask 022)."""
    return 0o777 & ~_umask()


def check_creatable(path: str | os.PathLike, advice: str = "choose another output") -> None:
    """Raises ``ValueError`` (one line, before any work) when ``path`` could not be created: an ancestor that is a
    file, or a folder that is not writable (its first existing ancestor, where the folder would be created: a real
    probe, since permissions alone do not tell on root, read-only or virtual file systems)."""
    path = os.fspath(path)
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise ValueError(f"cannot write {path}: {existing} is a file, not a folder.")
        existing = os.path.dirname(existing)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ValueError(f"cannot write {path}: the folder {existing} is not writable ({e.strerror}); {advice}.") \
            from None


def check_free_space(path: str | os.PathLike, nbytes: int) -> None:
    """Raises ``OSError`` (one line) when the file system that would hold ``path`` has fewer than ``nbytes`` free:
    a write that cannot fit is refused before it starts (a write can still fail if the disk fills meanwhile)."""
    existing = os.path.dirname(os.path.abspath(os.fspath(path)))
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    free = shutil.disk_usage(existing).free
    if free < nbytes:
        raise OSError(f"cannot write {os.fspath(path)}: it needs about {_size(nbytes)} and {existing} has "
                      f"{_size(free)} free; free some space or choose another destination.")


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes < 2**30 else f"{nbytes / 2**30:.2f} GiB"


def one_line(text: str) -> str:
    """The first non-empty line of an error message (tools append command lines and logs)."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def write_error(path: str, error: Exception, *temporaries: str) -> OSError:
    """``writing PATH failed: REASON``: one line, the temporary names replaced by the destination's (the error every
    writer here raises for a failure while writing ``path`` into ``temporaries``)."""
    reason = one_line(str(error)) or type(error).__name__
    if isinstance(error, OSError) and error.strerror:  # "[Errno 28] No space left on device: '/x/.partial-...'"
        name = os.fspath(error.filename) if error.filename is not None else None
        ours = name is None or any(name.startswith(tmp) for tmp in temporaries)
        reason = error.strerror if ours else f"{error.strerror}: {name}"
    for tmp in temporaries:
        reason = reason.replace(tmp, path)
    return OSError(f"writing {path} failed: {reason}")


def remove_leftovers(folder: str | os.PathLike) -> list[str]:
    """Removes the temporaries a killed writer left in ``folder`` (``.partial-*``, ``.replaced-*``: SIGKILL runs no
    cleanup); only for a folder that one writer owns at a time (a training run's checkpoints). Returns them."""
    folder = os.fspath(folder)
    names = [n for n in os.listdir(folder) if n.startswith((PARTIAL_PREFIX, ASIDE_PREFIX))] \
        if os.path.isdir(folder) else []
    for name in names:
        _remove(os.path.join(folder, name))
    return [os.path.join(folder, n) for n in names]


_temporaries: set[str] = set()  # every temporary this process made and has not yet published or removed


def _temporary(path: str) -> str:
    """Records ``path`` (a temporary just made) for ``remove_temporaries``; returns it."""
    _temporaries.add(path)
    return path


def remove_temporaries() -> None:
    """Removes every temporary of this process's unfinished writes: the last act of a process that must exit at once
    (``ltx_jax.distributed``'s watchdog, when the launcher stops it because another process was lost)."""
    for path in list(_temporaries):
        _remove(path)


def _remove(path: str) -> None:
    """Removes a file or a folder tree, if there."""
    _temporaries.discard(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class OutputExists(FileExistsError):
    """The destination exists (without ``overwrite``): nothing was replaced."""


def _exists_error(path: str, meanwhile: bool = True) -> OutputExists:
    when = " (it appeared while this run was writing: another run with the same output?)" if meanwhile else ""
    return OutputExists(errno.EEXIST, f"{path} already exists{when}; nothing was replaced; choose another output, or "
                                      "overwrite it")


def _link_or_fail(tmp: str, path: str) -> None:
    """Publishes the file ``tmp`` as ``path`` only if no ``path`` exists, atomically."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        # No hard links here (some network and FUSE file systems): claim the name, then rename over the claim.
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise _exists_error(path) from None
        try:
            os.replace(tmp, path)
            _temporaries.discard(tmp)
        except BaseException:
            _remove(path)
            raise
        return
    with contextlib.suppress(OSError):
        os.remove(tmp)  # the name is published; the second link to the same data is not needed


def _folder_of(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return folder


@contextlib.contextmanager
def _removed_on_failure(tmp: str, path: str) -> Iterator[None]:
    """Removes the temporary ``tmp`` on any failure (Ctrl-C and SIGTERM through a raising handler included: nothing
    is left behind); an error other than ``OutputExists`` becomes the one-line error for ``path``."""
    try:
        yield
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, Exception) and not isinstance(e, OutputExists):
            raise write_error(path, e, tmp) from e
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = False, suffix: str | None = None) -> Iterator[str]:
    """Yields a temporary file path beside ``path`` (the file exists, empty); on success gives it the umask's mode
    and publishes it as ``path``: ``os.replace`` with ``overwrite``, link-or-fail without (``FileExistsError`` if
    ``path`` exists by then). On failure the temporary file is removed. ``suffix``: the temporary name's ending (the
    destination's extension by default: some writers choose the format by it)."""
    path = os.fspath(path)
    folder = _folder_of(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=folder,
                                   suffix=os.path.splitext(path)[1] if suffix is None else suffix)
        _temporary(tmp)
    except OSError as e:
        raise write_error(path, e) from e
    os.close(fd)
    with _removed_on_failure(tmp, path):
        yield tmp
        os.chmod(tmp, file_mode())  # mkstemp makes 0600 files
        if overwrite:
            os.replace(tmp, path)
            _temporaries.discard(tmp)
        else:
            _link_or_fail(tmp, path)


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], *, overwrite: bool = False,
                 replaces: Sequence[str | os.PathLike] = ()) -> Iterator[list[str]]:
    """Yields temporary paths for ``paths`` (files in one folder), in a temporary folder beside them; on success
    swaps the new files in as one set. Without ``overwrite`` each is linked in (link-or-fail); if one exists by then,
    the ones already linked are removed again and ``FileExistsError`` is raised. With ``overwrite`` the existing
    ``paths`` and ``replaces`` (old files of the set that the new one does not have) are moved aside, the new files
    renamed in, then the old ones deleted; a failure takes the new ones out and puts the old ones back."""
    paths = [os.fspath(p) for p in paths]
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if len(folders) != 1:
        raise ValueError(f"atomic_files: the files must share one folder, got {sorted(folders)}.")
    folder = _folder_of(paths[0])
    try:
        staging = _temporary(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=folder))
    except OSError as e:
        raise write_error(paths[0], e) from e
    temporaries = [os.path.join(staging, os.path.basename(p)) for p in paths]
    try:
        yield temporaries
        for tmp in temporaries:
            os.chmod(tmp, file_mode())
        if overwrite:
            _swap_files(temporaries, paths, [os.fspath(p) for p in replaces], folder)
        else:
            linked = []
            try:
                for tmp, path in zip(temporaries, paths):
                    _link_or_fail(tmp, path)
                    linked.append(path)
            except BaseException:
                for path in linked:
                    _remove(path)
                raise
    except OutputExists:
        raise
    except Exception as e:
        raise write_error(paths[0] if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}", e, *temporaries) from e
    finally:
        _remove(staging)


def _swap_files(new: list[str], paths: list[str], replaces: list[str], folder: str) -> None:
    """Moves ``paths`` and ``replaces`` that exist aside, renames ``new`` to ``paths``, deletes the old; on failure
    the new ones are removed and the old ones put back."""
    aside = tempfile.mkdtemp(prefix=ASIDE_PREFIX, dir=folder)
    moved, placed = [], []
    try:
        for i, old in enumerate(dict.fromkeys(paths + replaces)):
            if os.path.lexists(old):
                keep = os.path.join(aside, str(i))
                os.rename(old, keep)
                moved.append((keep, old))
        for tmp, path in zip(new, paths):
            os.rename(tmp, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            _remove(path)
        for keep, old in moved:
            os.rename(keep, old)
        _remove(aside)
        raise
    _remove(aside)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[str]:
    """Yields a temporary folder beside ``path`` (empty); on success gives it the umask's mode and renames it to
    ``path``. Without ``overwrite`` an existing ``path`` raises ``FileExistsError`` (a folder that appeared meanwhile
    is not replaced: a rename onto a non-empty folder fails; only an empty one would be replaced, losing nothing);
    with it, the old folder is moved aside, the new one renamed in, and the old one deleted. On failure the
    temporary folder is removed and the old ``path`` stays."""
    path = os.path.abspath(os.fspath(path))
    folder = _folder_of(path)
    if not overwrite and os.path.lexists(path):
        raise _exists_error(path, meanwhile=False)
    try:
        tmp = _temporary(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=folder))
    except OSError as e:
        raise write_error(path, e) from e
    with _removed_on_failure(tmp, path):
        yield tmp
        publish_dir(tmp, path, overwrite=overwrite)


def publish_dir(tmp: str, path: str, *, overwrite: bool) -> None:
    """``atomic_dir``'s last act: the complete folder ``tmp`` (beside ``path``) becomes ``path`` (see there)."""
    folder = os.path.dirname(path)
    os.chmod(tmp, dir_mode())  # mkdtemp makes 0700 folders
    if not overwrite:
        if os.path.lexists(path) and not os.path.isdir(path):
            raise _exists_error(path)  # rename would replace a file (or a link) with a folder
        try:
            os.rename(tmp, path)
            _temporaries.discard(tmp)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise _exists_error(path) from None
            raise
    elif not os.path.lexists(path):
        os.rename(tmp, path)
        _temporaries.discard(tmp)
    else:
        aside = tempfile.mkdtemp(prefix=ASIDE_PREFIX, dir=folder)
        old = os.path.join(aside, "old")
        os.rename(path, old)
        try:
            os.rename(tmp, path)
            _temporaries.discard(tmp)
        except BaseException:
            os.rename(old, path)
            _remove(aside)
            raise
        _remove(aside)
