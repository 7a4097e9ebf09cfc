"""Read a target back over SCIM, as the end-to-end tests check it: the target must hold what the
mapping says, whatever the engine believes it sent."""

from __future__ import annotations

from typing import Any

import httpx2

from tests.engine.targets import Target


class Readback:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.base = target.base_url.split("?")[0].rstrip("/")
        self.http = httpx2.Client(headers={"Authorization": f"Bearer {target.token}"}, timeout=30)

    def close(self) -> None:
        self.http.close()

    def _list(self, endpoint: str, filter_text: str, extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        start = 1
        while True:
            params = {"filter": filter_text, "startIndex": str(start), "count": "200", **(extra or {})}
            response = self.http.get(f"{self.base}/{endpoint}", params=params)
            response.raise_for_status()
            body = response.json()
            page = body.get("Resources", [])
            found.extend(page)
            if not page or len(found) >= body.get("totalResults", 0):
                return found
            start += len(page)

    def users(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every user whose userName starts with ``prefix``, by userName (lower-cased)."""
        return {u["userName"].lower(): u for u in self._list("Users", f'userName sw "{prefix}"')}

    def groups(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {g["displayName"]: g for g in self._list("Groups", f'displayName sw "{prefix}"')}

    def user(self, user_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"{self.base}/Users/{user_id}")
        return None if response.status_code == 404 else response.raise_for_status().json()

    def group(self, group_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"{self.base}/Groups/{group_id}")
        return None if response.status_code == 404 else response.raise_for_status().json()

    def member_ids(self, group_id: str) -> set[str]:
        group = self.group(group_id)
        assert group is not None, f"group {group_id} is gone"
        return {m["value"] for m in group.get("members") or []}
