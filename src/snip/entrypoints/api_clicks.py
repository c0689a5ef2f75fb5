"""Click statistics and raw clicks (issue 4)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
