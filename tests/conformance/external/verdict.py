"""The verdict on a run of the external suites (``run_suites.sh``): exit 1 when

* scim2-tester reports an ERROR or CRITICAL check — except the one known false positive below; or
* scim-sanity (strict) reports a failure whose check name and message are not listed in
  ``docs/conformance.md`` as a choice the RFC allows (lines ``- scim-sanity: `NAME` — `MESSAGE` ``).

The one excused scim2-tester result: ``check_add_attribute`` PATCHes ``add`` into a multi-valued
attribute that an earlier step of the same check already filled, and expects only the new
values back. RFC 7644 §3.5.2.1 says ``add`` on a multi-valued attribute adds the values, so the
old ones stay; the result is excused only when the returned list is exactly the old values followed
by the patched ones. Every other ERROR fails the run.

Usage: verdict.py OUTDIR docs/conformance.md
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

STATUSES = ("SUCCESS", "COMPLIANT", "ACCEPTABLE", "DEVIATION", "ERROR", "CRITICAL", "SKIPPED")


def scim2_tester_checks(text: str) -> list[tuple[str, str, list[str]]]:
    """``(status, check, detail lines)`` for each check of ``scim2 test --verbose``."""
    checks: list[tuple[str, str, list[str]]] = []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        head = line.split(" ", 1)
        if head[0] in STATUSES:
            checks.append((head[0], head[1] if len(head) > 1 else "", []))
        elif checks:
            checks[-1][2].append(line.strip())
    return checks


def excused(check: str, details: list[str]) -> bool:
    if check != "check_add_attribute":
        return False
    for line in details:
        if line.startswith("{") and "'modify_actual'" in line:
            try:
                data = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                return False
            expected, actual = data.get("expected"), data.get("modify_actual")
            return (isinstance(expected, list) and isinstance(actual, list) and len(actual) > len(expected) > 0
                    and actual[-len(expected):] == expected)
    return False


def allowed_sanity(doc: str) -> set[tuple[str, str]]:
    return set(re.findall(r"^- scim-sanity: `([^`]+)` — `([^`]+)`", doc, re.MULTILINE))


def main(out: Path, doc_path: Path) -> int:
    failures: list[str] = []
    checks = scim2_tester_checks((out / "scim2-tester.txt").read_text(errors="replace"))
    counts = {status: sum(1 for s, _, _ in checks if s == status) for status in STATUSES}
    print("scim2-tester:", ", ".join(f"{s} {n}" for s, n in counts.items() if n))
    if counts["SUCCESS"] == 0:
        failures.append("scim2-tester ran no check (is the server up?)")
    for status, check, details in checks:
        if status in ("ERROR", "CRITICAL"):
            if excused(check, details):
                print(f"  excused (RFC 7644 §3.5.2.1, multi-valued add keeps old values): {check}")
            else:
                failures.append(f"scim2-tester {status} {check}: {' '.join(details)[:300]}")
    allowed = allowed_sanity(doc_path.read_text())
    try:
        results = json.loads((out / "scim-sanity.json").read_text())["results"]
    except (ValueError, KeyError, OSError) as error:
        failures.append(f"scim-sanity output unreadable: {error}")
        results = []
    statuses = [r.get("status") for r in results]
    print("scim-sanity:", {s: statuses.count(s) for s in sorted(set(statuses), key=str)})
    for result in results:
        if result.get("status") == "fail":
            key = (result.get("name", ""), result.get("message", ""))
            if key in allowed:
                print(f"  allowed by docs/conformance.md: {key[0]} — {key[1]}")
            else:
                failures.append(f"scim-sanity fail: {key[0]} — {key[1]}")
    for failure in failures:
        print("FAIL", failure)
    print("conformance:", "FAILED" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
