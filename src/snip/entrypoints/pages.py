"""HTML pages people see in a browser: not found, gone, unavailable, preview, and the create form.

Pages for the redirect hot path are rendered once, at import, into bytes.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
    "color:#222;line-height:1.5}h1{font-size:1.5rem}code,.url{word-break:break-all;"
    "background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}input[type=url],input[type=text]"
    "{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}button{margin-top:.5rem;"
    "padding:.5rem 1rem;font-size:1rem}.error{color:#a00}.muted{color:#666}"
)


def page(title: str, body_html: str) -> str:
    """A complete HTML document; `title` is escaped here, `body_html` must already be safe."""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\">"
        f"<title>{escape(title)} · snip</title><style>{_STYLE}</style></head>"
        f"<body>{body_html}</body></html>\n"
    )


NOT_FOUND = page(
    "Link not found",
    "<h1>Link not found</h1><p>There is no short link at this address. "
    "Check that it was copied whole.</p>",
).encode()

GONE = page(
    "Link no longer available",
    "<h1>This link is no longer available</h1><p>The short link has expired, reached its "
    "visit limit or was disabled by its owner.</p>",
).encode()

BLOCKED = page(
    "Link blocked",
    "<h1>This link has been blocked</h1><p>Its destination was reported or matched a "
    "blocklist of unsafe sites, so snip will not send you there. If you think this is a "
    "mistake, contact the people who run this service.</p>",
).encode()

TOO_MANY = page(
    "Too many requests",
    "<h1>Too many requests</h1><p>Too many requests for unknown links came from your "
    "address. Please wait a minute and try again.</p>",
).encode()

UNAVAILABLE = page(
    "Temporarily unavailable",
    "<h1>Temporarily unavailable</h1><p>snip cannot look this link up right now. "
    "Please try again in a few seconds.</p>",
).encode()


def preview(*, code: str, url: str, title: str | None, created_at: datetime,
            short_url: str, gone_reason: str | None, blocked: bool = False) -> str:
    """The `/{code}+` page: where a link goes, without going there."""
    status = (
        f"<p class=\"error\">This link is {escape(gone_reason)} and no longer redirects.</p>"
        if gone_reason
        else ""
    )
    # A blocked destination (blocklist, report) is named, but not offered as a link to follow.
    follow = (
        f"<p><a href=\"{escape(url, quote=True)}\" rel=\"noopener noreferrer nofollow\">"
        "Continue to the destination</a></p>"
    )
    if blocked:
        status += ("<p class=\"error\" role=\"alert\">This link has been blocked: its "
                   "destination is on a blocklist of unsafe sites or was reported as abusive, "
                   "so it does not redirect.</p>")
        follow = ""
    title_html = f"<p><strong>{escape(title)}</strong></p>" if title else ""
    return page(
        f"Preview of {code}",
        f"<h1>Where <code>{escape(short_url)}</code> goes</h1>{title_html}"
        f"<p>Destination:<br><span class=\"url\">{escape(url)}</span></p>{status}"
        f"<p class=\"muted\">Created {escape(created_at.strftime('%Y-%m-%d %H:%M UTC'))}</p>"
        f"{follow}",
    )


def home(*, error: str | None = None, url: str = "", short_url: str | None = None,
         target: str | None = None) -> str:
    """The create form, with the result of the last submission or the reason it was refused."""
    parts = ["<h1>Shorten a link</h1>"]
    if short_url and target:
        parts.append(
            f"<p>Your short link: <a class=\"url\" href=\"{escape(short_url, quote=True)}\">"
            f"{escape(short_url)}</a><br><span class=\"muted\">goes to "
            f"{escape(target)}</span></p>"
        )
    if error:
        parts.append(f"<p class=\"error\" role=\"alert\">{escape(error)}</p>")
    parts.append(
        "<form method=\"post\" action=\"/\"><label for=\"url\">Long URL</label>"
        f"<input type=\"url\" id=\"url\" name=\"url\" required value=\"{escape(url, quote=True)}\""
        " placeholder=\"https://example.com/a/long/address\">"
        "<label for=\"code\">Custom code (optional)</label>"
        "<input type=\"text\" id=\"code\" name=\"code\" pattern=\"[A-Za-z0-9_\\-]+\">"
        "<button type=\"submit\">Shorten</button></form>"
        "<p class=\"muted\">API: <a href=\"/docs\">/docs</a></p>"
    )
    return page("Shorten a link", "".join(parts))


def problem_page(status: int, title: str, detail: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(detail)}</p>"
                       f"<p class=\"muted\">HTTP {status}</p>")
