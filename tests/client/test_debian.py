"""The Debian fetcher's private apt configuration (client/debian.py); no
network needed (an unreachable source is a .invalid host)."""

from __future__ import annotations

import shutil

import pytest

from rvkvm.client.debian import Fetcher, FetchError, Source, apt_conf, parse_sources, sources_list

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no
"""

ONE_LINE = """\
deb [arch=amd64 signed-by=/etc/k.gpg] http://other.example/debian trixie main
deb http://mirror.example/debian bookworm main
deb http://updates.example/debian bookworm-backports main
# deb http://commented.example/debian sid main
"""


@pytest.fixture
def etc(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text(ONE_LINE)
    return tmp_path


def test_sources_are_the_base_suite_archives_of_the_machine(etc):
    assert parse_sources(str(etc)) == [
        Source("http://other.example/debian", ("main",), "/etc/k.gpg"),
        Source("http://mirror.example/debian", ("main",), ""),  # first one wins
    ]
    (etc / "sources.list").unlink()
    assert parse_sources(str(etc)) == [
        Source("http://mirror.example/debian", ("main", "contrib"),
               "/usr/share/keyrings/debian-archive-keyring.gpg")]


def test_sources_list_points_at_the_suite_for_riscv64():
    text = sources_list([Source("http://m.example/debian", ("main",), "/k.gpg")], "sid")
    assert text == "deb [arch=riscv64 signed-by=/k.gpg] http://m.example/debian sid main\n"


def test_apt_conf_is_private_and_riscv64(tmp_path):
    conf = apt_conf(str(tmp_path))
    assert f'Dir::State "{tmp_path}/var/lib/apt";' in conf
    assert f'Dir::Etc "{tmp_path}/etc/apt";' in conf
    assert 'APT::Architecture "riscv64";' in conf and 'APT::Architectures "riscv64";' in conf
    assert 'Acquire::Check-Valid-Until "false";' in conf
    assert f'Dir::State::status "{tmp_path}/var/lib/dpkg/status";' in conf


def test_write_config_lays_out_the_cache(tmp_path, etc):
    f = Fetcher(str(tmp_path / "cache"), str(etc))
    f.write_config(parse_sources(str(etc)), "sid")
    assert (tmp_path / "cache/apt.conf").read_text() == apt_conf(str(tmp_path / "cache"))
    assert "sid main" in (tmp_path / "cache/etc/apt/sources.list").read_text()
    assert (tmp_path / "cache/var/lib/dpkg/status").read_text() == ""
    assert f.cached() is None


def test_no_sources_is_a_clear_error(tmp_path):
    with pytest.raises(FetchError, match="no Debian archive source"):
        Fetcher(str(tmp_path / "cache"), str(tmp_path)).update()


def test_unreachable_registry_is_one_clear_line(tmp_path):
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not installed (not a Debian machine)")
    (tmp_path / "sources.list").write_text("deb http://archive.invalid/debian trixie main\n")
    with pytest.raises(FetchError) as err:
        Fetcher(str(tmp_path / "cache"), str(tmp_path)).update()
    text = str(err.value)
    assert text.startswith("cannot reach the Debian package registry for riscv64")
    assert "archive.invalid" in text and "\n" not in text
