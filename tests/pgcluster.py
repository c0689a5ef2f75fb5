"""Throwaway PostgreSQL clusters and redis-servers for tests that break their database on purpose.

Each instance lives in its own temporary directory on a free loopback port, so the shared
services on the machine (the system PostgreSQL, the Redis on 6379) are never touched: every
signal here goes only to process ids this module started itself.

    with pg_cluster() as pg:          # initdb + pg_ctl start; skips if PostgreSQL is not installed
        pg.url                        # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.stop(); pg.start()         # a clean shutdown and a restart on the same port
        pg.freeze(); pg.thaw()        # SIGSTOP / SIGCONT the postmaster and all its backends

    with redis_server() as redis:     # redis-server --save "" --appendonly no on a free port
        redis.url; redis.stop(); redis.start(); redis.freeze(); redis.thaw()

Every wait is bounded; clean-up (thaw, stop, delete) runs however the block is left.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

PG_START_TIMEOUT = 30  # seconds, for pg_ctl -w -t (start and stop)
PG_COMMAND_TIMEOUT = 60.0  # seconds, hard limit on any initdb / pg_ctl process
REDIS_START_TIMEOUT = 10.0
REDIS_STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3


def _unavailable(reason: str) -> None:
    """Skip, except on CI, where a missing server means a broken image: fail loudly there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run)", pytrace=False)
    pytest.skip(reason)


def find_pg_bindir() -> Path | None:
    """The newest `/usr/lib/postgresql/*/bin` holding initdb and pg_ctl (else from PATH)."""
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        version = bindir.parent.name
        if (bindir / "pg_ctl").exists():
            candidates.append((int(version) if version.isdigit() else 0, bindir))
    if candidates:
        return max(candidates)[1]
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    return None


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (PostgreSQL's backends are all postmaster children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class PgCluster:
    """One PostgreSQL cluster of our own: initdb'd in a temp dir, trust auth, loopback only."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="snip-pg-"))
        self.data = self.root / "data"
        self.sockdir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = 0
        self.pid: int | None = None  # the postmaster, while running
        self._frozen: list[int] = []
        # PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user.
        self._as_postgres = os.geteuid() == 0
        self.sockdir.mkdir()
        if self._as_postgres:
            for path in (self.root, self.sockdir):
                shutil.chown(path, "postgres", "postgres")

    # -- plumbing ---------------------------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        # As root: Python's own setuid/setgid (no PAM, no runuser needed), root's groups dropped.
        user = "postgres" if self._as_postgres else None
        groups: list[str] | None = [] if self._as_postgres else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", HOME=str(self.root))
        try:
            done = subprocess.run(command, cwd=self.root, env=env, capture_output=True,
                                  text=True, timeout=PG_COMMAND_TIMEOUT, check=False,
                                  user=user, group=user, extra_groups=groups)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{args[0]} ran over {PG_COMMAND_TIMEOUT} s\n{self.log()}") from None
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited with {done.returncode}\n"
                                 f"{done.stdout}{done.stderr}\n--- server log ---\n{self.log()}")
        return done

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return "<no log>"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self.pid is not None

    # -- life cycle -------------------------------------------------------------------------------

    def init(self) -> None:
        # --no-sync: a throwaway cluster need not survive a power cut, and initdb is 10× faster.
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def start(self) -> None:
        """Start (again) and wait until it accepts connections; keeps its port after the first."""
        assert not self.running, "already running"
        ports = [self.port] if self.port else [free_port() for _ in range(PORT_ATTEMPTS)]
        for port in ports:
            options = (f"-p {port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                       # speed over durability: this cluster is deleted after the test
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o",
                             options, "-w", "-t", str(PG_START_TIMEOUT), "start", check=False)
            if done.returncode == 0:
                self.port = port
                self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
                return
            if "already in use" not in self.log().lower():
                break
            # Someone took the port between free_port() and the bind: try another.
        raise AssertionError(f"PostgreSQL did not start\n{done.stdout}{done.stderr}\n"
                             f"--- server log ---\n{self.log()}")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast` (clients are disconnected; idempotent). Thaws a frozen cluster."""
        if not self.running:
            return
        self.thaw()
        done = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t",
                         str(PG_START_TIMEOUT), "stop", check=False)
        if done.returncode != 0 and self.pid is not None:
            # Last resort, on our own postmaster only; its children exit when it is gone.
            children = _children(self.pid)  # before the kill: orphans are re-parented
            _signal(self.pid, signal.SIGKILL)
            for child in children:
                _signal(child, signal.SIGKILL)
        self.pid = None

    def freeze(self) -> None:
        """SIGSTOP the postmaster, then every child: connections stay open, nothing answers.

        The postmaster first, so it cannot fork a backend that escapes the freeze. The kernel still
        completes TCP handshakes into the listen backlog, so clients see a hang, not a refusal.
        """
        assert self.pid is not None, "not running"
        if self._frozen:
            return
        _signal(self.pid, signal.SIGSTOP)
        self._frozen = [self.pid]
        for child in _children(self.pid):
            _signal(child, signal.SIGSTOP)
            self._frozen.append(child)

    def thaw(self) -> None:
        """SIGCONT everything `freeze` stopped (idempotent)."""
        frozen, self._frozen = self._frozen, []
        for pid in reversed(frozen):
            _signal(pid, signal.SIGCONT)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A started throwaway cluster; skipped (failed when CI=true) if PostgreSQL is not installed."""
    bindir = find_pg_bindir()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bindir is not None
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root, and there is no `postgres` user to run initdb as")
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- redis-server -----------------------------------------------------------------------------------


class RedisServer:
    """One redis-server of our own: no persistence, loopback only, its own temp dir."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="snip-redis-"))
        self.log_path = self.root / "redis.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return "<no log>"

    def start(self) -> None:
        """Start (again) and wait for PONG; keeps its port after the first start."""
        assert self.process is None, "already running"
        ports = [self.port] if self.port else [free_port() for _ in range(PORT_ATTEMPTS)]
        for port in ports:
            command = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(self.root), "--daemonize", "no",
                       "--logfile", str(self.log_path)]
            process = subprocess.Popen(command, cwd=self.root, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
            deadline = time.monotonic() + REDIS_START_TIMEOUT
            while time.monotonic() < deadline and process.poll() is None:
                if _redis_ping(port):
                    self.port, self.process = port, process
                    return
                time.sleep(0.02)
            if process.poll() is None:
                process.kill()
                process.wait(5)
                break
            if "address already in use" not in self.log().lower():
                break
        raise AssertionError(f"redis-server did not start\n--- log ---\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (thawing first), then SIGKILL after a bounded wait; idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        self._thaw_pid(process.pid)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(REDIS_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def _thaw_pid(self, pid: int) -> None:
        if self._frozen:
            _signal(pid, signal.SIGCONT)
            self._frozen = False

    def freeze(self) -> None:
        assert self.process is not None, "not running"
        _signal(self.process.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        if self.process is not None:
            self._thaw_pid(self.process.pid)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started throwaway redis-server; skipped (failed when CI=true) if it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed")
    assert binary is not None
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.close()
