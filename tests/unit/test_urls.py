"""The destination URL rules: what is refused (and why), and the exact spelling snip stores."""

from __future__ import annotations

import string
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from snip.domain.errors import InvalidURL
from snip.domain.urls import MAX_URL_BYTES, Origin, normalise_url, origin_of

REASONS = {
    "not-a-string", "empty", "too-long", "control-character", "whitespace", "missing-scheme",
    "scheme-relative", "unsupported-scheme", "credentials", "missing-host", "invalid-host",
    "invalid-port", "self-reference",
}  # fmt: skip


def full_width(text: str) -> str:
    """The full-width look-alike of ASCII letters (and the full-width full stop for '.')."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def reason_of(raw: object, **kwargs: object) -> str:
    with pytest.raises(InvalidURL) as caught:
        normalise_url(raw, **kwargs)  # type: ignore[arg-type]
    assert caught.value.kind == "invalid-url"
    assert caught.value.detail.strip(), "every refusal must say what is wrong"
    assert caught.value.reason in REASONS
    return caught.value.reason


def is_safe_output(url: str) -> bool:
    """What may go into a Location header: ASCII, printable, no whitespace, http(s) only."""
    return (
        url.isascii()
        and url.isprintable()
        and not any(c.isspace() for c in url)
        and url.startswith(("http://", "https://"))
        and urlsplit(url).scheme in {"http", "https"}
        and bool(urlsplit(url).hostname)
    )


# --- accepted URLs and their exact normalised form ------------------------------------------

ACCEPTED = [
    # scheme and host lower-cased, default port dropped, empty path becomes "/"
    ("HTTP://ExAmple.COM:80", "http://example.com/"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com:443/", "https://example.com/"),
    ("http://example.com:/", "http://example.com/"),
    ("http://example.com:00080/x", "http://example.com/x"),
    ("https://example.com?q=1", "https://example.com/?q=1"),
    ("https://example.com#top", "https://example.com/#top"),
    # a non-default port is kept, also the "other" default port
    ("http://example.com:443/", "http://example.com:443/"),
    ("https://example.com:80/", "https://example.com:80/"),
    ("http://10.0.0.5:8080/x", "http://10.0.0.5:8080/x"),
    # internal destinations are fine
    ("http://intranet/wiki", "http://intranet/wiki"),
    ("http://localhost:3000/x", "http://localhost:3000/x"),
    ("http://192.168.1.1/", "http://192.168.1.1/"),
    ("http://ex_ample.intranet/", "http://ex_ample.intranet/"),
    ("http://[::1]:8000/", "http://[::1]:8000/"),
    ("http://[2001:DB8:0:0::1]/", "http://[2001:db8::1]/"),
    ("http://[::ffff:192.0.2.1]/", "http://[::ffff:c000:201]/"),
    # a trailing dot is kept on names, dropped from addresses
    ("https://example.com./x", "https://example.com./x"),
    ("http://1.2.3.4./", "http://1.2.3.4/"),
    # internationalised names become punycode; path, query, fragment become UTF-8 escapes
    ("https://bücher.example/ä?q=ü#frag", "https://xn--bcher-kva.example/%C3%A4?q=%C3%BC#frag"),
    ("https://BÜCHER.example/", "https://xn--bcher-kva.example/"),
    ("https://XN--BCHER-KVA.example/", "https://xn--bcher-kva.example/"),
    ("https://bu\u0308cher.example/", "https://xn--bcher-kva.example/"),  # decomposed ü
    ("https://münchen.de./", "https://xn--mnchen-3ya.de./"),
    (f"https://{full_width('example')}.com/", "https://example.com/"),
    ("https://example\u3002com/", "https://example.com/"),  # ideographic full stop
    (
        "https://пример.рф/путь",
        "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C",
    ),
    ("https://example.com/😀", "https://example.com/%F0%9F%98%80"),
    # characters a URI may not hold are encoded, reserved ones and valid escapes are kept
    ('https://example.com/<script>"x"', "https://example.com/%3Cscript%3E%22x%22"),
    ("https://example.com/{x}|^`", "https://example.com/%7Bx%7D%7C%5E%60"),
    ("https://example.com/a\\b", "https://example.com/a%5Cb"),
    ("https://example.com/a%2Fb%zz%", "https://example.com/a%2Fb%25zz%25"),
    ("https://example.com/%e2%82%ac", "https://example.com/%e2%82%ac"),
    ("https://example.com/100%", "https://example.com/100%25"),
    ("https://example.com/?b=2&a=1&a=0", "https://example.com/?b=2&a=1&a=0"),
    (
        "https://example.com/p;x=1?q=[1]&r=a/b?c#f:/?@!$&'()*+,;=",
        "https://example.com/p;x=1?q=[1]&r=a/b?c#f:/?@!$&'()*+,;=",
    ),
    ("https://example.com/#a#b", "https://example.com/#a#b"),
    ("https://example.com/#ä", "https://example.com/#%C3%A4"),
    # nothing is resolved or reordered
    ("http://example.com/a/../b/./c", "http://example.com/a/../b/./c"),
    ("https://example.com//other.example/x", "https://example.com//other.example/x"),
    ("https://Example.com/Path/MixedCase?Q=V", "https://example.com/Path/MixedCase?Q=V"),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_accepted_urls_normalise_to_exactly(raw: str, expected: str) -> None:
    assert normalise_url(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_normalised_urls_are_safe_and_stable(raw: str, expected: str) -> None:
    result = normalise_url(raw)
    assert is_safe_output(result)
    assert normalise_url(result) == result


# --- refusals, by rule ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, 42, b"http://example.com/", ["http://example.com/"]])
def test_refuses_non_strings(raw: object) -> None:
    assert reason_of(raw) == "not-a-string"


def test_refuses_empty() -> None:
    assert reason_of("") == "empty"


def test_length_limit_counts_utf8_bytes_of_the_input() -> None:
    base = "http://a.example/"
    exactly = base + "a" * (MAX_URL_BYTES - len(base))
    assert normalise_url(exactly) == exactly
    assert reason_of(exactly + "a") == "too-long"
    # fewer characters than the limit, but more bytes
    assert reason_of(base + "é" * (MAX_URL_BYTES // 2)) == "too-long"


def test_length_limit_applies_to_the_encoded_result_too() -> None:
    raw = "http://a.example/" + "ä" * 6  # 17 + 12 = 29 bytes, 17 + 36 = 53 once encoded
    assert normalise_url(raw, max_bytes=53).endswith("%C3%A4")
    assert reason_of(raw, max_bytes=52) == "too-long"
    assert reason_of("http://a.example/abc", max_bytes=10) == "too-long"


CONTROL = ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
INVISIBLE = [
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",
    "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
    "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u00ad", "\u2060",
]  # fmt: skip
WHITESPACE = [" ", "\u00a0", "\u1680", "\u2000", "\u2009", "\u2028", "\u2029", "\u202f", "\u3000"]


@pytest.mark.parametrize("char", CONTROL + INVISIBLE)
@pytest.mark.parametrize(
    "template",
    ["{}http://example.com/", "http://exa{}mple.com/", "http://example.com/a{}b", "http://example.com/{}"],
)
def test_refuses_control_and_invisible_characters_anywhere(char: str, template: str) -> None:
    assert reason_of(template.format(char)) == "control-character"


def test_refuses_unpaired_surrogates() -> None:
    assert reason_of("http://example.com/\ud800") == "control-character"


@pytest.mark.parametrize("char", WHITESPACE)
@pytest.mark.parametrize(
    "template",
    ["{}http://example.com/", "http://example.com/{}", "http://example.com/a{}b", "http://exa{}mple.com/"],
)
def test_refuses_whitespace_anywhere_instead_of_stripping_it(char: str, template: str) -> None:
    assert reason_of(template.format(char)) == "whitespace"


def test_control_character_detail_names_the_character_and_its_position() -> None:
    with pytest.raises(InvalidURL) as caught:
        normalise_url("java\tscript:alert(1)")
    assert caught.value.reason == "control-character"
    assert "U+0009" in caught.value.detail
    assert "position 5" in caught.value.detail


def test_whitespace_detail_says_where() -> None:
    with pytest.raises(InvalidURL) as caught:
        normalise_url(" https://example.com/")
    assert "starts with" in caught.value.detail
    with pytest.raises(InvalidURL) as caught:
        normalise_url("https://example.com/a b")
    assert "position 22" in caught.value.detail and "%20" in caught.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "\x00javascript:alert(1)",
        "javascript:alert(1)\n",
        "\u200bjavascript:alert(1)",
    ],
)
def test_disguised_javascript_is_refused(raw: str) -> None:
    assert reason_of(raw) in {"control-character", "whitespace"}


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "JAVASCRIPT://example.com/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://example.com/file",
        "vbscript:msgbox(1)",
        "mailto:someone@example.com",
        "ws://example.com/socket",
        "javascript:1",
    ],
)
def test_refuses_other_schemes(raw: str) -> None:
    assert reason_of(raw) == "unsupported-scheme"


@pytest.mark.parametrize(
    "raw",
    [
        "example.com/path",
        "example.com",
        "www.example.com:443/x",
        "localhost:8080",
        "127.0.0.1:8000/x",
        "/just/a/path",
        "?q=1",
    ],
)
def test_refuses_missing_scheme_with_a_hint(raw: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        normalise_url(raw)
    assert caught.value.reason == "missing-scheme"
    assert "https://" in caught.value.detail


@pytest.mark.parametrize("raw", ["//evil.example/x", "//evil.example"])
def test_refuses_scheme_relative(raw: str) -> None:
    assert reason_of(raw) == "scheme-relative"


@pytest.mark.parametrize(
    "raw",
    [
        "http://user:pass@example.com/",
        "http://user@example.com/",
        "https://good.com@evil.example",
        "https://good.com%40x@evil.example/",
        "http://example.com\\@evil.example/",
        "http://:@example.com/",
        "http://@example.com/",
        "http://a@b@c/",
    ],
)
def test_refuses_credentials(raw: str) -> None:
    assert reason_of(raw) == "credentials"


def test_an_at_sign_in_the_path_is_not_credentials() -> None:
    assert normalise_url("https://example.com/@user") == "https://example.com/@user"


@pytest.mark.parametrize(
    "raw",
    [
        "http:example.com",
        "http:/example.com",
        "https://",
        "http:///path",
        "http://:80/",
        "https:\\\\evil.example\\x",
    ],
)
def test_refuses_missing_host(raw: str) -> None:
    assert reason_of(raw) == "missing-host"


@pytest.mark.parametrize(
    "raw",
    [
        "http://a..b/",
        "http://.example.com/",
        "http://./",
        "http://exa%6dple.com/",
        "http://example.com%0d%0a.evil/",
        "http://[fe80::1%25eth0]/",
        "http://[::1/",
        "http://[not-ipv6]/",
        "http://[1.2.3.4]/",
        "http://[::1]x/",
        "http://a[b]/",
        "http://::1/",
        "http://ex!ample.com/",
        "http://a.com\\.evil.com/",
        "http://a\uff20b/",  # full-width @
        "http://a\uff05b.com/",  # full-width %
        "http://" + "a" * 64 + ".com/",
        "http://" + ".".join(["a" * 60] * 5) + "/",
        "http://xn--zz.com/",
        "http://☃.net/",
        "http://a\u05d0.com/",  # mixed-direction label
        # a numeric last label makes an IPv4 address to a browser: only dotted quads
        "http://127.1/",
        "http://0x7f.0.0.1/",
        "http://2130706433/",
        "http://010.0.0.1/",
        "http://256.0.0.1/",
        "http://example.123/",
    ],
)
def test_refuses_invalid_hosts(raw: str) -> None:
    assert reason_of(raw) == "invalid-host"


def test_longest_valid_labels_and_names_are_accepted() -> None:
    label = "a" * 63
    assert normalise_url(f"http://{label}.com/") == f"http://{label}.com/"
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert normalise_url(f"http://{name}/") == f"http://{name}/"
    assert normalise_url(f"http://{name}./") == f"http://{name}./"  # the root dot is extra
    assert reason_of(f"http://{name}b/") == "invalid-host"


@pytest.mark.parametrize(
    "raw",
    [
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:" + "9" * 5000 + "/",
        "http://example.com:-1/",
        "http://example.com:+80/",
        "http://example.com:8_0/",
        "http://example.com:٨٠/",  # Arabic-Indic digits
        "http://example.com:abc/",
        "http://[::1]:x/",
    ],
)
def test_refuses_invalid_ports(raw: str) -> None:
    assert reason_of(raw) == "invalid-port"


def test_highest_port_is_accepted() -> None:
    assert normalise_url("http://example.com:65535/") == "http://example.com:65535/"


# --- self reference --------------------------------------------------------------------------

PUBLIC = origin_of("https://s.example.com")
LOCAL = origin_of("http://127.0.0.1:8000")


@pytest.mark.parametrize(
    "raw",
    [
        "https://s.example.com/x",
        "http://S.Example.COM./x",
        "https://s.example.com:443/x",
        "http://s.example.com:80/x",
        "https://s.example.com:80/x",
        "HTTPS://S.EXAMPLE.COM/abc",
    ],
)
def test_refuses_links_to_the_public_origin(raw: str) -> None:
    assert reason_of(raw, self_origins=[PUBLIC]) == "self-reference"


@pytest.mark.parametrize(
    "raw",
    ["https://s.example.com:8443/x", "https://example.com/", "https://x.s.example.com/"],
)
def test_other_origins_are_not_self_references(raw: str) -> None:
    assert normalise_url(raw, self_origins=[PUBLIC]) == raw


def test_local_origin_compares_the_port() -> None:
    assert normalise_url("http://127.0.0.1:3000/", self_origins=[LOCAL]) == "http://127.0.0.1:3000/"
    assert reason_of("http://127.0.0.1:8000/abc", self_origins=[LOCAL]) == "self-reference"
    assert reason_of("https://127.0.0.1:8000/abc", self_origins=[LOCAL]) == "self-reference"
    assert normalise_url("http://127.0.0.1/abc", self_origins=[LOCAL]) == "http://127.0.0.1/abc"


@pytest.mark.parametrize(
    "raw",
    [
        "http://localhost:8000/abc",
        "http://LOCALHOST.:8000/",
        "http://[::1]:8000/",
        "http://127.0.0.2:8000/",
        "http://[::ffff:127.0.0.1]:8000/",
        "http://app.localhost:8000/",
        f"http://{full_width('127')}.0.0.1:8000/",
    ],
)
def test_loopback_spellings_of_a_loopback_origin_are_self_references(raw: str) -> None:
    assert reason_of(raw, self_origins=[LOCAL]) == "self-reference"


def test_unicode_spelling_of_the_self_host_is_caught() -> None:
    origin = origin_of("https://xn--bcher-kva.example")
    for raw in ["https://bücher.example/x", "https://BÜCHER.EXAMPLE./x", "https://bu\u0308cher.example/"]:
        assert reason_of(raw, self_origins=[origin]) == "self-reference"
    assert origin_of("https://bücher.example") == origin


def test_any_of_several_origins_counts() -> None:
    assert reason_of("http://127.0.0.1:8000/", self_origins=[PUBLIC, LOCAL]) == "self-reference"
    assert reason_of("https://s.example.com/", self_origins=[PUBLIC, LOCAL]) == "self-reference"


# --- origin_of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8000", Origin("127.0.0.1", 8000)),
        ("https://s.example.com", Origin("s.example.com", 443)),
        ("http://S.Example.COM./prefix/", Origin("s.example.com", 80)),
        ("https://bücher.example:8443", Origin("xn--bcher-kva.example", 8443)),
        ("http://[::1]:8000", Origin("::1", 8000)),
        ("https://s.example.com\n", Origin("s.example.com", 443)),
    ],
)
def test_origin_of(base: str, expected: Origin) -> None:
    assert origin_of(base) == expected


@pytest.mark.parametrize(
    "base",
    [
        "",
        "s.example.com",
        "ftp://s.example.com",
        "https://",
        "http://user@s.example.com",
        "http://s.example.com:0",
        None,
    ],
)
def test_origin_of_refuses_unusable_base_urls(base: object) -> None:
    with pytest.raises(ValueError):
        origin_of(base)  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------------

HOSTS = [
    "example.com", "EXAMPLE.org.", "intranet", "ex_ample.corp", "bücher.example",
    "xn--bcher-kva.example", "münchen.de", "пример.рф", "例え.テスト", full_width("example") + ".com",
    "10.0.0.5", "127.0.0.1", "[::1]", "[2001:DB8::1]", "localhost",
]  # fmt: skip

ldh_labels = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
unicode_labels = st.text(
    alphabet=st.characters(min_codepoint=0x61, max_codepoint=0x52F, categories=("Ll", "Lu", "Lo")),
    min_size=1,
    max_size=8,
)
hosts = st.one_of(
    st.sampled_from(HOSTS),
    st.lists(st.one_of(ldh_labels, unicode_labels), min_size=1, max_size=4).map(".".join),
)
ports = st.one_of(st.none(), st.integers(1, 65535), st.sampled_from([80, 443]))
visible_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Cf")),
    max_size=20,
)
any_text = st.text(max_size=20)
parts = st.one_of(visible_text, visible_text, any_text)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    host = draw(hosts)
    port = draw(ports)
    netloc = host if port is None else f"{host}:{port}"
    url = f"{scheme}://{netloc}"
    url += draw(st.sampled_from(["", "/"])) + draw(parts).lstrip("/?#")
    if draw(st.booleans()):
        url += "?" + draw(parts).replace("#", "")
    if draw(st.booleans()):
        url += "#" + draw(parts)
    return url


@settings(max_examples=300)
@given(urls())
def test_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = normalise_url(raw)
    except InvalidURL:
        assume(False)  # too many refusals fail hypothesis' filter health check
        raise
    assert is_safe_output(once)
    assert normalise_url(once) == once


@settings(max_examples=300)
@given(st.text())
def test_arbitrary_text_never_yields_an_unsafe_url(raw: str) -> None:
    try:
        result = normalise_url(raw)
    except InvalidURL as exc:
        assert exc.reason in REASONS
        return
    assert is_safe_output(result)


UNSAFE_SCHEMES = ["javascript", "vbscript", "data", "file", "ftp", "blob", "about", "jar"]
JUNK = CONTROL + INVISIBLE + WHITESPACE


@st.composite
def disguised_schemes(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(UNSAFE_SCHEMES))
    flips = draw(st.lists(st.booleans(), min_size=len(scheme), max_size=len(scheme)))
    scheme = "".join(c.upper() if f else c for c, f in zip(scheme, flips, strict=True))
    chars = list(scheme)
    for _ in range(draw(st.integers(0, 3))):
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(JUNK)))
    prefix = "".join(draw(st.lists(st.sampled_from(JUNK), max_size=3)))
    separator = draw(st.sampled_from([":", "://", ":/", ":\\\\"]))
    payload = draw(
        st.one_of(st.sampled_from(["alert(1)", "example.com/x", "//evil.example/"]), st.text(max_size=20))
    )
    return prefix + "".join(chars) + separator + payload


@settings(max_examples=300)
@given(disguised_schemes())
def test_unsafe_schemes_are_refused_however_they_are_spelled(raw: str) -> None:
    assert reason_of(raw) in {"unsupported-scheme", "control-character", "whitespace"}


@settings(max_examples=300)
@given(st.sampled_from(UNSAFE_SCHEMES), st.text(max_size=30))
def test_unsafe_schemes_with_any_payload_are_refused(scheme: str, payload: str) -> None:
    with pytest.raises(InvalidURL):
        normalise_url(f"{scheme}:{payload}")


SELF_HOSTS = {
    "s.example.com": ["s.example.com", "S.EXAMPLE.COM", full_width("s.example.com")],
    "xn--bcher-kva.example": [
        "bücher.example",
        "BÜCHER.example",
        "xn--bcher-kva.example",
        "XN--BCHER-KVA.EXAMPLE",
        "bu\u0308cher.example",
    ],
}


@st.composite
def self_spellings(draw: st.DrawFn) -> tuple[Origin, str]:
    canonical = draw(st.sampled_from(sorted(SELF_HOSTS)))
    origin = origin_of(f"https://{canonical}")
    host = draw(st.sampled_from(SELF_HOSTS[canonical]))
    flips = draw(st.lists(st.booleans(), min_size=len(host), max_size=len(host)))
    host = "".join(c.upper() if f else c.lower() for c, f in zip(host, flips, strict=True))
    if draw(st.booleans()):
        host += "."
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    port = draw(st.sampled_from(["", ":", ":80", ":443", ":0443"]))
    path = draw(st.sampled_from(["", "/", "/abc", "/abc?x=1#y"]))
    return origin, f"{scheme}://{host}{port}{path}"


@settings(max_examples=300)
@given(self_spellings())
def test_self_reference_cannot_be_bypassed(case: tuple[Origin, str]) -> None:
    origin, raw = case
    assert reason_of(raw, self_origins=[origin]) == "self-reference"
    # the very same URL is fine when it is not snip's own origin
    assert is_safe_output(normalise_url(raw, self_origins=[LOCAL]))
