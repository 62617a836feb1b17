"""The cpio newc writer and the busybox initramfs (client/initramfs.py)."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest

from rvkvm.client.initramfs import (
    CpioWriter,
    busybox_applets,
    busybox_initramfs,
    read_cpio,
)

# A fake busybox: some bytes, the applet table as busybox lays it out, more bytes.
FAKE_BUSYBOX = (b"\x7fELF junk\0\0" + b"[\0[[\0ash\0cat\0poweroff\0sh\0uname\0\0" +
                b"more\0data")


def test_round_trip_of_every_entry_type():
    w = CpioWriter()
    w.file("etc/motd", b"hello\n")  # parent directory added on the way
    w.symlink("bin/sh", "/bin/busybox")
    w.char_device("dev/console", 5, 1)
    w.file("odd", b"abc", 0o755)  # data length not a multiple of 4
    back = {e.name: e for e in read_cpio(w.to_bytes())}
    assert list(back) == ["etc", "etc/motd", "bin", "bin/sh", "dev", "dev/console", "odd"]
    assert stat.S_ISDIR(back["etc"].mode)
    assert back["etc/motd"].data == b"hello\n" and back["etc/motd"].mode == 0o100644
    assert stat.S_ISLNK(back["bin/sh"].mode) and back["bin/sh"].data == b"/bin/busybox"
    assert stat.S_ISCHR(back["dev/console"].mode) and back["dev/console"].rdev == (5, 1)
    assert back["odd"].data == b"abc" and back["odd"].mode & 0o777 == 0o755


def test_archive_layout_is_aligned_and_ends_with_the_trailer():
    w = CpioWriter()
    w.file("a", b"12345")
    blob = w.to_bytes()
    assert blob.startswith(b"070701") and len(blob) % 4 == 0
    assert b"TRAILER!!!\0" in blob[-(110 + 12):]
    # second header starts 4-aligned right after the padded data
    second = blob.index(b"070701", 6)
    assert second % 4 == 0


def test_bad_or_duplicate_names_are_refused():
    w = CpioWriter()
    w.file("x", b"")
    for name in ("x", "", "../etc", "TRAILER!!!"):
        with pytest.raises(ValueError):
            w.file(name, b"")


def test_cpio_tool_lists_the_same_members(tmp_path):
    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed")
    blob = busybox_initramfs(FAKE_BUSYBOX, run_command="uname -m")
    out = subprocess.run(["cpio", "-it"], input=blob, capture_output=True, check=True).stdout
    assert out.decode().split() == [e.name for e in read_cpio(blob)]
    # and cpio extracts the symlinks and files as written
    subprocess.run(["cpio", "-id", "--quiet"], input=blob, cwd=tmp_path, check=True)
    assert (tmp_path / "bin/sh").readlink().as_posix() == "/bin/busybox"
    assert (tmp_path / "etc/rvkvm.run").read_text() == "uname -m\n"


def test_applets_come_from_the_binary_table():
    assert busybox_applets(FAKE_BUSYBOX) == ["[", "[[", "ash", "cat", "poweroff", "sh", "uname"]
    with pytest.raises(ValueError, match="no busybox applet table"):
        busybox_applets(b"not busybox")
    with pytest.raises(ValueError, match="not sorted"):
        busybox_applets(b"[\0[[\0zz\0aa\0\0")


def test_busybox_root_has_init_console_and_links():
    members = {e.name: e for e in read_cpio(busybox_initramfs(FAKE_BUSYBOX))}
    assert members["bin/busybox"].data == FAKE_BUSYBOX
    assert members["bin/sh"].data == b"/bin/busybox"
    assert members["sbin/poweroff"].data == b"/bin/busybox"
    assert members["dev/console"].rdev == (5, 1)
    init = members["init"]
    assert init.mode & 0o111 and init.data.startswith(b"#!/bin/sh\n")
    assert "etc/rvkvm.run" not in members


def test_modprobe_is_on_the_path_but_not_where_the_kernel_runs_it():
    # the kernel's module requests run /sbin/modprobe; the initramfs has no
    # modules, so that path must not exist (the request fails at once),
    # while the applet stays on the shell's PATH
    fake = (b"\x7fELF junk\0\0" + b"[\0[[\0insmod\0modprobe\0sh\0\0" + b"tail")
    members = {e.name: e for e in read_cpio(busybox_initramfs(fake))}
    assert members["bin/modprobe"].data == b"/bin/busybox"
    assert "sbin/modprobe" not in members
    assert members["sbin/insmod"].data == b"/bin/busybox"
