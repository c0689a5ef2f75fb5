"""The domain blocklist and link reports (issue 5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
