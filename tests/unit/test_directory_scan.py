"""Watched directories: roots, globs, the settle rule, safe reads, the processed move."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from daemon.modules.sources.directory_scan import (
    PROCESSED_DIRECTORY,
    DirectoryRefused,
    FileState,
    FileTooLarge,
    check_directory,
    is_settled,
    item_identity,
    move_processed,
    name_selected,
    open_beneath,
    read_file,
    scan_directory,
)

SECOND = 1_000_000_000


def test_settled_once_unmodified_for_the_settle_period():
    file = FileState(name="a", size=1, mtime_ns=100 * SECOND)
    assert not is_settled(file, now_ns=100 * SECOND, settle_seconds=2)
    assert not is_settled(file, now_ns=102 * SECOND - 1, settle_seconds=2)
    assert is_settled(file, now_ns=102 * SECOND, settle_seconds=2)
    assert not is_settled(file, now_ns=99 * SECOND, settle_seconds=0)  # mtime in the future


def test_identity_changes_with_size_or_mtime():
    a = FileState(name="a.txt", size=3, mtime_ns=5)
    assert item_identity(a) == "a.txt|3|5"
    assert item_identity(FileState(name="a.txt", size=4, mtime_ns=5)) != item_identity(a)
    assert item_identity(FileState(name="a.txt", size=3, mtime_ns=6)) != item_identity(a)


@pytest.mark.parametrize(
    ("name", "include", "exclude", "taken"),
    [
        ("a.txt", [], [], True),
        ("a.txt", ["*.json"], [], False),
        ("a.json", ["*.json", "*.csv"], [], True),
        ("a.json", ["*"], ["a.*"], False),
        (".hidden", [], [".*"], False),
        ("A.JSON", ["*.json"], [], False),
    ],
)
def test_globs(name, include, exclude, taken):
    assert name_selected(name, include=include, exclude=exclude) is taken


def test_directories_outside_the_roots_are_refused(tmp_path):
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (root / "escape").symlink_to(tmp_path / "out")
    roots = [str(root)]
    assert check_directory(str(root / "in"), roots) == (root / "in").resolve()
    with pytest.raises(DirectoryRefused, match="not under"):
        check_directory(str(tmp_path / "out"), roots)
    with pytest.raises(DirectoryRefused, match="not under"):
        check_directory(str(root / "escape"), roots)  # resolved through the symlink
    with pytest.raises(DirectoryRefused, match="not under"):
        check_directory(str(root / "in" / ".." / ".." / "out"), roots)
    with pytest.raises(DirectoryRefused, match="absolute"):
        check_directory("root/in", roots)
    with pytest.raises(DirectoryRefused, match="no directory roots"):
        check_directory(str(root / "in"), [])


def test_scan_lists_selected_regular_files_and_skips_links_leaving_the_root(tmp_path):
    root = tmp_path / "root"
    watched = root / "watched"
    (watched / PROCESSED_DIRECTORY).mkdir(parents=True)
    (watched / "sub").mkdir()
    (watched / "b.txt").write_bytes(b"bb")
    (watched / "a.txt").write_bytes(b"a")
    (watched / "skip.tmp").write_bytes(b"x")
    (watched / PROCESSED_DIRECTORY / "old.txt").write_bytes(b"old")
    (root / "elsewhere.txt").write_bytes(b"inside the root")
    (watched / "inside.txt").symlink_to(root / "elsewhere.txt")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    (watched / "outside.txt").symlink_to(tmp_path / "secret.txt")
    (watched / "dangling.txt").symlink_to(tmp_path / "missing")
    files = scan_directory(watched, roots=[str(root)], include=[], exclude=["*.tmp"])
    assert [(f.name, f.size) for f in files] == [("a.txt", 1), ("b.txt", 2), ("inside.txt", 15)]


def test_scan_refuses_a_directory_that_moved_outside_the_roots(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "out").mkdir()
    (root / "watched").symlink_to(tmp_path / "out")  # swapped for a link after configuration
    with pytest.raises(DirectoryRefused):
        scan_directory(root / "watched", roots=[str(root)], include=[], exclude=[])


def test_read_returns_the_bytes_only_while_the_file_is_as_scanned(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    roots = [str(tmp_path)]
    [file] = scan_directory(tmp_path, roots=roots, include=[], exclude=[])
    assert read_file(tmp_path, file, roots=roots, max_bytes=100) == b"hello"
    with (tmp_path / "a.txt").open("ab") as stream:
        stream.write(b" more")  # still being written since the scan
    assert read_file(tmp_path, file, roots=roots, max_bytes=100) is None
    (tmp_path / "a.txt").unlink()
    assert read_file(tmp_path, file, roots=roots, max_bytes=100) is None
    with pytest.raises(FileTooLarge):
        read_file(
            tmp_path, FileState(name="a.txt", size=101, mtime_ns=0), roots=roots, max_bytes=100
        )


def test_read_refuses_a_file_swapped_for_a_link_leaving_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"hello")
    [file] = scan_directory(root, roots=[str(root)], include=[], exclude=[])
    (tmp_path / "secret").write_bytes(b"hello")
    os.utime(tmp_path / "secret", ns=(file.mtime_ns, file.mtime_ns))
    (root / "a.txt").unlink()
    (root / "a.txt").symlink_to(tmp_path / "secret")
    assert read_file(root, file, roots=[str(root)], max_bytes=100) is None


def test_move_never_overwrites_and_is_idempotent(tmp_path):
    (tmp_path / PROCESSED_DIRECTORY).mkdir()
    (tmp_path / PROCESSED_DIRECTORY / "r.txt").write_bytes(b"earlier")
    (tmp_path / "r.txt").write_bytes(b"now")
    target = move_processed(tmp_path, "r.txt")
    assert target == tmp_path / PROCESSED_DIRECTORY / "r.1.txt"
    assert target.read_bytes() == b"now"
    assert (tmp_path / PROCESSED_DIRECTORY / "r.txt").read_bytes() == b"earlier"
    assert not (tmp_path / "r.txt").exists()
    assert move_processed(tmp_path, "r.txt") is None  # already moved: nothing to do


def test_move_finishes_a_move_interrupted_after_the_link(tmp_path):
    (tmp_path / PROCESSED_DIRECTORY).mkdir()
    (tmp_path / "r.txt").write_bytes(b"now")
    os.link(tmp_path / "r.txt", tmp_path / PROCESSED_DIRECTORY / "r.txt")  # crash here
    assert move_processed(tmp_path, "r.txt") == tmp_path / PROCESSED_DIRECTORY / "r.txt"
    assert sorted(p.name for p in (tmp_path / PROCESSED_DIRECTORY).iterdir()) == ["r.txt"]
    assert not (tmp_path / "r.txt").exists()


def test_a_file_just_written_is_not_settled(tmp_path):
    (tmp_path / "new.txt").write_bytes(b"x")
    [file] = scan_directory(tmp_path, roots=[str(tmp_path)], include=[], exclude=[])
    assert not is_settled(file, now_ns=time.time_ns(), settle_seconds=5)
    assert is_settled(file, now_ns=time.time_ns() + 6 * SECOND, settle_seconds=5)
    assert Path(tmp_path / "new.txt").exists()


def test_move_refuses_a_processed_link_leading_elsewhere(tmp_path):
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (inbox / PROCESSED_DIRECTORY).symlink_to(elsewhere)
    (inbox / "r.txt").write_bytes(b"now")
    with pytest.raises(DirectoryRefused, match="not a directory"):
        move_processed(inbox, "r.txt")
    assert (inbox / "r.txt").exists()
    assert list(elsewhere.iterdir()) == []


def test_read_refuses_another_file_with_the_same_size_and_mtime(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    [file] = scan_directory(tmp_path, roots=[str(tmp_path)], include=[], exclude=[])
    (tmp_path / "b.txt").write_bytes(b"HELLO")  # another file, swapped in under the name
    os.utime(tmp_path / "b.txt", ns=(file.mtime_ns, file.mtime_ns))
    os.replace(tmp_path / "b.txt", tmp_path / "a.txt")
    assert read_file(tmp_path, file, roots=[str(tmp_path)], max_bytes=100) is None


def test_open_beneath_follows_no_symlink_on_the_way(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inbox").mkdir(parents=True)
    outside.mkdir()
    (root / "inbox" / "a.txt").write_bytes(b"inside")
    (outside / "a.txt").write_bytes(b"outside")
    fd = open_beneath(root, ("inbox", "a.txt"))
    with os.fdopen(fd, "rb") as stream:
        assert stream.read() == b"inside"
    # The inbox swapped for a link to elsewhere after the path was checked: no open.
    (root / "inbox").rename(root / "inbox.old")
    (root / "inbox").symlink_to(outside)
    with pytest.raises(OSError) as refused:
        open_beneath(root, ("inbox", "a.txt"))
    assert refused.value.errno in (errno.ELOOP, errno.ENOTDIR)
    (root / "link.txt").symlink_to(outside / "a.txt")
    with pytest.raises(OSError) as refused:
        open_beneath(root, ("link.txt",))
    assert refused.value.errno == errno.ELOOP
    with pytest.raises(OSError):
        open_beneath(root, ("..", "outside", "a.txt"))


def test_read_does_not_block_on_a_fifo_swapped_in(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"")
    [file] = scan_directory(tmp_path, roots=[str(tmp_path)], include=[], exclude=[])
    os.mkfifo(tmp_path / "fifo")
    os.replace(tmp_path / "fifo", tmp_path / "a.txt")  # opening it for reading would block
    assert read_file(tmp_path, file, roots=[str(tmp_path)], max_bytes=100) is None
