"""Link files: read CSV, JSON and the exports of YOURLS, Shlink and Bitly; write CSV and JSON.

Readers stream: they yield one `RawRow` (snip.service_layer.importer) per record (strings as
found, not yet validated) with its row number in the file, so a file of a million links never
sits in memory.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from snip.domain.links import Link
from snip.service_layer.importer import RawRow

FORMATS = ("csv", "json", "yourls", "shlink", "bitly")
EXPORT_FORMATS = ("csv", "json")
# The columns `snip export` writes, in order; `snip import` reads them all back.
EXPORT_COLUMNS = ("code", "url", "title", "tags", "owner", "created_at", "expires_at",
                  "max_visits", "visits", "disabled", "redirect_status", "password_hash")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long URLs are allowed (up to 8 KB and more)


class FormatError(Exception):
    """The file cannot be read as the format asked for (a fatal error, unlike a bad row)."""


# Header names seen in the wild → our field. Headers are compared lower-cased with spaces and
# dashes as underscores ("Long URL" → long_url, "shortCode" → shortcode).
_ALIASES = {
    "url": "url", "long_url": "url", "longurl": "url", "destination": "url",
    "destination_url": "url", "target": "url", "target_url": "url", "original_url": "url",
    "code": "code", "keyword": "code", "shortcode": "code", "short_code": "code", "slug": "code",
    "title": "title", "name": "title",
    "tags": "tags", "tag": "tags",
    "created_at": "created_at", "createdat": "created_at", "created": "created_at",
    "date_created": "created_at", "datecreated": "created_at", "timestamp": "created_at",
    "creation_date": "created_at",
    "visits": "visits", "clicks": "visits", "visitscount": "visits", "total_clicks": "visits",
    "owner": "owner",
    "expires_at": "expires_at", "validuntil": "expires_at",
    "max_visits": "max_visits", "maxvisits": "max_visits",
    "disabled": "disabled",
    "redirect_status": "redirect_status",
    "password": "password",
    "password_hash": "password_hash",
}
# Columns holding a short URL whose last path segment is the code (Bitly, older Shlink).
_SHORT_URL_COLUMNS = ("custom_link", "link", "bitlink", "short_link", "short_url", "shorturl")
YOURLS_COLUMNS = ("keyword", "url", "title", "timestamp", "ip", "clicks")


def _key(header: str) -> str:
    return header.strip().lstrip("\ufeff").lower().replace(" ", "_").replace("-", "_")


def detect(path: Path) -> str:
    """Guess the format from the name and the first line."""
    if path.suffix.lower() in (".json", ".jsonl", ".ndjson"):
        return "json"
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    if first.lstrip().startswith(("[", "{")):
        return "json"
    header = {_key(h) for h in next(csv.reader([first]), [])}
    if {"keyword", "url"} <= header or (len(header) == 6 and "keyword" in header):
        return "yourls"
    if "longurl" in header or "shortcode" in header or "shorturl" in header:
        return "shlink"
    if "long_url" in header and header & {"link", "bitlink", "custom_link"}:
        return "bitly"
    if "url" in header:
        return "csv"
    raise FormatError(f"cannot tell the format of {path.name}: its first line has no url "
                      "column; name it with --format")


def read(path: Path, fmt: str) -> Iterator[RawRow]:
    """Stream the records of `path` in format `fmt` (see FORMATS; 'auto' to detect)."""
    if fmt == "auto":
        fmt = detect(path)
    if fmt == "json":
        return _read_json(path)
    if fmt in ("csv", "yourls", "shlink", "bitly"):
        return _read_csv(path, fmt)
    raise FormatError(f"unknown format {fmt!r}; choose one of auto, {', '.join(FORMATS)}")


def _split_tags(value: str, fmt: str) -> list[str]:
    # Shlink's web client joins with '|' (older versions with ','); ours with ','.
    sep = "|" if "|" in value else ","
    return [t for t in (p.strip() for p in value.split(sep)) if t]


def _code_from_short_url(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if "://" not in value:
        value = "https://" + value  # Bitly writes "bit.ly/abc"
    path = urlsplit(value).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or None


def _read_csv(path: Path, fmt: str) -> Iterator[RawRow]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        keys = [_key(h) for h in header]
        if fmt == "yourls" and "keyword" not in keys and len(keys) == len(YOURLS_COLUMNS):
            # An export without a header row: the table's own column order.
            keys = list(YOURLS_COLUMNS)
            yield from _csv_rows(fmt, keys, [header], 1)
            start = 2
        else:
            start = 1
        yield from _csv_rows(fmt, keys, reader, start)


def _csv_rows(fmt: str, keys: list[str], records: Iterable[list[str]], start: int
              ) -> Iterator[RawRow]:
    fields = [(i, _ALIASES[k]) for i, k in enumerate(keys) if k in _ALIASES]
    short_cols = [keys.index(k) for k in _SHORT_URL_COLUMNS if k in keys]
    if not any(f == "url" for _, f in fields):
        raise FormatError("the file has no url column (url, long_url, longUrl, ...)")
    width = len(keys)
    simple = fmt == "csv" and not short_cols and all(f in ("url", "code", "title") for _, f in fields)
    url_i = next(i for i, f in fields if f == "url")
    code_i = next((i for i, f in fields if f == "code"), None)
    title_i = next((i for i, f in fields if f == "title"), None)
    n = start - 1
    for record in records:
        n += 1
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        if simple:  # the fast path for the common url[,code][,title] file
            if len(record) < width:
                record += [""] * (width - len(record))
            yield RawRow(n, record[url_i] or None,
                         (record[code_i] or None) if code_i is not None else None,
                         (record[title_i] or None) if title_i is not None else None)
            continue
        found: dict[str, Any] = {}
        for i, name in fields:
            value = record[i] if i < len(record) else ""
            if value == "":
                continue
            found[name] = _split_tags(value, fmt) if name == "tags" else value
        if "code" not in found:
            for i in short_cols:
                if i < len(record) and record[i].strip():
                    found["code"] = _code_from_short_url(record[i])
                    break
        yield RawRow(row=n, **{"url": None, **found})


def _read_json(path: Path) -> Iterator[RawRow]:
    """A JSON list of objects (or {"links": [...]}, or JSON Lines: one object per line)."""
    with path.open(encoding="utf-8-sig") as f:
        head = f.read(1 << 16)
        f.seek(0)
        stripped = head.lstrip()
        if stripped.startswith("{") and "\n{" in stripped and not stripped.startswith('{"links"'):
            for n, line in enumerate(f, 1):  # JSON Lines
                if line.strip():
                    yield _json_row(n, _loads(line, n))
            return
        try:
            data = json.load(f)
        except ValueError as exc:
            raise FormatError(f"not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("links", data.get("items"))
    if not isinstance(data, list):
        raise FormatError("JSON must be a list of link objects (or {\"links\": [...]})")
    for n, item in enumerate(data, 1):
        yield _json_row(n, item)


def _loads(line: str, n: int) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return f"line {n} is not valid JSON"


def _json_row(n: int, item: Any) -> RawRow:
    if not isinstance(item, dict):
        return RawRow(n, None)  # reported as a row without a url
    found: dict[str, Any] = {}
    short: str | None = None
    for key, value in item.items():
        name = _ALIASES.get(_key(key))
        if name is None or value is None:
            if _key(key) in _SHORT_URL_COLUMNS and isinstance(value, str):
                short = short or _code_from_short_url(value)
            continue
        if name == "tags":
            found[name] = [str(t) for t in value] if isinstance(value, list) else _split_tags(
                str(value), "json")
        elif isinstance(value, bool):
            found[name] = "true" if value else "false"
        else:
            found[name] = str(value)
    if "code" not in found and short:
        found["code"] = short
    return RawRow(row=n, **{"url": None, **found})


# -- writers -----------------------------------------------------------------------------------


def _export_values(link: Link) -> list[Any]:
    return [link.code, link.url, link.title, ",".join(link.tags), link.owner,
            _iso(link.created_at), _iso(link.expires_at), link.max_visits, link.visits,
            link.disabled, link.redirect_status, link.password_hash]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


class CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._writer.writerow(EXPORT_COLUMNS)

    def write(self, batch: Iterable[Link]) -> None:
        self._writer.writerows(
            ["" if v is None else ("true" if v is True else "false" if v is False else v)
             for v in _export_values(link)] for link in batch)

    def close(self) -> None:
        pass


class JsonWriter:
    """A JSON list written one object at a time, so it streams like the CSV."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._first = True
        out.write("[")

    def write(self, batch: Iterable[Link]) -> None:
        for link in batch:
            obj = dict(zip(EXPORT_COLUMNS, _export_values(link), strict=True))
            obj["tags"] = list(link.tags)
            self._out.write(("\n" if self._first else ",\n") + json.dumps(obj, ensure_ascii=False))
            self._first = False

    def close(self) -> None:
        self._out.write("\n]\n")


def writer(fmt: str, out: IO[str]) -> CsvWriter | JsonWriter:
    if fmt == "csv":
        return CsvWriter(out)
    if fmt == "json":
        return JsonWriter(out)
    raise FormatError(f"unknown export format {fmt!r}; choose csv or json")
