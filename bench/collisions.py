"""Birthday-collision odds for short codes, and an empirical check of the formulas.

For a code space of N = alphabet ** length codes and n links:

(a) codes never checked: P(at least one pair of codes is equal) = 1 - exp(-n(n-1)/2N), and
    the expected number of equal pairs n(n-1)/2N;
(b) snip (random code, UNIQUE constraint, retry with a new code, at most 8 tries): a new code
    hits an existing one with probability n/N; expected extra tries per create
    p/(1-p); P(all 8 tries collide) = p**8; expected collisions (= retries) over the
    lifetime while growing from 0 to n links: sum_{k<n} k/(N-k) ~ N(-ln(1-n/N)) - n;
(c) hash-derived codes (hash of the URL truncated to `length` characters): P(two different
    URLs share a code) among n distinct URLs is the birthday formula again, but a retry
    cannot fix it without giving up "same URL -> same code".

The empirical part draws codes exactly as snip does (one secrets.choice per character) at
lengths 4 and 5, where collisions are frequent, and compares counts with the formulas.
It uses `secrets`, so it cannot be seeded: figures vary slightly from run to run.

Run:  python3 bench/collisions.py            (2,000,000 codes per length, ~1 minute)
      python3 bench/collisions.py --quick    (200,000 codes per length, a few seconds)
Standard library only.
"""

from __future__ import annotations

import argparse
import math
import platform
import secrets
import shlex
import string
import sys
import time
from collections import Counter
from datetime import UTC, datetime

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
BASE36 = string.digits + string.ascii_lowercase
HEX = "0123456789abcdef"
MAX_TRIES = 8  # snip gives up after 8 colliding codes and reports the code space as too full

COUNTS = (1_000_000, 100_000_000, 10_000_000_000)
RANDOM_SCHEMES = (
    ("base62", 62, 6),
    ("base62", 62, 7),
    ("base62", 62, 8),
    ("base36", 36, 7),
    ("base36", 36, 8),
    ("base36", 36, 9),
)
HASH_SCHEMES = (
    ("hex", 16, 7),
    ("hex", 16, 8),
    ("base62", 62, 6),
    ("base62", 62, 7),
    ("base62", 62, 8),
    ("base62", 62, 10),
    ("base62", 62, 12),
)


# ---------------------------------------------------------------------------------------------
# Formulas


def pairs(n: float, space: float) -> float:
    """Expected number of equal pairs among n uniform codes: n(n-1)/2N."""
    return n * (n - 1) / (2 * space)


def p_any(n: float, space: float) -> float:
    """P(at least one pair equal) ~ 1 - exp(-n(n-1)/2N), computed without cancellation."""
    return -math.expm1(-pairs(n, space))


def expected_distinct(n: float, space: float) -> float:
    """Exact expected number of distinct values among n uniform draws from `space`."""
    return -space * math.expm1(n * math.log1p(-1 / space))


def lifetime_retries(n: float, space: float) -> float:
    """Expected colliding tries while inserting links 0..n-1: sum k/(N-k) ~ N(-ln(1-x)) - n."""
    x = n / space
    if x >= 1:
        return math.inf
    # -ln(1-x) - x, by its series where the direct form would cancel
    tail = x * x / 2 + x**3 / 3 + x**4 / 4 if x < 1e-4 else -math.log1p(-x) - x
    return space * tail


def exact_lifetime_retries(n: int, space: int) -> float:
    return math.fsum(k / (space - k) for k in range(n))


def expected_give_ups(n: float, space: float) -> float:
    """Expected creates among the first n that run out of tries: sum_{k<n} (k/N)^8 ~ n^9/9N^8."""
    return (n / space) ** MAX_TRIES * n / (MAX_TRIES + 1)


def length_for(n: float, base: int, p_max: float) -> int:
    """Smallest code length whose P(any pair equal) among n codes stays below p_max."""
    need = n * (n - 1) / (2 * -math.log1p(-p_max))
    return math.ceil(math.log(need) / math.log(base))


# ---------------------------------------------------------------------------------------------
# Formatting


def fp(p: float) -> str:
    if p == 0:
        return "0"
    if p > 0.999:
        q = 1 - p
        return "≈ 1" if q < 1e-12 else f"1 − {q:.1e}"
    if p >= 0.01:
        return f"{p * 100:.1f} %"
    if p >= 0.001:
        return f"{p * 100:.2f} %"
    return f"{p:.1e}"


def fn(x: float) -> str:
    """A count: plain below a million, then with a unit."""
    if math.isinf(x):
        return "∞"
    if x < 0.01:
        return "0" if x == 0 else f"{x:.1e}"
    if x < 10:
        return f"{x:.2g}" if x < 1 else f"{x:.1f}"
    if x >= 1e15:
        return f"{x:.2e}".replace("e+", "e")
    if x < 1e6:
        return f"{x:,.0f}"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if x >= size:
            value = x / size
            return f"{value:,.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    return f"{x:,.0f}"


def fcount(n: int) -> str:
    return {1_000_000: "1M", 100_000_000: "100M", 10_000_000_000: "10B"}.get(n, fn(n))


def scheme_name(alpha: str, length: int) -> str:
    return f"{alpha}, {length} chars"


# ---------------------------------------------------------------------------------------------
# Tables


def table_never_checked() -> None:
    print("## (a) Codes never checked: P(at least one pair collides), expected colliding pairs\n")
    print("P = 1 − exp(−n(n−1)/2N); pairs = n(n−1)/2N.\n")
    head = " | ".join(f"{fcount(n)}: P / pairs" for n in COUNTS)
    print(f"| Scheme | N (codes) | {head} |")
    print("|---|---:|" + "---:|" * len(COUNTS))
    for alpha, base, length in RANDOM_SCHEMES:
        space = base**length
        cells = " | ".join(f"{fp(p_any(n, space))} / {fn(pairs(n, space))}" for n in COUNTS)
        print(f"| {scheme_name(alpha, length)} | {fn(space)} | {cells} |")
    print()


def table_snip() -> None:
    print(f"## (b) snip: random code + UNIQUE constraint + retry (at most {MAX_TRIES} tries per create)\n")
    print(
        "p = n/N is the chance that a new random code hits one of the n existing codes; it is "
        "also the chance that a guessed code leads to some link. Extra tries per create = "
        f"p/(1−p). P({MAX_TRIES} fail) = p^{MAX_TRIES}, the chance that one create gives up. "
        "Lifetime = expected collisions (retries) summed over all creates from 0 to n links; "
        "Give-ups = expected number of those n creates that ran out of tries (below 1 it is "
        "also the chance that any create ever gave up).\n"
    )
    print(
        "| Scheme | Links n | p = n/N (1st try collides) | Extra tries per create "
        f"| P({MAX_TRIES} tries fail) | Lifetime retries | Give-ups |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for alpha, base, length in RANDOM_SCHEMES:
        space = base**length
        for n in COUNTS:
            p = n / space
            if p >= 1:
                print(
                    f"| {scheme_name(alpha, length)} | {fcount(n)} | more links than codes | – | 1 | – | – |"
                )
                continue
            print(
                f"| {scheme_name(alpha, length)} | {fcount(n)} | {fp(p)} | {p / (1 - p):.2g} "
                f"| {fp(p**MAX_TRIES)} | {fn(lifetime_retries(n, space))} "
                f"| {fn(expected_give_ups(n, space))} |"
            )
    print()


def table_capacity() -> None:
    print("## When to raise SNIP_CODE_LENGTH: links at which the space is x % full\n")
    print(
        "Fill = n/N = chance a new code needs a retry = chance a random guess finds a link. "
        f"The last column is the fill at which one create in 10^12 would exhaust its "
        f"{MAX_TRIES} tries ((10^-12)^(1/{MAX_TRIES}) = "
        f"{1e-12 ** (1 / MAX_TRIES) * 100:.2f} % full).\n"
    )
    fills = (0.0001, 0.001, 0.01, 0.1)
    head = " | ".join(f"{f * 100:g} % full" for f in fills)
    print(f"| Base62 length | N (codes) | {head} | 1 create in 10^12 gives up |")
    print("|---:|---:|" + "---:|" * (len(fills) + 1))
    for length in range(5, 11):
        space = 62**length
        cells = " | ".join(fn(space * f) for f in fills)
        print(f"| {length} | {fn(space)} | {cells} | {fn(space * 1e-12 ** (1 / MAX_TRIES))} |")
    print()


def table_hash() -> None:
    print("## (c) Hash-derived codes: two different URLs, same code\n")
    print(
        "Code = hash of the normalised URL truncated to the given length (uniform hash "
        "assumed). P = chance that at least two of n distinct URLs share a code; pairs = "
        "expected number of such URL pairs (each one a URL that cannot get its own "
        "deterministic code, or, if unchecked, a link that redirects to someone else's URL); "
        "p(new) = chance that the next new URL's code already belongs to a different URL. A "
        "retry with a new code would make the code depend on insertion order, so it would no "
        "longer be a function of the URL.\n"
    )
    head = " | ".join(f"{fcount(n)}: P / pairs / p(new)" for n in COUNTS)
    print(f"| Code | Bits | {head} |")
    print("|---|---:|" + "---:|" * len(COUNTS))
    for alpha, base, length in HASH_SCHEMES:
        space = base**length
        cells = " | ".join(
            f"{fp(p_any(n, space))} / {fn(pairs(n, space))} / {fp(min(1.0, n / space))}" for n in COUNTS
        )
        print(f"| {scheme_name(alpha, length)} | {length * math.log2(base):.1f} | {cells} |")
    print()
    print("Shortest hash-derived code that keeps P(any two URLs share a code) below a bound:\n")
    bounds = (0.01, 1e-6, 1e-9)
    print(
        "| Distinct URLs | "
        + " | ".join(f"base62, P < {b:g}" for b in bounds)
        + " | "
        + " | ".join(f"hex, P < {b:g}" for b in bounds)
        + " |"
    )
    print("|---:|" + "---:|" * (2 * len(bounds)))
    for n in COUNTS:
        cells = [str(length_for(n, 62, b)) for b in bounds] + [str(length_for(n, 16, b)) for b in bounds]
        print(f"| {fcount(n)} | " + " | ".join(cells) + " |")
    print()


# ---------------------------------------------------------------------------------------------
# Empirical check


def generate_code(length: int) -> str:
    """The same algorithm as snip.domain.codes.generate_code."""
    choice = secrets.choice
    return "".join([choice(BASE62) for _ in range(length)])


def empirical_counts(lengths: tuple[int, ...], n: int) -> None:
    print(f"## Empirical check 1: {n:,} codes drawn as snip draws them, never checked\n")
    print(
        "Duplicates = codes equal to an earlier one (n − distinct); expected = "
        "n − N(1 − (1 − 1/N)^n). Pairs = Σ over codes of C(count, 2); expected = n(n−1)/2N. "
        "σ ≈ √expected for these near-Poisson counts.\n"
    )
    print(
        "| Length | N | Duplicates: observed | expected | (obs−exp)/σ "
        "| Pairs: observed | expected | (obs−exp)/σ | Time |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for length in lengths:
        space = 62**length
        t0 = time.perf_counter()
        counts = Counter(generate_code(length) for _ in range(n))
        elapsed = time.perf_counter() - t0
        dup = n - len(counts)
        obs_pairs = sum(c * (c - 1) // 2 for c in counts.values())
        exp_dup = n - expected_distinct(n, space)
        exp_pairs = pairs(n, space)
        print(
            f"| {length} | {space:,} | {dup:,} | {exp_dup:,.0f} "
            f"| {(dup - exp_dup) / math.sqrt(exp_dup):+.2f} | {obs_pairs:,} | {exp_pairs:,.0f} "
            f"| {(obs_pairs - exp_pairs) / math.sqrt(exp_pairs):+.2f} | {elapsed:.1f} s |"
        )
    print()


def empirical_retries(lengths: tuple[int, ...], n: int) -> None:
    print(f"## Empirical check 2: {n:,} creates with snip's retry loop (a set as the UNIQUE index)\n")
    print(
        "Retries = codes drawn that were already taken; expected = Σ_{k<n} k/(N−k), summed "
        f"exactly. Creates that would have given up after {MAX_TRIES} tries are counted too.\n"
    )
    print(
        "| Length | N | Final fill n/N | Retries: observed | expected | (obs−exp)/σ "
        f"| Most tries for one create | Creates out of tries (> {MAX_TRIES}) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for length in lengths:
        space = 62**length
        taken: set[str] = set()
        retries = most = gave_up = 0
        for _ in range(n):
            tries = 1
            code = generate_code(length)
            while code in taken:
                retries += 1
                tries += 1
                code = generate_code(length)
            taken.add(code)
            most = max(most, tries)
            gave_up += tries > MAX_TRIES
        expected = exact_lifetime_retries(n, space)
        # Var of a sum of geometric counts: Σ p/(1-p)^2 with p = k/N
        sigma = math.sqrt(math.fsum((k / space) / (1 - k / space) ** 2 for k in range(n)))
        print(
            f"| {length} | {space:,} | {fp(n / space)} | {retries:,} | {expected:,.0f} "
            f"| {(retries - expected) / sigma:+.2f} | {most} | {gave_up} |"
        )
    print()


def empirical_any(length: int, n: int, trials: int) -> None:
    space = 62**length
    hits = 0
    for _ in range(trials):
        seen: set[str] = set()
        for _ in range(n):
            code = generate_code(length)
            if code in seen:
                hits += 1
                break
            seen.add(code)
    expected = p_any(n, space)
    sigma = math.sqrt(expected * (1 - expected) / trials)
    print(f"## Empirical check 3: P(at least one pair) for {n:,} codes of length {length}\n")
    print("| Trials | Trials with a collision | Observed P | Formula 1 − exp(−n(n−1)/2N) | (obs−exp)/σ |")
    print("|---:|---:|---:|---:|---:|")
    observed = hits / trials
    print(
        f"| {trials:,} | {hits:,} | {observed:.3f} | {expected:.3f} | {(observed - expected) / sigma:+.2f} |"
    )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws in the empirical part")
    parser.add_argument("--draws", type=int, help="codes per length (default 2,000,000)")
    parser.add_argument("--trials", type=int, help="trials for check 3 (default 400)")
    parser.add_argument("--no-empirical", action="store_true", help="formulas only")
    args = parser.parse_args(argv)
    draws = args.draws or (200_000 if args.quick else 2_000_000)
    trials = args.trials or (100 if args.quick else 400)

    started = time.perf_counter()
    print("# Collision odds for short codes\n")
    print(f"Command: `python3 {shlex.join(['bench/collisions.py', *sys.argv[1:]])}`\n")
    print(f"- Date (UTC): {datetime.now(UTC).strftime('%Y-%m-%d %H:%M')}")
    print(
        f"- Python: {platform.python_implementation()} {platform.python_version()} on {platform.platform()}\n"
    )
    print("Counts: 1M = 10^6, 100M = 10^8, 10B = 10^10 links (B = billion, T = 10^12).\n")
    table_never_checked()
    table_snip()
    table_capacity()
    table_hash()
    if not args.no_empirical:
        empirical_counts((4, 5), draws)
        empirical_retries((4, 5), draws)
        empirical_any(4, 5_000, trials)
    print(f"(total run time {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
