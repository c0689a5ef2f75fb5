"""Users, API keys and the audit log (issue 5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
