"""Write a realistic ``csv:DIR`` export for the engine's benchmarks, deterministically for a seed.

    .venv/bin/python benchmarks/make_directory.py DIR [--users 100000 --groups 1000 --memberships 500000 --seed 1]
    .venv/bin/python benchmarks/make_directory.py DIR --mutate 5 [--seed 2]

The export has what real ones have: names with diacritics and UPNs folded to ASCII (with a number
when two people share a name), departments and titles, a management tree (every user but the CEO
has a manager who appears earlier), proxyAddresses, some disabled and some soft-deleted users,
street addresses with commas (quoted cells), groups whose sizes follow a long tail (a few large
all-hands groups, many small teams), a few nested groups, and an assignments.csv that assigns every
group plus each user who is in no group, so that everyone is in the "assigned" scope.

``--mutate PERCENT`` changes one or two attributes (title, department, office, mobile phone,
accountEnabled) of PERCENT % of the users of an existing export, in place (written to a temporary
file and renamed), for the incremental-cycle benchmark.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import unicodedata
import uuid
from pathlib import Path

DOMAIN = "contoso.example"

FIRST_NAMES = [
    "Zoë", "José", "Łukasz", "Søren", "Ingrid", "Ana", "François", "Björn", "Žofie", "Chloé", "Mohammed", "Wei",
    "Aiko", "Thảo", "Siobhán", "Ørjan", "Müge", "Radosław", "Inês", "Jürgen", "Emma", "Liam", "Olivia", "Noah",
    "Amélie", "Dário", "Kateřina", "Åsa", "Gülşen", "Nikoló", "Maëlle", "Ömer", "Priya", "Rafał", "Sébastien",
    "Tomás", "Úrsula", "Vít", "Yasmín", "Zdeněk", "Aleksandra", "Bartłomiej", "Cécile", "Dagný", "Eoghan",
]
LAST_NAMES = [
    "Müller", "García", "Kowalski", "Nguyễn", "O'Brien", "Søndergaard", "Dvořák", "Lefèvre", "Öztürk", "Smith",
    "Johansson", "Łęcki", "Rodríguez", "Ferreira", "Novák", "Brontë", "Ibáñez", "Kovačević", "Larsen", "Martín",
    "Nowak", "Papadopoulos", "Quintão", "Rossi", "Schäfer", "Tanaka", "Ulrich", "Vázquez", "Wójcik", "Yılmaz",
    "Zieliński", "Ó Súilleabháin", "de la Cruz", "van der Berg", "Al-Hashimi", "Chen", "Dubois", "Eriksson",
]
DEPARTMENTS = {
    "Sales": ["Account Executive", "Sales Manager", "Sales Engineer"],
    "Marketing": ["Marketing Specialist", "Content Writer", "Brand Manager"],
    "Engineering": ["Software Engineer", "Senior Software Engineer", "Engineering Manager", "SRE"],
    "Finance": ["Accountant", "Financial Analyst", "Controller"],
    "Human Resources": ["HR Generalist", "Recruiter", "HR Business Partner"],
    "Legal": ["Counsel", "Paralegal"],
    "Support": ["Support Agent", "Support Lead"],
    "Operations": ["Operations Analyst", "Facilities Coordinator"],
    "Research & Development": ["Research Scientist", "Lab Technician"],
    "IT": ["Systems Administrator", "Help Desk Technician", "Network Engineer"],
}
OFFICES = [("Berlin", "DE", "Berlin"), ("München", "DE", "Bayern"), ("Paris", "FR", "Île-de-France"),
           ("Kraków", "PL", "Małopolskie"), ("Praha", "CZ", "Praha"), ("Seattle", "US", "WA"),
           ("São Paulo", "BR", "SP"), ("Tokyo", "JP", "Tokyo"), ("København", "DK", "Hovedstaden"),
           ("Dublin", "IE", "Leinster")]
USER_COLUMNS = [
    "id", "userPrincipalName", "mail", "mailNickname", "displayName", "givenName", "surname", "jobTitle",
    "department", "companyName", "employeeId", "employeeType", "officeLocation", "streetAddress", "city",
    "state", "postalCode", "country", "businessPhones", "mobilePhone", "preferredLanguage", "usageLocation",
    "accountEnabled", "deletedDateTime", "manager", "proxyAddresses", "extensionAttribute1",
]
_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d",
                       "ı": "i", "'": "", " ": "", "-": ""})


def ascii_fold(name: str) -> str:
    """``Łęcki`` → ``lecki``: what a UPN can hold."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_FOLD))
    return "".join(char for char in decomposed if not unicodedata.combining(char)).lower()


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)  # a reader never sees a half-written file


def make_users(rng: random.Random, count: int) -> list[list[str]]:
    rows = []
    ids = [new_id(rng) for _ in range(count)]
    upn_counts: dict[str, int] = {}
    for number in range(count):
        given, surname = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{ascii_fold(given)}.{ascii_fold(surname)}"
        upn_counts[local] = upn_counts.get(local, 0) + 1
        if upn_counts[local] > 1:
            local += str(upn_counts[local])
        upn = f"{local}@{DOMAIN}"
        department = rng.choice(list(DEPARTMENTS))
        city, country, state = rng.choice(OFFICES)
        # A tree: the CEO first, then everyone reports to someone earlier (fan-out about 8).
        manager = "" if number == 0 else ids[max(0, (number - 1) // 8 - rng.randrange(0, 3))]
        enabled = rng.random() >= 0.03
        deleted = f"2026-11-{rng.randint(1, 28):02d}T09:30:00Z" if rng.random() < 0.005 else ""
        phones = f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}"
        if rng.random() < 0.2:
            phones += f";+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}"
        proxies = f"SMTP:{upn};smtp:{local}@mail.{DOMAIN}"
        if rng.random() < 0.1:
            proxies += f";X500:/o=Contoso/ou=Exchange/cn=Recipients/cn={local}"
        street = f"{rng.randint(1, 250)} {rng.choice(['Hauptstraße', 'Rue de Rivoli', 'Main St', 'Ulica Długa'])}"
        if rng.random() < 0.2:
            street += f", Floor {rng.randint(1, 30)}"  # a comma: this cell is quoted
        rows.append([
            ids[number], upn, upn, local, f"{given} {surname}", given, surname,
            rng.choice(DEPARTMENTS[department]), department, "Contoso Ltd", f"E{number:07d}",
            "Contractor" if rng.random() < 0.1 else "Employee", f"{city} {rng.randint(1, 5)}", street, city,
            state, f"{rng.randint(10000, 99999)}", country, phones,
            f"+{rng.randint(1, 99)} {rng.randint(1000000000, 9999999999)}" if rng.random() < 0.7 else "",
            rng.choice(["en-US", "de-DE", "fr-FR", "pl-PL", "cs-CZ", "ja-JP", "pt-BR", "da-DK"]), country,
            "true" if enabled else "false", deleted, manager, proxies,
            f"CC-{rng.randint(100, 999)}" if rng.random() < 0.5 else "",
        ])
    return rows


def group_sizes(rng: random.Random, groups: int, memberships: int, users: int) -> list[int]:
    """A long tail (Zipf, exponent 1): a few all-hands groups, many small teams, total = memberships."""
    weights = [1 / (rank + 1) for rank in range(groups)]
    total = sum(weights)
    sizes = [max(1, min(users, int(memberships * weight / total))) for weight in weights]
    rank = 0
    while sum(sizes) < memberships and any(size < users for size in sizes):
        if sizes[rank % groups] < users:
            sizes[rank % groups] += 1
        rank += 1
    rng.shuffle(sizes)
    return sizes


def make_groups(rng: random.Random, count: int, memberships: int, user_ids: list[str],
                ) -> tuple[list[list[str]], set[str]]:
    ids = [new_id(rng) for _ in range(count)]
    members_of_some_group: set[str] = set()
    rows = []
    departments = list(DEPARTMENTS)
    for number, size in enumerate(group_sizes(rng, count, memberships, len(user_ids))):
        members = [user_ids[index] for index in rng.sample(range(len(user_ids)), size)]
        members_of_some_group.update(members)
        # A few nested groups (1 in 100): a group contains later groups only, so there is no cycle.
        if number % 100 == 0 and number + 1 < count:
            members.extend(rng.sample(ids[number + 1:], min(3, count - number - 1)))
        team = f"{rng.choice(departments)} {number + 1:04d}"
        rows.append([ids[number], team, f"grp{number + 1:04d}", f"Team {team}, {size} people",
                     ";".join(members)])
    return rows, members_of_some_group


def make_directory(directory: Path, users: int, groups: int, memberships: int, seed: int) -> None:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    user_rows = make_users(rng, users)
    user_ids = [row[0] for row in user_rows]
    group_rows, grouped = make_groups(rng, groups, memberships, user_ids)
    write_csv(directory / "users.csv", USER_COLUMNS, user_rows)
    write_csv(directory / "groups.csv", ["id", "displayName", "mailNickname", "description", "members"], group_rows)
    assigned = [row[0] for row in group_rows] + [anchor for anchor in user_ids if anchor not in grouped]
    write_csv(directory / "assignments.csv", ["principalId"], [[anchor] for anchor in assigned])


def change_one_attribute(rng: random.Random, row: list[str], column: dict[str, int]) -> None:
    """Change a title (with its department), an office, a mobile phone or accountEnabled."""
    change = rng.choice(["jobTitle", "officeLocation", "mobilePhone", "accountEnabled"])
    if change == "jobTitle":
        department = rng.choice(list(DEPARTMENTS))
        row[column["department"]] = department
        row[column["jobTitle"]] = rng.choice(DEPARTMENTS[department])
    elif change == "accountEnabled":
        row[column[change]] = "false" if row[column[change]] == "true" else "true"
    elif change == "mobilePhone":
        row[column[change]] = f"+{rng.randint(1, 99)} {rng.randint(1000000000, 9999999999)}"
    else:
        row[column[change]] = f"{rng.choice(OFFICES)[0]} {rng.randint(6, 9)}"


def mutate(directory: Path, percent: float, seed: int) -> int:
    """Change ``percent`` % of the users in place; returns how many changed."""
    rng = random.Random(seed)
    path = directory / "users.csv"
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        header = next(reader)
        rows = list(reader)
    column = {name: index for index, name in enumerate(header)}
    missing = {"jobTitle", "department", "officeLocation", "mobilePhone", "accountEnabled"} - column.keys()
    if missing:
        raise SystemExit(f"{path}:1:1: --mutate needs the columns {', '.join(sorted(missing))}")
    chosen = rng.sample(range(len(rows)), round(len(rows) * percent / 100))
    for index in chosen:
        original = list(rows[index])
        while rows[index] == original:  # a draw may repeat the old value: every chosen user changes
            change_one_attribute(rng, rows[index], column)
    write_csv(path, header, rows)
    return len(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--memberships", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mutate", type=float, metavar="PERCENT",
                        help="change PERCENT %% of the users of the existing export in DIR instead")
    args = parser.parse_args(argv)
    if args.mutate is not None:
        if not 0 <= args.mutate <= 100:
            parser.error("--mutate: PERCENT must be between 0 and 100")
        if not (args.directory / "users.csv").is_file():
            parser.error(f"--mutate: {args.directory / 'users.csv'} does not exist")
        changed = mutate(args.directory, args.mutate, args.seed)
        print(f"changed {changed} users in {args.directory}")
        return 0
    if min(args.users, args.groups, args.memberships) < 1:
        parser.error("--users, --groups and --memberships must be at least 1")
    make_directory(args.directory, args.users, args.groups, args.memberships, args.seed)
    print(f"wrote {args.users} users, {args.groups} groups, ~{args.memberships} memberships to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
