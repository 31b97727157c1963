"""TimescaleDB for the local runner's PostgreSQL: found, or built once from pinned source, or absent.

Debian packages no TimescaleDB here, so the runner builds the one release line that still supports
PostgreSQL 15 (Debian 12's): tag 2.28.3. The source comes from, in order,
1. ``VR_TIMESCALEDB_SRC`` (a tarball of the tag), or ``../shared/vendor/timescaledb-2.28.3.tar.gz``
   beside the project when it exists: its sha256 must equal the pinned one;
2. a shallow ``git clone`` of the tag from TimescaleDB's public repository: its commit must equal
   the pinned one (a commit id is a hash of the whole tree, so this is the checksum).
The build (cmake + make, ~2.5-5 min on 2 cores) is kept in ``<state dir>/timescaledb/`` and staged
there with ``make install DESTDIR=...``; a stamp says it finished, so later starts cost nothing.

The extension is NOT installed into the system's PostgreSQL directories: the runner gives its
cluster a private copy of the server (``/usr/lib/postgresql/N`` and ``/usr/share/postgresql/N``,
~85 MB; PostgreSQL finds its share and library folders relative to its binary) with the staged
files added. So no root is needed, and other clusters on the machine do not see the extension:
a server that lists ``timescaledb`` as available without preloading it fails every client that
chooses the TimescaleDB migrations because the extension is listed as available.
Where no source or no build tool is at hand, the caller gets one line saying so and the cluster runs
plain PostgreSQL: never a failure.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

VERSION = "2.28.3"
#: sha256 of the tag's source tarball (as in ../shared/vendor/*.sha256)
TARBALL_SHA256 = "ec2f7de0ba53a473c01e0a57e09053898c6b1f7487228caff0f1d31c8cb2dedb"
#: the commit the tag names in the public repository
TAG_COMMIT = "4a77ff5cf1bf4348c4f0527e042434a289f06e39"
REPOSITORY = "https://github.com/timescale/timescaledb.git"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_TARBALL = PROJECT_ROOT.parent / "shared" / "vendor" / f"timescaledb-{VERSION}.tar.gz"
BUILD_TOOLS = ("cmake", "make", "cc")
CMAKE_FLAGS = ["-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF", "-DWARNINGS_AS_ERRORS=OFF", "-DCMAKE_BUILD_TYPE=Release"]

Progress = Callable[[str], None]


class Unavailable(RuntimeError):
    """TimescaleDB cannot be had on this machine; the message is the one line the user reads."""


@dataclass(frozen=True)
class Outcome:
    """Whether the server can preload TimescaleDB, and the line that says how it came to be.
    ``stage``: the folder whose ``usr/...`` tree holds the built files (None: the system's
    PostgreSQL has TimescaleDB itself, or it is not available)."""

    available: bool
    line: str
    build_seconds: float | None = None
    stage: Path | None = None


def pg_dirs(pg_config: str) -> tuple[Path, Path]:
    """(library dir, extension share dir) of the server that ``pg_config`` belongs to."""
    def ask(flag: str) -> Path:
        return Path(subprocess.run([pg_config, flag], capture_output=True, text=True, check=True).stdout.strip())
    return ask("--pkglibdir"), ask("--sharedir") / "extension"


def installed(libdir: Path, extdir: Path) -> bool:
    """The system's server has a TimescaleDB of its own (e.g. from Timescale's packages)."""
    return (libdir / "timescaledb.so").exists() and (extdir / "timescaledb.control").exists()


def source_tarball(env: Mapping[str, str]) -> Path | None:
    """The tarball to build from: VR_TIMESCALEDB_SRC, else the shared vendor copy when it exists."""
    given = env.get("VR_TIMESCALEDB_SRC")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise Unavailable(f"VR_TIMESCALEDB_SRC={given} is not a file")
        return path
    return SHARED_TARBALL if SHARED_TARBALL.is_file() else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_tarball(path: Path) -> None:
    """Refuse a tarball whose sha256 is not the pinned one (a wrong or tampered download)."""
    actual = sha256_of(path)
    if actual != TARBALL_SHA256:
        raise Unavailable(f"{path}: sha256 {actual} is not TimescaleDB {VERSION}'s {TARBALL_SHA256}")


def extract(tarball: Path, dest: Path) -> Path:
    """Unpack into ``dest`` (members must stay inside it); returns the source folder."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1 or not (tops[0] / "CMakeLists.txt").exists():
        raise Unavailable(f"{tarball} does not hold one TimescaleDB source folder")
    return tops[0]


def clone(dest: Path) -> Path:
    """Shallow clone of the tag from the public repository, checked against the pinned commit.
    (Not exercised on the project's own machines: they cannot reach the repository.)"""
    if shutil.which("git") is None:
        raise Unavailable("no source tarball and git is not installed to fetch TimescaleDB's source")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", VERSION, REPOSITORY, str(dest)],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        reason = (res.stderr.strip().splitlines() or ["git clone failed"])[-1]
        raise Unavailable(f"no source tarball and fetching {REPOSITORY} failed: {reason}")
    head = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head != TAG_COMMIT:
        raise Unavailable(f"{REPOSITORY} tag {VERSION} is commit {head}, not the pinned {TAG_COMMIT}")
    return dest


def _run(argv: list[str], cwd: Path, log: Path) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        res = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise Unavailable(f"TimescaleDB build step `{' '.join(argv[:3])}` failed (log: {log})")


def build(src: Path, pg_config: str, log: Path) -> None:
    """cmake configure + compile; ``bootstrap`` is TimescaleDB's cmake wrapper."""
    _run(["./bootstrap", *CMAKE_FLAGS, f"-DPG_CONFIG={pg_config}"], src, log)
    _run(["make", "-C", "build", f"-j{os.cpu_count() or 2}"], src, log)


def stage(src: Path, dest: Path, log: Path) -> None:
    """``make install`` into ``dest`` (DESTDIR) instead of the system's directories."""
    shutil.rmtree(dest, ignore_errors=True)
    _run(["make", "-C", "build", "install", f"DESTDIR={dest}"], src, log)


def missing_tools(pg_config: str) -> list[str]:
    """Build prerequisites not found: the compilers and the server's headers (pg_config alone comes
    with the client package; postgres.h with postgresql-server-dev)."""
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    headers = None
    if Path(pg_config).exists():
        res = subprocess.run([pg_config, "--includedir-server"], capture_output=True, text=True)
        headers = Path(res.stdout.strip()) / "postgres.h" if res.returncode == 0 else None
    if headers is None or not headers.exists():
        missing.append("the PostgreSQL server headers (postgresql-server-dev)")
    return missing


def ensure(cache: Path, pg_config: str, progress: Progress, env: Mapping[str, str] = os.environ) -> Outcome:
    """Make TimescaleDB loadable by the server of ``pg_config``; never raises for a missing piece."""
    try:
        libdir, extdir = pg_dirs(pg_config)
    except (OSError, subprocess.CalledProcessError):
        libdir = extdir = None
    if libdir is not None and installed(libdir, extdir):
        return Outcome(True, f"TimescaleDB installed on the system ({libdir})")
    try:
        return _build_and_stage(cache, pg_config, progress, env)
    except Unavailable as exc:
        return Outcome(False, f"TimescaleDB unavailable, running plain PostgreSQL: {exc}")


def _build_and_stage(cache: Path, pg_config: str, progress: Progress, env: Mapping[str, str]) -> Outcome:
    staged = cache / "stage"
    stamp = cache / f"built-{VERSION}"
    want = f"{TAG_COMMIT} {pg_config}"
    log = cache / "build.log"
    if stamp.exists() and stamp.read_text() == want:
        if not staged.is_dir():
            stage(cache / "src" / f"timescaledb-{VERSION}", staged, log)
        return Outcome(True, f"TimescaleDB {VERSION} (built earlier, in {cache})", stage=staged)
    missing = missing_tools(pg_config)
    if missing:
        raise Unavailable(f"cannot build it without {', '.join(missing)} (deploy/bootstrap.sh installs them)")
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tarball = source_tarball(env)
    if tarball is not None:
        progress(f"postgres: building TimescaleDB {VERSION} from {tarball} (first time only, ~2.5-5 min; log {log})")
        verify_tarball(tarball)
        src = extract(tarball, cache / "src")
    else:
        progress(f"postgres: fetching TimescaleDB {VERSION} from {REPOSITORY} (first time only; log {log})")
        src = clone(cache / "src" / f"timescaledb-{VERSION}")
    stamp.unlink(missing_ok=True)
    build(src, pg_config, log)
    stage(src, staged, log)
    stamp.write_text(want)
    took = time.monotonic() - t0
    return Outcome(True, f"TimescaleDB {VERSION} built in {took:.0f} s (log {log})", took, staged)


def private_server(system_bindir: Path, staged: Path, dest: Path, progress: Progress) -> Path:
    """A copy of the system's PostgreSQL (bin, lib, share of one major version) with TimescaleDB's
    staged files added; returns its bin folder. Redone when the system's server binary changes
    (a Debian update) or the build does; otherwise it is left as it is (a no-op)."""
    major_root = system_bindir.parent                      # /usr/lib/postgresql/15
    share = Path("/usr/share/postgresql") / major_root.name  # Debian's layout
    binary = system_bindir / "postgres"
    st = binary.stat()
    want = f"{binary} {st.st_size} {st.st_mtime_ns} {TAG_COMMIT}"
    stamp = dest / "copied-from"
    lib_dest = dest / "lib" / "postgresql" / major_root.name
    if stamp.exists() and stamp.read_text() == want:
        return lib_dest / "bin"
    progress(f"postgres: private copy of {major_root} with TimescaleDB {VERSION} in {dest}")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(major_root, lib_dest, symlinks=True)
    shutil.copytree(share, dest / "share" / "postgresql" / major_root.name, symlinks=True)
    for kind, target in (("lib", lib_dest), ("share", dest / "share" / "postgresql" / major_root.name)):
        src_dir = staged / "usr" / kind / "postgresql" / major_root.name
        for f in src_dir.rglob("*"):
            if f.is_file():
                out = target / f.relative_to(src_dir)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out)
    stamp.write_text(want)
    return lib_dest / "bin"


def preload_conf(available: bool) -> str:
    """The cluster's TimescaleDB settings (an included file, rewritten at every start so the server
    never preloads a library that is not there)."""
    if not available:
        return "# vreserve: TimescaleDB not available; plain PostgreSQL\n"
    return ("# vreserve: TimescaleDB\n"
            "shared_preload_libraries = 'timescaledb'\n"
            "timescaledb.telemetry_level = off\n"
            # one policy scheduler per database with the extension, plus its jobs: tests and
            # benchmarks keep a few dozen databases at once
            "timescaledb.max_background_workers = 32\n"
            "max_worker_processes = 48\n")
