"""RFC 9457 problem details: every API error is `application/problem+json` saying what is wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from snip.domain import accounts, errors
from snip.entrypoints import pages

PROBLEM_JSON = "application/problem+json"

STATUS = {
    errors.InvalidURL: 422,
    errors.InvalidCode: 422,
    errors.InvalidLink: 422,
    errors.CodeTaken: 409,
    errors.LinkNotFound: 404,
    errors.CodeSpaceExhausted: 503,
    errors.StorageUnavailable: 503,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.RateLimited: 429,
    errors.BlockedURL: 422,
    accounts.InvalidAccount: 422,
    accounts.AccountExists: 409,
    accounts.AccountNotFound: 404,
}

# Documented at /problems/{kind}; the `type` member of each problem points there.
DESCRIPTIONS = {
    "invalid-url": "The destination URL was refused. `reason` names the rule it broke.",
    "invalid-code": "The custom code breaks the alphabet, length or reserved-word rules.",
    "invalid-link": "A link field is out of bounds.",
    "code-taken": "The custom code already belongs to another link. Choose another code.",
    "not-found": "No resource exists at this address.",
    "code-space-exhausted": "Random codes kept colliding; the operator should raise "
                            "SNIP_CODE_LENGTH.",
    "storage-unavailable": "The database cannot be reached now. Retry after `Retry-After` "
                           "seconds.",
    "validation-error": "The request body or parameters do not match the API schema. "
                        "`errors` lists each problem.",
    "unauthorized": "An API key is needed: send `Authorization: Bearer KEY` or `X-Api-Key: KEY`.",
    "forbidden": "The API key is valid but its role or scopes do not allow this action.",
    "rate-limited": "Too many requests. Retry after `Retry-After` seconds; `RateLimit-*` headers "
                    "give the limit, what is left and when it resets.",
    "blocked-url": "The destination is on the blocklist or was refused by a URL checker.",
    "invalid-account": "A user name, role, scope, key name or key expiry is not acceptable.",
    "account-exists": "A user with this name exists already.",
    "http-error": "A generic HTTP error.",
}


def problem(status: int, kind: str, title: str, detail: str, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"/problems/{kind}", "title": title, "status": status,
                            "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def error_headers(exc: errors.SnipError, status: int) -> dict[str, str] | None:
    """The headers an error needs: Retry-After on 503 and 429, RateLimit-* on 429, a challenge on 401."""
    if isinstance(exc, errors.RateLimited):
        return {"Retry-After": str(exc.retry_after), "RateLimit-Limit": str(exc.limit),
                "RateLimit-Remaining": str(exc.remaining), "RateLimit-Reset": str(exc.reset)}
    if status == 503:
        return {"Retry-After": "5"}
    if status == 401:
        return {"WWW-Authenticate": 'Bearer realm="snip"'}
    return None


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/shorten")) and "text/html" in \
        request.headers.get("accept", "")


def install(app: FastAPI) -> None:
    """Register handlers that turn snip's errors and framework errors into problem details."""

    @app.exception_handler(errors.SnipError)
    async def _snip_error(request: Request, exc: errors.SnipError) -> Any:
        status = STATUS.get(type(exc), 400)
        headers = error_headers(exc, status)
        if _wants_html(request):
            return HTMLResponse(pages.problem_page(status, exc.title, exc.detail), status,
                                headers=headers)
        extra = {"reason": exc.reason} if isinstance(exc, errors.InvalidURL) else {}
        return problem(status, exc.kind, exc.title, exc.detail, request.url.path, headers,
                       **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Any:
        found = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        first = found[0] if found else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
        return problem(422, "validation-error", "Invalid request",
                       f"{where}: {first['msg']}", request.url.path, errors=found)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; RFC 9110 wants them all.
            headers = (headers or {}) | {"Allow": ", ".join(_allowed_methods(app, request))}
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if _wants_html(request):
            return HTMLResponse(pages.problem_page(exc.status_code, title, detail),
                                exc.status_code, headers=headers)
        kind = "not-found" if exc.status_code == 404 else "http-error"
        return problem(exc.status_code, kind, title, detail, request.url.path, headers)


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route answers at this path (routers may nest, so ask each method)."""
    allowed = []
    for method in ("DELETE", "GET", "PATCH", "POST", "PUT"):
        scope = dict(request.scope, method=method)
        if any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def document(app: FastAPI, problem_model: type[BaseModel]) -> None:
    """Make /openapi.json say what is sent: every 4xx/5xx is `application/problem+json`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in problem_model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        ).get("$defs", {}).items():
            components[name] = definition
        own = problem_model.model_json_schema(ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        components[problem_model.__name__] = own
        ref = {"$ref": f"#/components/schemas/{problem_model.__name__}"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if operation.get("parameters") or operation.get("requestBody"):
                    responses.setdefault("422", {"description": "Validation error"})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = {PROBLEM_JSON: {"schema": ref}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
