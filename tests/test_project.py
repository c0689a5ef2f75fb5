"""Project hygiene a user of the repository relies on: documented settings, lint and types."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snip.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f"SNIP_{name.upper()}" for name in Settings.model_fields
               if f"`SNIP_{name.upper()}`" not in readme]
    assert not missing, f"README's configuration table lacks {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "python3 scripts/dev.py serve" in first_block
    assert "python3 scripts/dev.py test" in first_block
    assert "python3 scripts/dev.py test" in (ROOT / ".ci" / "run").read_text()


def test_domain_imports_no_web_database_or_network_code() -> None:
    forbidden = ("fastapi", "starlette", "sqlalchemy", "httpx", "socket", "asyncio", "granian",
                 "redis", "urllib.request", "snip.adapters", "snip.entrypoints",
                 "snip.service_layer")
    for path in (ROOT / "src" / "snip" / "domain").glob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1]
                assert not module.startswith(forbidden), f"{path.name}: {stripped}"


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed in the test environment")
    return found


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([_tool("ruff"), "check", "src", "tests", "bench", "scripts"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes() -> None:
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
