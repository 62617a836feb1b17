"""Debian's stock riscv64 kernel and busybox, fetched with Debian's own
client (``apt-get``, ``apt-cache``, ``dpkg-deb``) by package name.

A private apt configuration for the riscv64 architecture lives in the cache
(``~/.cache/rvkvm/debian``, or ``$RVKVM_CACHE/debian``; never in git). Its
sources are this machine's Debian archive sources (``/etc/apt/sources.list``
and ``/etc/apt/sources.list.d/*.sources`` / ``*.list``: the URIs that serve
a release's base suite, with their keyrings), pointed at suite ``sid`` and,
when an index fails to download, at the next suite of ``SUITES``.

``linux-image-riscv64`` is a metapackage: its ``linux-image-<ver>-riscv64``
dependency depends on ``linux-binary-<ver>-riscv64``, whose
``usr/lib/modules/<ver>/vmlinuz`` is the Image; ``busybox-static`` has the
static busybox.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

SUITES = ("sid", "unstable", "testing")
ARCH = "riscv64"
KERNEL_META = "linux-image-riscv64"
BUSYBOX_PACKAGE = "busybox-static"
MANIFEST = "manifest.json"
APT_TIMEOUT = 600  # seconds for one apt-get call


class FetchError(RuntimeError):
    """The packages could not be fetched (one line saying why)."""


@dataclass(frozen=True)
class Source:
    """One archive URI from the machine's apt sources."""

    uri: str
    components: Tuple[str, ...]
    signed_by: str = ""


@dataclass
class DebianFiles:
    """Paths of the fetched kernel Image and busybox, and the kernel version."""
    kernel: str
    busybox: str
    version: str


def cache_dir() -> str:
    """Where fetched files are kept: $RVKVM_CACHE or ~/.cache/rvkvm, then debian/."""
    base = os.environ.get("RVKVM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rvkvm")
    return os.path.join(base, "debian")


def _is_base_suite(suite: str) -> bool:
    # bookworm, trixie, sid, stable: not bookworm-security, -updates, -backports
    return bool(suite) and "-" not in suite and "/" not in suite


def parse_deb822(text: str) -> List[Dict[str, str]]:
    """Stanzas of a deb822 file (``*.sources``): field -> value, comments
    dropped, continuation lines joined with a newline."""
    stanzas: List[Dict[str, str]] = []
    current: Dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


_ONE_LINE = re.compile(r"^\s*(deb)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$")


def parse_sources(etc: str = "/etc/apt") -> List[Source]:
    """The machine's Debian archive sources: binary (``deb``) entries that
    serve a base suite, enabled, in the order apt reads them."""
    found: List[Source] = []
    files = [os.path.join(etc, "sources.list")] + sorted(
        glob.glob(os.path.join(etc, "sources.list.d", "*.list")) +
        glob.glob(os.path.join(etc, "sources.list.d", "*.sources")))
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for st in parse_deb822(text):
                if "deb" not in st.get("types", "").split():
                    continue
                if st.get("enabled", "yes").lower() == "no":
                    continue
                if not any(_is_base_suite(s) for s in st.get("suites", "").split()):
                    continue
                for uri in st.get("uris", "").split():
                    found.append(Source(uri, tuple(st.get("components", "main").split()),
                                        st.get("signed-by", "")))
        else:
            for line in text.splitlines():
                m = _ONE_LINE.match(line.split("#", 1)[0])
                if not m or not _is_base_suite(m.group(4)):
                    continue
                opts = dict(o.split("=", 1) for o in (m.group(2) or "").split() if "=" in o)
                found.append(Source(m.group(3), tuple(m.group(5).split()) or ("main",),
                                    opts.get("signed-by", "")))
    unique: List[Source] = []
    for s in found:
        if s.uri not in [u.uri for u in unique]:
            unique.append(s)
    return unique


def apt_conf(root: str) -> str:
    """apt.conf text for a private riscv64 apt rooted at ``root``."""
    return "\n".join([
        f'Dir "{root}/";',
        f'Dir::State "{root}/var/lib/apt";',
        f'Dir::State::status "{root}/var/lib/dpkg/status";',
        f'Dir::Cache "{root}/var/cache/apt";',
        f'Dir::Etc "{root}/etc/apt";',
        'Dir::Etc::SourceParts "sources.list.d";',
        'Dir::Etc::Preferences "preferences";',
        'Dir::Etc::PreferencesParts "preferences.d";',
        'Dir::Etc::Trusted "/etc/apt/trusted.gpg";',
        'Dir::Etc::TrustedParts "/etc/apt/trusted.gpg.d";',
        f'APT::Architecture "{ARCH}";',
        f'APT::Architectures "{ARCH}";',
        'Acquire::Languages "none";',
        # the machine's clock or a snapshot mirror may be past a Release's Valid-Until
        'Acquire::Check-Valid-Until "false";',
        'Acquire::Retries "1";',
        'Acquire::http::Timeout "20";',
        'Acquire::https::Timeout "20";',
        "",
    ])


def sources_list(sources: Iterable[Source], suite: str) -> str:
    """A sources.list for the riscv64 architecture of ``suite`` from the machine's sources."""
    lines = []
    for s in sources:
        opts = f"arch={ARCH}" + (f" signed-by={s.signed_by}" if s.signed_by else "")
        lines.append(f"deb [{opts}] {s.uri} {suite} {' '.join(s.components)}")
    return "\n".join(lines) + "\n"


class Fetcher:
    """The private apt of ``root`` (see the module docstring)."""

    def __init__(self, root: Optional[str] = None, etc: str = "/etc/apt") -> None:
        self.root = root or cache_dir()
        self.etc = etc
        self.conf = os.path.join(self.root, "apt.conf")

    def write_config(self, sources: Sequence[Source], suite: str) -> None:
        """Write the private apt tree (directories, status, apt.conf, sources.list)."""
        for d in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d",
                  "var/lib/apt/lists/partial",
                  "var/cache/apt/archives/partial", "var/lib/dpkg", "debs"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        status = os.path.join(self.root, "var/lib/dpkg/status")
        if not os.path.exists(status):
            open(status, "w").close()
        with open(self.conf, "w") as f:
            f.write(apt_conf(self.root))
        with open(os.path.join(self.root, "etc/apt/sources.list"), "w") as f:
            f.write(sources_list(sources, suite))

    def _apt(self, *argv: str, cwd: Optional[str] = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, APT_CONFIG=self.conf, LC_ALL="C")
        try:
            return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                                  timeout=APT_TIMEOUT)
        except FileNotFoundError:
            raise FetchError(f"{argv[0]} not found: Debian's apt and dpkg are needed") from None
        except subprocess.TimeoutExpired:
            raise FetchError(f"{' '.join(argv[:2])} took longer than {APT_TIMEOUT} s") from None

    def _has_index(self) -> bool:
        return bool(glob.glob(os.path.join(self.root, "var/lib/apt/lists",
                                           f"*_binary-{ARCH}_Packages*")))

    def update(self) -> str:
        """``apt-get update`` on the first suite whose index downloads;
        returns that suite."""
        sources = parse_sources(self.etc)
        if not sources:
            raise FetchError(f"no Debian archive source in {self.etc}/sources.list*")
        error = ""
        for suite in SUITES:
            self.write_config(sources, suite)
            for old in glob.glob(os.path.join(self.root, "var/lib/apt/lists", "*_Packages*")):
                os.unlink(old)
            proc = self._apt("apt-get", "update", "-q")
            if proc.returncode == 0 and self._has_index():
                return suite
            lines = (proc.stderr + proc.stdout).splitlines() + [""]
            error = next((ln + (" " + lines[i + 1] if prefix == "Err:" else "")
                          for prefix in ("Err:", "E:", "W:") for i, ln in enumerate(lines)
                          if ln.startswith(prefix)), "no riscv64 index")
        raise FetchError(f"cannot reach the Debian package registry for riscv64 "
                         f"(suites {', '.join(SUITES)}): {' '.join(error.split())}")

    def depends(self, package: str, prefix: str) -> str:
        """The dependency of ``package`` whose name starts with ``prefix``."""
        proc = self._apt("apt-cache", "depends", package)
        if proc.returncode != 0:
            raise FetchError(f"apt-cache depends {package}: {proc.stderr.strip()}")
        for line in proc.stdout.splitlines():
            name = line.split(":", 1)[-1].strip()
            if line.strip().startswith(("Depends:", "|Depends:")) and name.startswith(prefix):
                return name
        raise FetchError(f"{package} depends on no {prefix}* package")

    def download(self, package: str) -> str:
        """``apt-get download`` one package into the cache; returns the .deb path."""
        debs = os.path.join(self.root, "debs")
        before = set(os.listdir(debs))
        proc = self._apt("apt-get", "download", "-q", package, cwd=debs)
        if proc.returncode != 0:
            raise FetchError(f"apt-get download {package}: "
                             f"{(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
        new = sorted(set(os.listdir(debs)) - before) or sorted(
            n for n in os.listdir(debs) if n.startswith(package + "_"))
        if not new:
            raise FetchError(f"apt-get download {package} left no .deb")
        return os.path.join(debs, new[-1])

    def extract(self, deb: str) -> None:
        """Unpack a .deb into the cache's root with ``dpkg-deb -x``."""
        proc = self._apt("dpkg-deb", "-x", deb, os.path.join(self.root, "root"))
        if proc.returncode != 0:
            raise FetchError(f"dpkg-deb -x {os.path.basename(deb)}: {proc.stderr.strip()}")

    def fetch(self) -> DebianFiles:
        """Fetch and unpack the kernel and busybox; records them in the
        cache's manifest."""
        self.update()
        image_pkg = self.depends(KERNEL_META, "linux-image-")
        version = image_pkg[len("linux-image-"):]
        binary_pkg = self.depends(image_pkg, "linux-binary-")
        root = os.path.join(self.root, "root")
        shutil.rmtree(root, ignore_errors=True)
        for pkg in (binary_pkg, BUSYBOX_PACKAGE):
            self.extract(self.download(pkg))
        kernel = os.path.join(root, "usr/lib/modules", version, "vmlinuz")
        busybox = next((p for p in (os.path.join(root, "usr/bin/busybox"),
                                    os.path.join(root, "bin/busybox")) if os.path.exists(p)), "")
        if not os.path.exists(kernel) or not busybox:
            raise FetchError(f"the packages have no {kernel if not busybox else 'busybox'}")
        files = DebianFiles(kernel, busybox, version)
        with open(os.path.join(self.root, MANIFEST), "w") as f:
            json.dump(files.__dict__, f, indent=1)
        return files

    def cached(self) -> Optional[DebianFiles]:
        """The files of an earlier fetch, if they are all still there."""
        try:
            with open(os.path.join(self.root, MANIFEST)) as f:
                files = DebianFiles(**json.load(f))
        except (OSError, ValueError, TypeError):
            return None
        if os.path.exists(files.kernel) and os.path.exists(files.busybox):
            return files
        return None

    def ensure(self) -> DebianFiles:
        """The cached files, fetched first when the cache has none."""
        return self.cached() or self.fetch()
