"""Country of an address from a MaxMind-format database (`SNIP_GEOIP_DB`, GeoLite2/GeoIP2)."""

from __future__ import annotations

from typing import Any

import maxminddb


class GeoIP:
    """`country_of(address)` → ISO 3166 alpha-2 code, or None when the database does not know."""

    def __init__(self, path: str) -> None:
        self._reader: Any = maxminddb.open_database(path)  # memory-mapped; lookups are µs

    def country_of(self, address: str) -> str | None:
        try:
            record = self._reader.get(address)
        except ValueError:  # not an address
            return None
        if not isinstance(record, dict):
            return None
        for key in ("country", "registered_country"):
            entry = record.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("iso_code"), str):
                return str(entry["iso_code"])[:2]
        return None

    def close(self) -> None:
        self._reader.close()
