"""Property-based API testing: schemathesis drives every operation in /openapi.json.

The app runs in-process on a temporary SQLite database. Schemathesis runs the app's lifespan
itself (so the database is migrated and the visit counter runs, as under a real server) and
ends it after each test.
"""

from __future__ import annotations

import asyncio
import atexit
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from snip.bootstrap import create_app, running
from snip.config import Settings
from snip.domain.accounts import Actor
from snip.service_layer.links import NewLink

# Loaded at import: `schemathesis.pytest.from_fixture` fails under pytest 9 (it sets the
# private `Function._nodeid`), so the schema (and its database) cannot come from a fixture.
_DB_DIR = Path(tempfile.mkdtemp(prefix="snip-schemathesis-"))
atexit.register(shutil.rmtree, _DB_DIR, ignore_errors=True)
CONFIG = Settings(database_url=f"sqlite:///{_DB_DIR / 'snip.db'}", base_url="http://snip.test",
                  rate_limit_create="off", rate_limit_anonymous_create="off",
                  rate_limit_reports="off")  # fuzz freely

# Links the fuzzer is steered to, so read/change/delete reach real links and not only 404s.
SEEDED_CODES = [f"seed-{n}" for n in range(12)]
# Random strings are almost never URLs snip accepts; most bodies get one of these instead.
VALID_URLS = st.one_of(
    st.sampled_from(["https://example.com/", "http://example.org/a?b=c#d",
                     "https://xn--bcher-kva.example/p%20q", "https://example.com:8443/x/../y"]),
    st.from_regex(r"https://[a-z]{1,10}\.example/[A-Za-z0-9/._~-]{0,40}", fullmatch=True),
)


SEEDED_USERS = [f"seed-user-{n}" for n in range(4)]
SEEDED_KEY_IDS: list[int] = []
SEEDED_REPORT_IDS: list[int | None] = []
ADMIN: dict[str, Any] = {}  # the admin's key (sent with every case) and its id


async def _seed() -> None:
    async with running(CONFIG) as snip:  # migrates the database, as `snip serve` would
        for code in SEEDED_CODES:
            await snip.links.create(NewLink(url="https://example.com/seeded", code=code))
        assert snip.accounts is not None
        system = Actor.system()
        _, made = await snip.accounts.create_user(system, "admin", "admin", with_key=True)
        assert made is not None
        ADMIN.update(key=made.key, id=made.info.id)
        for name in SEEDED_USERS:
            await snip.accounts.create_user(system, name)
            for _ in range(3):
                SEEDED_KEY_IDS.append((await snip.accounts.create_key(system, name)).info.id)
        assert snip.abuse is not None  # reports to resolve
        for code in SEEDED_CODES[:4]:
            SEEDED_REPORT_IDS.append(await snip.abuse.report(
                code, reason="spam", comment=None, reporter="-", address=None))


asyncio.run(_seed())
# Path parameters the fuzzer is steered to, so that routes reach real users and keys too.
SEEDS: dict[str, list[Any]] = {"code": SEEDED_CODES, "name": SEEDED_USERS,
                               "key_id": SEEDED_KEY_IDS, "report_id": SEEDED_REPORT_IDS}
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(CONFIG))

# Every status each operation answered, across all its generated cases.
STATUSES: defaultdict[str, Counter[int]] = defaultdict(Counter)


@schema.hook
def before_generate_body(_context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def with_valid_url(body: Any) -> st.SearchStrategy[Any]:
        if isinstance(body, dict) and "url" in body:
            return VALID_URLS.map(lambda url: {**body, "url": url})
        if isinstance(body, dict) and "user" in body:  # a new API key: for a real user
            return st.sampled_from(SEEDED_USERS).map(lambda user: {**body, "user": user})
        return st.just(body)

    valid = strategy.flatmap(with_valid_url)
    return st.one_of(strategy, valid, valid)


@schema.hook
def before_generate_path_parameters(
    context: Any, strategy: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    operation = getattr(context, "operation", None)
    names = re.findall(r"{(\w+)}", operation.path) if operation is not None else []
    known = {name: st.sampled_from(SEEDS[name]) for name in names if name in SEEDS}
    if not known:
        return strategy
    return st.one_of(strategy, st.fixed_dictionaries(known))


@pytest.fixture(autouse=True)
def _cases_also_succeed() -> Iterator[None]:
    """After fuzzing an operation, it must have answered 2xx at least once: the app really ran."""
    before = {label: counts.copy() for label, counts in STATUSES.items()}
    yield
    for label, counts in STATUSES.items():
        new = counts - before.get(label, Counter())
        if new:
            assert any(200 <= status < 300 for status in new), \
                f"{label} never succeeded while fuzzed: {dict(new)}"


def _is_admin_key_id(value: Any) -> bool:
    """Would the API read this path parameter as the admin key's id (1, "1", "01", "+1")?"""
    try:
        return int(str(value).strip()) == ADMIN["id"]
    except ValueError:
        return False


@schema.parametrize()
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_answers_without_5xx_and_as_documented(case: schemathesis.Case[Any]) -> None:
    if _is_admin_key_id((case.path_parameters or {}).get("key_id")):
        case.path_parameters["key_id"] = SEEDED_KEY_IDS[0]  # revoking it would end the run
    # Both headers, so that key values the fuzzer makes up for either scheme are replaced.
    response = case.call(headers={"Authorization": f"Bearer {ADMIN['key']}",
                                  "X-Api-Key": ADMIN["key"]})
    STATUSES[case.operation.label][response.status_code] += 1
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


def test_validation_errors_are_documented_as_sent() -> None:
    case = schema["/api/v1/links"]["GET"].Case(query={"per_page": "0"})
    response = case.call(headers={"Authorization": f"Bearer {ADMIN['key']}"})
    assert response.status_code == 422
    case.validate_response(response, checks=[content_type_conformance,
                                             response_schema_conformance])


async def test_method_not_allowed_lists_every_allowed_method(client: httpx.AsyncClient) -> None:
    # Found by schemathesis' allow_header_conformance check (RFC 9110 section 15.5.6).
    collection = await client.put("/api/v1/links")
    assert collection.status_code == 405
    assert sorted(collection.headers["allow"].replace(" ", "").split(",")) == ["GET", "POST"]
    item = await client.put("/api/v1/links/abc")
    assert item.status_code == 405
    assert sorted(item.headers["allow"].replace(" ", "").split(",")) == ["DELETE", "GET", "PATCH"]
