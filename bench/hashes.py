"""Cost per URL of the hash functions snip could use for the `reuse` digest.

Measures md5, sha1, sha256, blake2b (64-byte default digest) and blake2b with
digest_size=16 over a seeded corpus of realistic, already-normalised URLs in three length
classes (short ~30 bytes, typical ~100 bytes, long ~1,000 bytes), and for comparison:

* the digest exactly as snip stores it (str -> UTF-8 -> sha256 -> hex),
* deriving a 7-character base62 code from a hash (digest -> first 8 bytes -> int -> base62),
* drawing a random 7-character base62 code from `secrets` (as snip does),
* for scale: one create (INSERT + COMMIT) and one lookup by code in SQLite through the
  stdlib `sqlite3` module, with the pragmas snip sets (WAL, synchronous=NORMAL). This is a
  lower bound for snip's storage cost: no SQLAlchemy, no async driver, no network.

Every figure is the median over the repeats (timeit), with the min and max, in nanoseconds
per URL. The loop that walks the corpus is included in every row; the "loop only" row shows
what that loop costs by itself.

Run:  python3 bench/hashes.py            (10,000 URLs, 7 repeats, ~1 minute)
      python3 bench/hashes.py --quick    (smaller corpus, 3 repeats, a few seconds)
Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import random
import secrets
import shlex
import sqlite3
import ssl
import statistics
import string
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # as snip: 0-9A-Za-z
BASE = len(ALPHABET)
CODE_LENGTH = 7  # snip's default SNIP_CODE_LENGTH
CODE_SPACE = BASE**CODE_LENGTH
BITS_PER_CHAR = math.log2(BASE)

# ---------------------------------------------------------------------------------------------
# Corpus: normalised URLs as snip would store them (ASCII: punycode host, percent-encoded path).

WORDS = tuple(
    [
        "about",
        "blog",
        "news",
        "docs",
        "guide",
        "api",
        "v1",
        "v2",
        "users",
        "items",
        "search",
        "product",
        "products",
        "cart",
        "checkout",
        "article",
        "articles",
        "post",
        "posts",
        "category",
        "tag",
        "tags",
        "events",
        "2024",
        "2025",
        "release",
        "notes",
        "install",
        "download",
        "help",
        "support",
        "faq",
        "account",
        "settings",
        "profile",
        "team",
        "careers",
        "pricing",
        "features",
        "login",
        "share",
        "watch",
        "video",
        "photo",
        "gallery",
        "report",
        "reports",
        "dashboard",
        "issue",
        "issues",
        "pull",
        "wiki",
        "page",
    ]
)
TLDS = ("com", "org", "net", "io", "de", "fr", "co.uk", "dev", "app", "edu")
QUERY_KEYS = tuple(
    [
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "ref",
        "id",
        "q",
        "page",
        "sort",
        "lang",
        "session",
        "fbclid",
        "gclid",
        "mc_eid",
        "token",
        "redirect_uri",
        "state",
        "scope",
        "client_id",
        "response_type",
        "filter",
    ]
)
TOKEN_CHARS = string.ascii_letters + string.digits + "-_"

CLASSES = {
    # name: (share of the mixed corpus, lowest length, highest length) in bytes
    "short": (0.30, 20, 40),
    "typical": (0.50, 80, 130),
    "long": (0.20, 900, 1100),
}


def _host(rng: random.Random) -> str:
    name = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
    sub = rng.choice(("", "", "www.", "blog.", "docs.", "shop.", "m."))
    return f"{sub}{name}.{rng.choice(TLDS)}"


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(TOKEN_CHARS) for _ in range(n))


def _url(rng: random.Random, lo: int, hi: int) -> str:
    """One URL between `lo` and `hi` bytes: host, path words, and query pairs as needed."""
    target = rng.randint(lo, hi)
    base = f"https://{_host(rng)}"
    path = ""
    while len(base) + len(path) < min(target, 90) - 8:
        path += "/" + rng.choice(WORDS)
        if rng.random() < 0.3:
            path += "/" + str(rng.randint(1, 99999))
    url = base + (path or "/")
    sep = "?"
    while len(url) < target:
        key = rng.choice(QUERY_KEYS)
        value = _token(rng, rng.randint(4, 60 if target > 500 else 12))
        url += f"{sep}{key}={value}"
        sep = "&"
    if len(url) > hi:
        url = url[:hi]
    if rng.random() < 0.1 and len(url) < hi - 10:
        url += "#section-" + str(rng.randint(1, 9))
    return url


def make_corpus(size: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    corpus: dict[str, list[str]] = {}
    for name, (share, lo, hi) in CLASSES.items():
        corpus[name] = [_url(rng, lo, hi) for _ in range(round(size * share))]
    mixed = [u for urls in corpus.values() for u in urls]
    rng.shuffle(mixed)
    corpus["mixed"] = mixed
    return corpus


# ---------------------------------------------------------------------------------------------
# What is measured. Each entry is a function of one URL (bytes), kept as small as the real call.


def b62(n: int, length: int = CODE_LENGTH) -> str:
    """The low `length` base62 digits of `n` (so n mod 62**length), most significant last."""
    chars = []
    for _ in range(length):
        n, r = divmod(n, BASE)
        chars.append(ALPHABET[r])
    return "".join(chars)


def random_code_choice(length: int = CODE_LENGTH) -> str:
    """The same algorithm as snip.domain.codes.generate_code: one secrets.choice per char."""
    choice = secrets.choice
    return "".join([choice(ALPHABET) for _ in range(length)])


md5, sha1, sha256, blake2b = hashlib.md5, hashlib.sha1, hashlib.sha256, hashlib.blake2b
from_bytes = int.from_bytes
randbelow = secrets.randbelow

# name -> (statement run once per URL `u` (bytes) or `s` (str), digest bytes or None)
CASES: dict[str, tuple[str, int | None]] = {
    "loop only (no work)": ("pass", None),
    "md5": ("md5(u).digest()", 16),
    "sha1": ("sha1(u).digest()", 20),
    "sha256": ("sha256(u).digest()", 32),
    "blake2b (digest_size=64)": ("blake2b(u).digest()", 64),
    "blake2b (digest_size=16)": ("blake2b(u, digest_size=16).digest()", 16),
    "sha256 as snip stores it: str→UTF-8→hex": ("sha256(s.encode()).hexdigest()", 32),
    "base62 encoding only (8 bytes→int→7 chars)": ("b62(from_bytes(D, 'big'))", None),
    "hash-derived code: md5→8 bytes→int→base62(7)": (
        "b62(from_bytes(md5(u).digest()[:8], 'big'))",
        None,
    ),
    "hash-derived code: sha256→8 bytes→int→base62(7)": (
        "b62(from_bytes(sha256(u).digest()[:8], 'big'))",
        None,
    ),
    "random code: secrets.choice ×7 (snip)": ("random_code_choice()", None),
    "random code: secrets.randbelow(62**7)→base62(7)": ("b62(randbelow(CODE_SPACE))", None),
}


def make_timer(stmt: str, urls: list[str], min_seconds: float) -> tuple[timeit.Timer, int]:
    """A timer running `stmt` once per URL, and how many corpus passes make one repeat."""
    pairs = [(u.encode(), u) for u in urls]
    env = dict(globals())
    env.update(PAIRS=pairs, D=sha256(b"x").digest()[:8])
    timer = timeit.Timer(f"for u, s in PAIRS:\n    {stmt}", globals=env)
    one = min(timer.repeat(repeat=3, number=1))
    return timer, max(1, math.ceil(min_seconds / max(one, 1e-9)))


def measure(
    corpus: dict[str, list[str]], repeat: int, min_seconds: float
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Median, min and max ns per URL for every case and class.

    The repeats are interleaved (repeat 1 of every case, then repeat 2 of every case, ...),
    so a burst of load from elsewhere on the machine widens the spread of all rows alike
    instead of shifting the median of one row.
    """
    timers = {
        (name, c): make_timer(stmt, corpus[c], min_seconds)
        for name, (stmt, _) in CASES.items()
        for c in corpus
    }
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in timers}
    for _ in range(repeat):
        for key, (timer, number) in timers.items():
            elapsed = timer.timeit(number=number)
            samples[key].append(elapsed / (number * len(corpus[key[1]])) * 1e9)
    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    for (name, c), per_url in samples.items():
        results.setdefault(name, {})[c] = (statistics.median(per_url), min(per_url), max(per_url))
    return results


def sqlite_reference(corpus: list[str], repeat: int) -> dict[str, tuple[float, float, float]]:
    """Median, min and max ns for one create and one lookup by code in a SQLite file."""
    results: dict[str, list[float]] = {"create": [], "lookup": []}
    with tempfile.TemporaryDirectory() as tmp:
        con = sqlite3.connect(os.path.join(tmp, "reference.db"), isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            con.execute(f"PRAGMA {pragma}")
        con.execute(
            "CREATE TABLE links (id INTEGER PRIMARY KEY, code VARCHAR(64) NOT NULL UNIQUE, "
            "url TEXT NOT NULL, url_digest VARCHAR(64) NOT NULL, reuse_key VARCHAR(160) UNIQUE)"
        )
        con.execute("CREATE INDEX ix_links_url_digest ON links (url_digest)")
        insert = "INSERT INTO links (code, url, url_digest) VALUES (?, ?, ?)"
        codes: list[str] = []
        for _ in range(repeat):
            rows = []
            for url in corpus:
                code = random_code_choice()
                rows.append((code, url, sha256(url.encode()).hexdigest()))
                codes.append(code)
            t0 = time.perf_counter_ns()
            for row in rows:  # one transaction per create, as the service does
                con.execute("BEGIN")
                con.execute(insert, row)
                con.execute("COMMIT")
            results["create"].append((time.perf_counter_ns() - t0) / len(rows))
        select = "SELECT url FROM links WHERE code = ?"
        for _ in range(repeat):
            sample = random.Random(len(results["lookup"])).sample(codes, len(corpus))
            t0 = time.perf_counter_ns()
            for code in sample:
                con.execute(select, (code,)).fetchone()
            results["lookup"].append((time.perf_counter_ns() - t0) / len(sample))
        con.close()
    return {k: (statistics.median(v), min(v), max(v)) for k, v in results.items()}


# ---------------------------------------------------------------------------------------------
# Reporting


def cpu_info() -> tuple[str, list[str], int]:
    model, flags = "unknown", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = value.split()
    except OSError:
        model = platform.processor() or "unknown"
    return model, flags, os.cpu_count() or 0


def machine_lines() -> list[str]:
    model, flags, ncpu = cpu_info()
    wanted = ("sha_ni", "avx2", "avx512f", "aes")
    present = ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted)
    return [
        f"- Date (UTC): {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')}",
        f"- Platform: {platform.platform()} ({platform.machine()})",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- CPU: {model}, {ncpu} logical CPUs; flags: {present}",
        f"- hashlib: md5/sha1/sha256 from {ssl.OPENSSL_VERSION}; "
        f"blake2b from {'OpenSSL' if 'openssl' in repr(hashlib.blake2b) else 'CPython _blake2'}",
    ]


def cell(m: float, lo: float, hi: float) -> str:
    return f"{m:,.0f} ({lo:,.0f}–{hi:,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpus, 3 repeats")
    parser.add_argument("--urls", type=int, help="corpus size (default 10,000; quick 2,000)")
    parser.add_argument("--repeat", type=int, help="timeit repeats (default 7; quick 3)")
    parser.add_argument("--seed", type=int, default=62, help="random seed for the corpus")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite reference")
    args = parser.parse_args(argv)

    size = args.urls or (2_000 if args.quick else 10_000)
    repeat = args.repeat or (3 if args.quick else 7)
    min_seconds = 0.02 if args.quick else 0.1
    corpus = make_corpus(size, args.seed)
    classes = list(corpus)

    print("# Hash cost per URL\n")
    print(f"Command: `python3 {shlex.join(['bench/hashes.py', *sys.argv[1:]])}`\n")
    print("\n".join(machine_lines()))
    print()
    print(
        f"Corpus: {size:,} URLs, seed {args.seed}; "
        + "; ".join(
            f"{name} {len(corpus[name]):,} URLs, "
            f"{statistics.mean(map(len, corpus[name])):,.0f} bytes on average "
            f"({min(map(len, corpus[name]))}–{max(map(len, corpus[name]))})"
            for name in classes
        )
        + "."
    )
    print(
        f"Timing: timeit, {repeat} interleaved repeats, each repeat ≥ {min_seconds:g} s of passes "
        "over the class; cells are median ns per URL (min–max over the repeats). The corpus "
        "loop is included in every row.\n"
    )

    started = time.perf_counter()
    results = measure(corpus, repeat, min_seconds)

    print("| What | " + " | ".join(f"{c} ns/URL" for c in classes) + " | long: MB/s |")
    print("|---|" + "---:|" * (len(classes) + 1))
    long_mean = statistics.mean(map(len, corpus["long"]))
    for name, per_class in results.items():
        cells = [cell(*per_class[c]) for c in classes]
        digest = CASES[name][1]
        mbps = f"{long_mean / per_class['long'][0] * 1e3:,.0f}" if digest else "–"
        print(f"| {name} | " + " | ".join(cells) + f" | {mbps} |")
    print(
        "\nMB/s = mean long-URL length / median ns per long URL (loop and call overhead "
        "included, so below the raw hash throughput).\n"
    )

    if not args.no_sqlite:
        print("## For scale: SQLite through the stdlib sqlite3 module\n")
        ref = sqlite_reference(corpus["mixed"], repeat)
        print(
            f"File database in {tempfile.gettempdir()}, WAL, synchronous=NORMAL; the links "
            "table with a UNIQUE code, a UNIQUE reuse_key and an index on url_digest; "
            f"{len(corpus['mixed']):,} links per repeat, {repeat} repeats. No SQLAlchemy, "
            "no async driver, no network: a lower bound for what snip pays per call.\n"
        )
        print("| Operation | median ns (min–max) | median µs |")
        print("|---|---:|---:|")
        labels = {
            "create": "create: BEGIN; INSERT; COMMIT",
            "lookup": "lookup: SELECT url WHERE code = ?",
        }
        for key, label in labels.items():
            print(f"| {label} | {cell(*ref[key])} | {ref[key][0] / 1000:,.1f} |")
        print()

    print("## Digest sizes and base62 lengths\n")
    print(
        f"A base62 character carries log2(62) = {BITS_PER_CHAR:.3f} bits. A hash-derived code "
        f"of {CODE_LENGTH} characters keeps {CODE_LENGTH * BITS_PER_CHAR:.1f} bits of any of "
        "these digests (first 8 bytes → int → low 7 base62 digits), whatever the function; "
        "how many characters a hash-derived code needs to avoid collisions between different "
        "URLs is in bench/collisions.py.\n"
    )
    print(
        "| Function | Digest bytes | Digest bits | Hex chars | Base62 chars for the whole digest "
        f"| Bits kept by a {CODE_LENGTH}-char code | Collision resistance |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    resistance = {
        "md5": "broken (collisions in seconds)",
        "sha1": "broken (SHAttered 2017, chosen-prefix 2020)",
        "sha256": "2^128, no known attack",
        "blake2b (digest_size=64)": "2^256, no known attack",
        "blake2b (digest_size=16)": "2^64 (birthday bound of 128 bits)",
    }
    for name, (_, digest) in CASES.items():
        if digest is None or name not in resistance:
            continue
        bits = digest * 8
        print(
            f"| {name} | {digest} | {bits} | {digest * 2} | {math.ceil(bits / BITS_PER_CHAR)} "
            f"| {CODE_LENGTH * BITS_PER_CHAR:.1f} | {resistance[name]} |"
        )
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
