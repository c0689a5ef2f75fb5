"""Bulk creation, QR codes and password-protected links (issue 5)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
pages = APIRouter(include_in_schema=False)
