"""Evaluation speed of Entra mapping expressions (µs per evaluation), for a typical default mapping set.

A cycle evaluates ~50 mappings for each of up to 100,000 users, so what matters is the cost of one
``Expression.evaluate`` on one user's attributes. Each expression is evaluated ``--count`` times over
a small rotation of users (best of ``--repeat`` runs, since the machine is shared); parsing is timed
too. Run from the repository root:

    .venv/bin/python benchmarks/expressions.py                    # 1,000,000 evaluations each
    .venv/bin/python benchmarks/expressions.py --count 100000 --json-out benchmarks/results/expressions.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from identity_sync.engine.mapping.expressions import EvaluationContext, parse_expression
from identity_sync.engine.mapping.expressions.compiler import _parse_expression

#: parse_expression caches by text; time the real work underneath the cache.
_parse_uncached = _parse_expression.__wrapped__

#: Expressions of Entra's default SCIM user mapping and the common customisations of Microsoft's
#: reference (provisioning-engine.md §2.1, §2.3).
EXPRESSIONS = [
    "Not([IsSoftDeleted])",
    "[userPrincipalName]",
    'Join("@", NormalizeDiacritics(StripSpaces(Join(".", [givenName], [surname]))), "contoso.com")',
    "Coalesce([mail], [userPrincipalName])",
    'IIF([country]="USA", [country], [department])',
    'Switch([state], "Australia/Sydney", "NSW", "Australia/Sydney", "QLD", "Australia/Brisbane", "SA", '
    '"Australia/Adelaide")',
    'Replace([mail], "@contoso.com", , , "", , )',
    r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", , "${phoneNumber}", , )',
    "ToLower([userPrincipalName])",
    "PCase([displayName])",
    'FormatDateTime([hireDate], , "yyyy-MM-ddzzz", "yyyy-MM-dd")',
    'IgnoreFlowIfNullOrEmpty([department])',
]

USERS = [
    {
        "IsSoftDeleted": index % 7 == 0,
        "userPrincipalName": f"User.{index}@contoso.com",
        "givenName": ("Zoë", "Ann", "José María", "Łukasz")[index % 4],
        "surname": ("Smith", "Ångström", "Núñez")[index % 3],
        "mail": f"user.{index}@contoso.com" if index % 5 else None,
        "country": ("USA", "FR", "AU")[index % 3],
        "department": "Sales" if index % 2 else "",
        "state": ("NSW", "QLD", "SA", "WA")[index % 4],
        "telephoneNumber": f"+91 99988{index % 100000:05d}",
        "displayName": f"USER NUMBER {index}",
        "hireDate": "2020-12-31-08:00",
    }
    for index in range(64)
]


def measure(text: str, count: int, repeat: int, context: EvaluationContext) -> dict[str, float | str]:
    """Parse time and best-of-``repeat`` evaluation time of one expression, in microseconds."""
    _parse_uncached(text)  # builds lark's parser on the first call (once per process)
    started = time.perf_counter()
    for _ in range(200):
        _parse_uncached(text)
    parse_us = (time.perf_counter() - started) / 200 * 1e6
    expression = parse_expression(text)
    evaluate = expression.evaluate
    users = USERS
    rounds, rest = divmod(count, len(users))
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(rounds):
            for user in users:
                evaluate(user, context)
        for user in users[:rest]:
            evaluate(user, context)
        best = min(best, time.perf_counter() - started)
    return {"expression": text, "evaluate_us": best / count * 1e6, "parse_us": parse_us}


def main() -> None:
    """Run every expression and print a table (and JSON when asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="evaluations per expression")
    parser.add_argument("--repeat", type=int, default=3, help="runs per expression; the best is kept")
    parser.add_argument("--json-out", type=Path, help="write the results here as JSON")
    arguments = parser.parse_args()
    if arguments.count < 1 or arguments.repeat < 1:
        parser.error("--count and --repeat must be at least 1")
    context = EvaluationContext(now=datetime(2026, 1, 1, tzinfo=UTC), default_domain="contoso.com")
    results = []
    print(f"{'µs/eval':>8} {'parse µs':>9}  expression")
    for text in EXPRESSIONS:
        result = measure(text, arguments.count, arguments.repeat, context)
        results.append(result)
        shown = text if len(text) <= 90 else text[:87] + "..."
        print(f"{result['evaluate_us']:8.2f} {result['parse_us']:9.1f}  {shown}")
    mean = sum(float(r["evaluate_us"]) for r in results) / len(results)
    cycle_seconds = mean * 50 * 100_000 / 1e6
    print(f"mean {mean:.2f} µs per evaluation → 100,000 users x 50 mappings ≈ {cycle_seconds:.1f} s of CPU")
    if arguments.json_out:
        arguments.json_out.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "benchmark": "expressions",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "count": arguments.count,
            "repeat": arguments.repeat,
            "mean_evaluate_us": mean,
            "cycle_cpu_seconds_100k_users_50_mappings": cycle_seconds,
            "results": results,
        }
        arguments.json_out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
