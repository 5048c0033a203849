"""Watched directories: which files are there, which are done being written, reading one
safely, and moving it aside once its document is committed.

Blocking filesystem code, meant to run in a worker thread (``trio.to_thread.run_sync``);
the rules it applies are pure functions (:func:`is_settled`, :func:`name_selected`,
:func:`item_identity`) tested without a directory.

* **Roots.** A directory source's path must resolve (symlinks followed) to a place under
  one of the allowed roots (:func:`check_directory`, at configuration time and again at
  every poll). A symlink inside the directory is followed only when its target resolves
  under the same root; one that leaves it is skipped.
* **Settle.** A file is taken once its modification time is at least ``settle_seconds``
  old: a writer still appending keeps moving its mtime, so its file waits for a later
  poll. Reading re-checks it: the open file must be the one the scan saw (device and
  inode) with the size and mtime it saw, before and after reading (:func:`read_file`);
  otherwise it waits too.
* **Opening.** A file is opened one path component at a time from a descriptor of its
  root, each with ``O_NOFOLLOW`` (:func:`open_beneath`): a directory swapped for a
  symlink between the checks and the open cannot lead outside the root (the open fails
  and the file waits). The file itself is opened ``O_NONBLOCK``: a FIFO planted under
  its name cannot block the poll.
* **Identity.** A file is ``name|size|mtime_ns`` (:func:`item_identity`): committed
  with its document as the source's item, so a poll retried after a crash between the
  commit and the move sees the file as already recorded and only moves it. A file
  changed in place (``keep`` mode) has a new identity and becomes a new document.
* **Processed.** In ``move`` mode a committed file is renamed into ``processed/`` beside
  it (never overwriting: a name taken there gets a numbered suffix); the scan never looks
  into ``processed/``.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from daemon.modules.sources.errors import DirectoryRefused

if TYPE_CHECKING:
    from collections.abc import Sequence

PROCESSED_DIRECTORY = "processed"


@attrs.frozen(kw_only=True)
class FileState:
    """A regular file of a watched directory as one scan saw it."""

    name: str
    size: int
    mtime_ns: int
    device: int | None = None  # st_dev and st_ino of the file (None: not compared)
    inode: int | None = None


def item_identity(file: FileState) -> str:
    """The file's item identity: its name, size and modification time (nanoseconds)."""
    return f"{file.name}|{file.size}|{file.mtime_ns}"


def is_settled(file: FileState, *, now_ns: int, settle_seconds: float) -> bool:
    """Whether the file has not been written for ``settle_seconds`` (a modification time
    in the future, a clock skew, is not settled)."""
    return now_ns - file.mtime_ns >= int(settle_seconds * 1_000_000_000)


def name_selected(name: str, *, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a file name is taken: it matches one ``include`` glob (none given: all
    names) and no ``exclude`` glob. Case-sensitive shell globs (``*.json``, ``report-?``)."""
    if include and not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
        return False
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


def _resolved_roots(roots: Sequence[str]) -> list[Path]:
    return [Path(root).resolve() for root in roots]


def root_of(path: Path, roots: Sequence[str]) -> Path | None:
    """The allowed root ``path`` resolves under (None: none). Blocking."""
    resolved = path.resolve()
    for root in _resolved_roots(roots):
        if resolved == root or resolved.is_relative_to(root):
            return root
    return None


def check_directory(path: str, roots: Sequence[str]) -> Path:
    """The directory a source's ``config.path`` names, resolved, when it lies under one
    of ``roots``. Blocking (resolves symlinks).

    Raises:
        DirectoryRefused: not absolute, no roots configured, or outside every root.
    """
    if not roots:
        raise DirectoryRefused("no directory roots are configured (TRIAGED_SOURCE_DIRECTORY_ROOTS)")
    candidate = Path(path)
    if not candidate.is_absolute():
        raise DirectoryRefused("must be an absolute path")
    if "\0" in path:
        raise DirectoryRefused("must not contain NUL")
    if root_of(candidate, roots) is None:
        raise DirectoryRefused("is not under an allowed directory root")
    return candidate.resolve()


def scan_directory(
    directory: Path,
    *,
    roots: Sequence[str],
    include: Sequence[str],
    exclude: Sequence[str],
) -> list[FileState]:
    """The regular files of ``directory`` (not its subdirectories) selected by the globs,
    sorted by name. Symlinks are followed only to files under the directory's own root.
    Blocking.

    Raises:
        DirectoryRefused: the directory no longer resolves under an allowed root.
        OSError: the directory cannot be listed (missing, permissions).
    """
    root = root_of(directory, roots)
    if root is None:
        raise DirectoryRefused("is not under an allowed directory root")
    real = directory.resolve()
    files = []
    with os.scandir(real) as entries:
        for entry in entries:
            if entry.name == PROCESSED_DIRECTORY or not name_selected(
                entry.name, include=include, exclude=exclude
            ):
                continue
            try:
                if entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if not target.is_relative_to(root):
                        continue  # a symlink leaving the root: not followed
                    info = target.stat()
                else:
                    info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since listed, or a dangling link
            if not stat.S_ISREG(info.st_mode):
                continue
            files.append(
                FileState(
                    name=entry.name, size=info.st_size, mtime_ns=info.st_mtime_ns,
                    device=info.st_dev, inode=info.st_ino,
                )
            )  # fmt: skip
    files.sort(key=lambda file: file.name)
    return files


def read_file(
    directory: Path, file: FileState, *, roots: Sequence[str], max_bytes: int
) -> bytes | None:
    """The file's bytes if it is still exactly as scanned (the same file, size and
    mtime, before and after reading); None if it changed, went away or no longer lies
    under the root without symlinks on the way (a later poll sees it again). Blocking.

    Raises:
        FileTooLarge: over ``max_bytes``.
    """
    if file.size > max_bytes:
        raise FileTooLarge(f"{file.name} has {file.size} bytes; the limit is {max_bytes}")
    root = root_of(directory, roots)
    if root is None:
        return None
    path = directory.resolve() / file.name
    try:
        if path.is_symlink():
            path = path.resolve()  # followed only to a file under the same root
        if path == root or not path.is_relative_to(root):
            return None
        fd = open_beneath(root, path.relative_to(root).parts)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            return None
        raise
    with os.fdopen(fd, "rb") as stream:
        before = os.fstat(stream.fileno())
        if not _unchanged(before, file):
            return None
        data = stream.read(max_bytes + 1)
        after = os.fstat(stream.fileno())
    if len(data) != file.size or not _unchanged(after, file):
        return None
    return data


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_beneath(root: Path, parts: Sequence[str]) -> int:
    """A read-only descriptor of ``root/parts...``, opened one component at a time, each
    relative to the descriptor of the one before with ``O_NOFOLLOW``: a symlink anywhere
    below ``root`` fails the open (``ELOOP``/``ENOTDIR``) instead of leading elsewhere.
    The last component is opened ``O_NONBLOCK`` (a FIFO does not block). Blocking.

    Raises:
        OSError: a component is missing, a symlink, or not a directory.
    """
    if not parts or any(part in ("", ".", "..") or "/" in part for part in parts):
        raise OSError(errno.ENOENT, f"not a path beneath {root}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = inner
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


class FileTooLarge(Exception):
    """A settled file larger than the source's item limit (it is skipped)."""


def _unchanged(info: os.stat_result, file: FileState) -> bool:
    """The same regular file as scanned (device and inode, when known), size and mtime."""
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_size == file.size
        and info.st_mtime_ns == file.mtime_ns
        and (file.device is None or info.st_dev == file.device)
        and (file.inode is None or info.st_ino == file.inode)
    )


def move_processed(directory: Path, name: str, *, expect: FileState | None = None) -> Path | None:
    """Move the file ``name`` into ``processed/`` (created when missing), never over a
    file already there: ``report.txt`` becomes ``report.1.txt``, ``report.2.txt``...
    Idempotent: a file already gone answers None; so does one that is no longer as
    ``expect`` says (written again since: a new item for the next poll). A symlink is
    moved as the link. Blocking."""
    real = directory.resolve()
    source = real / name
    if expect is not None:
        try:
            if not _unchanged(os.stat(source), expect):
                return None
        except OSError:
            return None
    target_directory = real / PROCESSED_DIRECTORY
    with contextlib.suppress(FileExistsError):
        target_directory.mkdir()
    if target_directory.is_symlink() or not target_directory.is_dir():
        # A link planted there would move files out of the root.
        raise DirectoryRefused(f"{target_directory} is not a directory (a symlink?)")
    stem, dot, suffix = name.partition(".")
    for n in range(10_000):
        candidate = name if n == 0 else f"{stem}.{n}{dot}{suffix}"
        target = target_directory / candidate
        try:
            # link+unlink, not rename: rename would silently replace a file that
            # appeared at the target since we looked.
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            if _same_file(source, target):
                break  # linked before a crash, not yet unlinked: finish the move
            continue
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if target.exists() or target.is_symlink():
                continue
            os.rename(source, target)  # no hard links here: the best we have
            return target
        break
    else:
        raise OSError(errno.EEXIST, f"no free name for {name} in {target_directory}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(source)
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        first, second = os.stat(a, follow_symlinks=False), os.stat(b, follow_symlinks=False)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
