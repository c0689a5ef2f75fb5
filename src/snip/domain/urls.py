"""URL rules: parse, check and normalise a destination URL.

A destination is parsed with `urllib.parse.urlsplit`, `ipaddress` and `idna`, never matched
against a big regular expression. `normalise_url` either returns the one spelling snip stores
and sends in the `Location` header (pure ASCII, idempotent) or raises `InvalidURL` with a
stable `reason` code and a detail sentence a person can act on.

Decisions worth knowing:

* Only `http` and `https`. Nothing is stripped: surrounding whitespace, control characters and
  invisible formatting characters are refused, not cleaned up, because a cleaned-up URL is
  not the one the user showed anybody.
* No credentials, no percent-encoded hosts, no IPv6 zone ids. Internal names (`intranet`,
  `localhost`, private and loopback addresses) are fine destinations.
* A host whose last label is a number is an IPv4 address to a browser (`127.1`, `0x7f.1`,
  `2130706433`); only the canonical dotted quad is accepted, anything else is refused rather
  than guessed.
* Path, query and fragment keep every character RFC 3986 allows, keep existing `%XX` escapes,
  and percent-encode the rest (UTF-8). Nothing is decoded or reordered. The fragment is kept.
* A URL that points back at snip itself (any of `self_origins`) is refused. The host
  comparison ignores case, a trailing dot, Unicode versus punycode spelling, and an explicit
  default port; the loopback names (`localhost`, `*.localhost`, 127.0.0.0/8, ::1, 0.0.0.0)
  count as one host, so `http://localhost:8000/x` is refused for a base of
  `http://127.0.0.1:8000`. DNS is never consulted.
"""

from __future__ import annotations

import ipaddress
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from snip.domain.errors import InvalidURL

MAX_URL_BYTES = 8000
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63

DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_PORT_NUMBERS = frozenset(DEFAULT_PORTS.values())

# Schemes people paste that are certainly not "a host name followed by a port".
_KNOWN_OTHER_SCHEMES = frozenset(
    {
        "javascript",
        "vbscript",
        "data",
        "file",
        "ftp",
        "ftps",
        "mailto",
        "tel",
        "sms",
        "blob",
        "about",
        "ws",
        "wss",
        "chrome",
        "view-source",
        "intent",
        "jar",
        "ldap",
        "gopher",
    }
)

# Invisible formatting characters that can disguise what a URL says (zero-width characters,
# bidirectional overrides and isolates, the byte order mark, soft hyphen...).
_INVISIBLE = frozenset(
    [chr(c) for c in range(0x200B, 0x2010)]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2060, 0x2065)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u00ad", "\u061c", "\u180e", "\ufeff"]
)

# Characters RFC 3986 allows literally in a path, query or fragment: unreserved, gen-delims and
# sub-delims. "%" is handled on its own (kept only as the start of a valid escape).
_URI_SAFE = frozenset(string.ascii_letters + string.digits + "-._~" + ":/?#[]@" + "!$&'()*+,;=")
_HEX = frozenset(string.hexdigits)
_HOST_LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_")
_DIGITS = frozenset(string.digits)


@dataclass(frozen=True, slots=True)
class Origin:
    """A normalised host and its effective port.

    `host` is lower-case, punycode (ASCII), without a trailing dot; an IPv6 address is written
    in compressed form without brackets. `origin_of` builds these.
    """

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class _Parsed:
    scheme: str
    host: str  # as written in the output: punycode, trailing dot kept, IPv6 in brackets
    key: str  # as compared: no trailing dot, no brackets
    port: int  # effective port
    path: str
    query: str
    fragment: str


def origin_of(base_url: str) -> Origin:
    """Return the host and effective port of snip's own public base URL.

    Raises ValueError when the base URL is not an absolute http(s) URL with a usable host.
    Surrounding whitespace (a stray newline in an environment variable) is ignored here.
    """
    if not isinstance(base_url, str):
        raise ValueError(f"the base URL must be a string, not {type(base_url).__name__}")
    try:
        parsed = _parse(base_url.strip(), MAX_URL_BYTES)
    except InvalidURL as exc:
        raise ValueError(f"the base URL {base_url!r} is unusable: {exc.detail}") from exc
    return Origin(host=parsed.key, port=parsed.port)


def normalise_url(
    raw: str,
    *,
    self_origins: Sequence[Origin] = (),
    max_bytes: int = MAX_URL_BYTES,
) -> str:
    """Return the normalised form of destination `raw`, or raise `InvalidURL` saying why not."""
    parsed = _parse(raw, max_bytes)
    for origin in self_origins:
        if _same_origin(parsed, origin):
            raise InvalidURL(
                "self-reference",
                f"the URL points back at this shortener itself ({parsed.key}); "
                "such a link would redirect to itself or to another short link",
            )
    netloc = parsed.host
    if parsed.port != DEFAULT_PORTS[parsed.scheme]:
        netloc = f"{netloc}:{parsed.port}"
    url = f"{parsed.scheme}://{netloc}{parsed.path or '/'}"
    if parsed.query:
        url = f"{url}?{parsed.query}"
    if parsed.fragment:
        url = f"{url}#{parsed.fragment}"
    size = len(url)  # pure ASCII by construction, so characters are bytes
    if size > max_bytes:
        raise InvalidURL(
            "too-long",
            f"once percent-encoded the URL is {size} bytes long; the limit is {max_bytes}",
        )
    return url


# --- parsing -------------------------------------------------------------------------------


def _parse(raw: object, max_bytes: int) -> _Parsed:
    if not isinstance(raw, str):
        raise InvalidURL("not-a-string", f"the URL must be text, not {type(raw).__name__}")
    if not raw:
        raise InvalidURL("empty", "the URL is empty")
    if len(raw) > max_bytes or len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        size = len(raw.encode("utf-8", "surrogatepass"))
        raise InvalidURL("too-long", f"the URL is {size} bytes long; the limit is {max_bytes}")
    _check_characters(raw)

    try:
        parts = urlsplit(raw)
    except ValueError as exc:
        if "NFKC" in str(exc):
            detail = (
                "the host contains a character that turns into '/', '?', '#', '@' or ':' "
                "once normalised (a full-width or compatibility form)"
            )
        else:
            detail = "the host has unbalanced square brackets or an invalid address inside them"
        raise InvalidURL("invalid-host", detail) from exc

    scheme = _check_scheme(raw, parts.scheme)
    netloc = parts.netloc
    if not netloc:
        raise InvalidURL(
            "missing-host",
            f"the URL has no host; write it as {scheme}://host/path",
        )
    if "@" in netloc:
        raise InvalidURL(
            "credentials",
            "the URL carries a user name or password (something followed by '@' before the "
            "host); links with credentials cannot be shortened",
        )
    host_raw, port_raw = _split_host_port(netloc)
    host, key = _canonical_host(host_raw)
    port = _check_port(port_raw, scheme)
    try:
        parts.port  # noqa: B018 - urlsplit's own port check must agree with ours
    except ValueError as exc:
        raise InvalidURL("invalid-port", f"the port is not a number from 1 to 65535 ({exc})") from exc
    return _Parsed(
        scheme=scheme,
        host=host,
        key=key,
        port=port,
        path=_encode_component(parts.path),
        query=_encode_component(parts.query),
        fragment=_encode_component(parts.fragment),
    )


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"{code} {name}" if name else code


def _check_characters(raw: str) -> None:
    """Refuse control, invisible-format and whitespace characters anywhere, reporting the first."""
    if raw.isprintable() and " " not in raw:
        return  # fast path: none of the characters below is printable, except the space
    last = len(raw) - 1
    for index, char in enumerate(raw):
        point = ord(char)
        where = f"at position {index + 1}"
        if point < 0x20 or 0x7F <= point <= 0x9F:
            raise InvalidURL(
                "control-character",
                f"the URL contains a control character (U+{point:04X}) {where}",
            )
        if 0xD800 <= point <= 0xDFFF:
            raise InvalidURL(
                "control-character",
                f"the URL contains an unpaired surrogate (U+{point:04X}) {where}, "
                "which is not a valid character",
            )
        if char in _INVISIBLE:
            raise InvalidURL(
                "control-character",
                f"the URL contains an invisible formatting character ({_describe(char)}) "
                f"{where}; such characters can disguise where a link goes",
            )
        if char.isspace():
            if index == 0:
                detail = f"the URL starts with whitespace ({_describe(char)}); remove it"
            elif index == last:
                detail = f"the URL ends with whitespace ({_describe(char)}); remove it"
            else:
                detail = (
                    f"the URL contains whitespace ({_describe(char)}) {where}; "
                    "write a space inside a URL as %20"
                )
            raise InvalidURL("whitespace", detail)


def _check_scheme(raw: str, scheme: str) -> str:
    """Return the (lower-case) scheme if it is http or https, else raise saying what to do."""
    if scheme in DEFAULT_PORTS:
        return scheme
    hint = "add https:// (or http://) in front, for example https://example.com/page"
    if not scheme:
        if raw.startswith("//"):
            raise InvalidURL(
                "scheme-relative",
                "the URL starts with '//' and has no scheme; write https:// or http:// instead",
            )
        raise InvalidURL("missing-scheme", f"the URL has no scheme; {hint}")
    rest = raw[len(scheme) + 1 :]
    digits = len(rest) - len(rest.lstrip(string.digits))
    port_like = digits > 0 and rest[digits : digits + 1] in ("", "/", "?", "#")
    if port_like and scheme not in _KNOWN_OTHER_SCHEMES:
        # "localhost:8080" or "example.com:8080/x": a host and port, not a scheme
        raise InvalidURL("missing-scheme", f"the URL has no scheme; {hint}")
    shown = scheme if len(scheme) <= 30 else scheme[:30] + "..."
    raise InvalidURL(
        "unsupported-scheme",
        f"the scheme '{shown}:' is not allowed; only http and https URLs can be shortened",
    )


def _split_host_port(netloc: str) -> tuple[str, str | None]:
    """Split the authority (already free of userinfo) into the raw host and raw port text."""
    if netloc.startswith("["):
        close = netloc.find("]")
        if close < 0:
            raise InvalidURL("invalid-host", "the host has an opening '[' but no closing ']'")
        after = netloc[close + 1 :]
        if after and not after.startswith(":"):
            raise InvalidURL("invalid-host", "only a ':port' may follow the ']' of an IPv6 address")
        return netloc[: close + 1], (after[1:] if after else None)
    if "[" in netloc or "]" in netloc:
        raise InvalidURL("invalid-host", "square brackets may only surround a whole IPv6 address")
    host, colon, port = netloc.partition(":")
    if ":" in port:
        raise InvalidURL(
            "invalid-host",
            "the host has more than one ':'; write an IPv6 address in square brackets, "
            "like http://[2001:db8::1]/",
        )
    return host, (port if colon else None)


def _check_port(port_raw: str | None, scheme: str) -> int:
    if not port_raw:  # no port, or "host:" with nothing after the colon
        return DEFAULT_PORTS[scheme]
    shown = port_raw if len(port_raw) <= 20 else port_raw[:20] + "..."
    if not all(c in _DIGITS for c in port_raw):
        raise InvalidURL("invalid-port", f"the port '{shown}' is not a number")
    significant = port_raw.lstrip("0")
    if not significant or len(significant) > 5 or not 1 <= int(significant) <= 65535:
        raise InvalidURL("invalid-port", f"the port {shown} is outside 1..65535")
    return int(significant)


def _is_numeric_label(label: str) -> bool:
    """True when a browser would read this last host label as (part of) an IPv4 address."""
    if label.isascii() and label.isdigit():
        return True
    return label.startswith("0x") and all(c in _HEX for c in label[2:])


def _canonical_host(host_raw: str) -> tuple[str, str]:
    """Return (host as written in the output, host as compared) or raise `InvalidURL`."""
    if not host_raw:
        raise InvalidURL("missing-host", "the URL has no host name before the port")
    if "%" in host_raw:
        raise InvalidURL(
            "invalid-host",
            "the host contains '%'; percent-encoded host names and IPv6 zone ids are not allowed",
        )
    if host_raw.startswith("["):
        inner = host_raw[1:-1]
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError as exc:
            raise InvalidURL(
                "invalid-host", f"'{inner[:60]}' inside square brackets is not an IPv6 address"
            ) from exc
        return f"[{address.compressed}]", address.compressed

    shown = host_raw if len(host_raw) <= 60 else host_raw[:60] + "..."
    if host_raw.isascii():
        mapped = host_raw.lower()
    else:
        try:
            mapped = idna.uts46_remap(host_raw, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise InvalidURL(
                "invalid-host", f"the host '{shown}' is not a valid domain name ({exc})"
            ) from exc
    trailing_dot = mapped.endswith(".")
    name = mapped[:-1] if trailing_dot else mapped
    labels = name.split(".")
    if "" in labels:
        raise InvalidURL(
            "invalid-host",
            f"the host '{shown}' has an empty label (a leading dot or two dots in a row)",
        )
    if _is_numeric_label(labels[-1]):
        try:
            address4 = ipaddress.IPv4Address(name)
        except ValueError as exc:
            raise InvalidURL(
                "invalid-host",
                f"the host '{shown}' looks like an IPv4 address but is not written as four "
                "decimal numbers from 0 to 255 (like 192.0.2.1)",
            ) from exc
        return str(address4), str(address4)

    ascii_labels = [_ascii_label(label, shown) for label in labels]
    ascii_name = ".".join(ascii_labels)
    if len(ascii_name) > MAX_HOST_LENGTH:
        raise InvalidURL(
            "invalid-host",
            f"the host name is {len(ascii_name)} characters long; the limit is {MAX_HOST_LENGTH}",
        )
    return ascii_name + ("." if trailing_dot else ""), ascii_name


def _ascii_label(label: str, shown: str) -> str:
    """Return one host label in its ASCII form (punycode for Unicode), or raise."""
    if label.isascii():
        bad = next((c for c in label if c not in _HOST_LABEL_CHARS), None)
        if bad is not None:
            raise InvalidURL(
                "invalid-host",
                f"the host '{shown}' contains '{bad}'; a host name may hold only letters, "
                "digits, '-' and '_'",
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as exc:
                raise InvalidURL(
                    "invalid-host",
                    f"the host label '{label[:63]}' is not a valid internationalised label ({exc})",
                ) from exc
        result = label
    else:
        try:
            result = idna.encode(label, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidURL(
                "invalid-host",
                f"the host '{shown}' is not a valid internationalised domain name ({exc})",
            ) from exc
    if len(result) > MAX_LABEL_LENGTH:
        raise InvalidURL(
            "invalid-host",
            f"a label of the host '{shown}' is {len(result)} characters long; "
            f"the limit is {MAX_LABEL_LENGTH}",
        )
    return result


def _encode_component(text: str) -> str:
    """Percent-encode what a URI may not hold; keep valid %XX escapes and reserved characters."""
    if all(c in _URI_SAFE for c in text):
        return text
    out: list[str] = []
    for index, char in enumerate(text):
        if char in _URI_SAFE or (char == "%" and _is_escape(text, index)):
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def _is_escape(text: str, index: int) -> bool:
    pair = text[index + 1 : index + 3]
    return len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX


# --- self reference --------------------------------------------------------------------------

_LOOPBACK = "\x00loopback"  # a key no real host can have


def _comparison_key(host: str) -> str:
    """The host as compared for self reference: all loopback spellings are one host."""
    host = host.lower().removeprefix("[").removesuffix("]").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return _LOOPBACK
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified:
        return _LOOPBACK
    return address.compressed


def _same_origin(parsed: _Parsed, origin: Origin) -> bool:
    if _comparison_key(parsed.key) != _comparison_key(origin.host):
        return False
    return parsed.port == origin.port or (
        parsed.port in _DEFAULT_PORT_NUMBERS and origin.port in _DEFAULT_PORT_NUMBERS
    )
