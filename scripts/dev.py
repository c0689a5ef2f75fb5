#!/usr/bin/env python3
"""Bootstrap and run snip with nothing but Python 3.11+: `serve`, `test`, or any `snip` command.

    python3 scripts/dev.py serve      # snip on http://127.0.0.1:8000, SQLite in ./snip.db
    python3 scripts/dev.py test       # the whole test suite
    python3 scripts/dev.py snip list  # any snip command in the project's environment

It makes `.venv` beside the project (or $SNIP_VENV), installs the locked, hash-checked
dependencies (requirements/*.lock) and snip itself, and reinstalls only when a lock changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("SNIP_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def _stamp(lock: str) -> Path:
    lock_path = ROOT / "requirements" / lock
    digest = hashlib.sha256(
        lock_path.read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    return VENV / f".installed-{lock}-{digest}"


def installed(lock: str) -> bool:
    return _stamp(lock).exists() and PY.exists()


def ensure_env(lock: str) -> None:
    """Create the venv and install `lock` (hash-checked) plus snip itself, once per lock content."""
    if sys.version_info < (3, 11):
        sys.exit(f"snip needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if installed(lock):
        return
    if not PY.exists():
        print(f"creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    print(f"installing locked dependencies from requirements/{lock}", file=sys.stderr)
    lock_path = ROOT / "requirements" / lock
    subprocess.run([*pip, "install", "--require-hashes", "-r", str(lock_path)], check=True)
    subprocess.run([*pip, "install", "--no-deps", "-e", str(ROOT)], check=True)
    for old in VENV.glob(f".installed-{lock}-*"):
        old.unlink()
    _stamp(lock).touch()


def _exec(argv: list[str]) -> int:
    """Become `argv`, so that signals (Ctrl-C, SIGTERM from a supervisor) reach it directly."""
    if os.name == "posix":
        os.execv(argv[0], argv)
    return subprocess.call(argv, cwd=ROOT)


def run(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "test":
        ensure_env("dev.lock")
        os.chdir(ROOT)
        return _exec([str(PY), "-m", "pytest", *rest])
    if not installed("dev.lock"):  # the test environment holds everything serve needs
        ensure_env("runtime.lock")
    if command == "snip":
        command, rest = (rest[0], rest[1:]) if rest else ("--help", [])
    return _exec([str(BIN / "snip"), command, *rest])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
