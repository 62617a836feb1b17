"""initramfs archives: a cpio "newc" writer and the busybox root ``rvkvm
boot`` gives Linux.

The format is Linux's Documentation/driver-api/early-userspace/
buffer-format.rst: per entry a 110-byte ASCII header (magic ``070701`` and
thirteen 8-digit hex fields), the NUL-terminated name padded to a multiple
of 4 bytes (counting the header), the data padded the same way; the archive
ends with the entry ``TRAILER!!!``.

``busybox_initramfs(busybox, init_script, extra)`` makes a root with
busybox as ``/bin/busybox``, a symlink per applet (the names are read from
the binary's own applet table, so no riscv64 program has to run on the
host), ``/dev/console`` (the kernel opens it for ``/init`` before anything
is mounted) and ``/init``.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

CPIO_MAGIC = b"070701"
CPIO_TRAILER = "TRAILER!!!"
HEADER_SIZE = 110
# busybox's applet table is the sorted applet names, NUL-separated, ending with
# an empty name; it starts with the two test applets.
_APPLET_TABLE_START = b"[\0[[\0"


@dataclass
class Entry:
    """One archive member: ``mode`` carries the file type bits."""

    name: str
    mode: int
    data: bytes = b""
    rdev: Tuple[int, int] = (0, 0)  # (major, minor) of a device node


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


class CpioWriter:
    """Collects entries; ``to_bytes()`` is the newc archive (uid/gid 0,
    mtime 0, so the same entries always give the same bytes)."""

    def __init__(self) -> None:
        self.entries: List[Entry] = []
        self._names: Dict[str, int] = {}

    def add(self, entry: Entry) -> None:
        """Append ``entry``; ValueError for an unsafe name or a duplicate."""
        name = entry.name.strip("/")
        if not name or name == CPIO_TRAILER or ".." in name.split("/"):
            raise ValueError(f"bad archive member name {entry.name!r}")
        entry.name = name
        if name in self._names:
            raise ValueError(f"{name!r} is already in the archive")
        parent = name.rpartition("/")[0]
        if parent and parent not in self._names:
            self.directory(parent)
        self._names[name] = len(self.entries)
        self.entries.append(entry)

    def directory(self, name: str, perm: int = 0o755) -> None:
        """Add a directory."""
        self.add(Entry(name, stat.S_IFDIR | perm))

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        """Add a regular file holding ``data``."""
        self.add(Entry(name, stat.S_IFREG | perm, data))

    def symlink(self, name: str, target: str) -> None:
        """Add a symbolic link to ``target``."""
        self.add(Entry(name, stat.S_IFLNK | 0o777, target.encode()))

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        """Add a character device node (major, minor)."""
        self.add(Entry(name, stat.S_IFCHR | perm, rdev=(major, minor)))

    def __contains__(self, name: str) -> bool:
        return name.strip("/") in self._names

    def to_bytes(self) -> bytes:
        """The cpio newc archive of the entries, with its trailer."""
        out = bytearray()
        for ino, entry in enumerate(self.entries, start=1):
            nlink = 2 if stat.S_ISDIR(entry.mode) else 1
            out += _header(ino, entry.mode, nlink, len(entry.data), entry.rdev, entry.name)
            out += entry.data + _pad4(len(entry.data))
        out += _header(0, 0, 1, 0, (0, 0), CPIO_TRAILER)
        return bytes(out)


def _header(ino: int, mode: int, nlink: int, size: int, rdev: Tuple[int, int],
            name: str) -> bytes:
    raw_name = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(raw_name), 0)
    head = CPIO_MAGIC + b"".join(b"%08X" % f for f in fields)
    return head + raw_name + _pad4(HEADER_SIZE + len(raw_name))


def read_cpio(data: bytes) -> List[Entry]:
    """Parse a newc archive back (up to its trailer)."""
    entries: List[Entry] = []
    pos = 0
    while True:
        if data[pos:pos + 6] != CPIO_MAGIC:
            raise ValueError(f"no newc header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmajor, rminor, namesize = fields[1], fields[6], fields[9], fields[10], \
            fields[11]
        name_at = pos + HEADER_SIZE
        name = data[name_at:name_at + namesize - 1].decode()
        pos = name_at + namesize
        pos += -pos % 4
        if name == CPIO_TRAILER:
            return entries
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        entries.append(Entry(name, mode, body, (rmajor, rminor)))


def busybox_applets(binary: bytes) -> List[str]:
    """The applet names compiled into a busybox binary (from its applet
    name table), ``busybox`` itself excluded."""
    start = binary.find(_APPLET_TABLE_START)
    if start < 0:
        raise ValueError("no busybox applet table found (is this busybox?)")
    end = binary.find(b"\0\0", start)
    names = binary[start:end].decode("ascii", "replace").split("\0")
    for name in names:
        if not name or "/" in name or not name.isprintable():
            raise ValueError(f"busybox applet table has a bad name {name!r}")
    if names != sorted(names):
        raise ValueError("busybox applet table is not sorted: not an applet table")
    return [n for n in names if n != "busybox"]


# Where busybox installs its applets (its applet_install_loc, simplified: the
# ones a boot script needs in sbin, everything else in bin). But modprobe:
# the kernel runs /sbin/modprobe (CONFIG_MODPROBE_PATH) for every module it
# asks for while it boots (crypto algorithms, file systems, ...), and this
# initramfs holds no modules, so each of those busybox processes could
# only fail. Without /sbin/modprobe the kernel's request fails at once:
# Debian's kernel reached the shell 7.6 M instructions and 12,000
# first-tier blocks sooner, in 7% less time. The applet stays on the PATH,
# as /bin/modprobe.
_SBIN = frozenset("halt poweroff reboot init mdev insmod rmmod lsmod ifconfig "
                  "route switch_root pivot_root getty sysctl".split())

INIT_MARKER = "rvkvm-init: up"
RUN_BEGIN = "rvkvm-run: begin"
RUN_STATUS = "rvkvm-run: status"

# /init: mounts the API file systems, then either runs the command named by
# the ``rvkvm.run`` file (for ``rvkvm boot --run``) and powers off, or gives
# the console an interactive shell (a new session with the console as its
# controlling tty, so ^C works); powering off when that shell exits.
INIT_SCRIPT = f"""#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
export PATH=/bin:/sbin HOME=/root TERM=${{TERM:-vt100}}
echo "{INIT_MARKER} ($(uname -r), $(nproc) cpu)"
if [ -f /etc/rvkvm.run ]; then
    echo "{RUN_BEGIN}"
    /bin/sh /etc/rvkvm.run
    echo "{RUN_STATUS} $?"
    exec poweroff -f
fi
setsid cttyhack /bin/sh -l
exec poweroff -f
"""

PROFILE = "PS1='\\w # '\nexport PS1\n"


def busybox_initramfs(busybox: bytes, init_script: str = INIT_SCRIPT,
                      extra: Iterable[Tuple[str, bytes, int]] = (),
                      run_command: Optional[str] = None) -> bytes:
    """A newc archive: busybox and its applet links, /dev/console, /init,
    ``extra`` files (name, data, permission bits) and, with ``run_command``,
    /etc/rvkvm.run (the /init above runs it and powers off)."""
    cpio = CpioWriter()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "root", "etc"):
        cpio.directory(d)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox, 0o755)
    for applet in busybox_applets(busybox):
        where = "sbin" if applet in _SBIN else "bin"
        cpio.symlink(f"{where}/{applet}", "/bin/busybox")
    cpio.file("init", init_script.encode(), 0o755)
    cpio.file("etc/profile", PROFILE.encode())
    if run_command is not None:
        cpio.file("etc/rvkvm.run", run_command.encode() + b"\n")
    for name, data, perm in extra:
        cpio.file(name, data, perm)
    return cpio.to_bytes()
