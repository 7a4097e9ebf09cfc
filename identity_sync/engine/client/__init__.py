"""The engine's SCIM client: the only way the engine reaches a target.

::

    auth = BearerToken(token) | ClientCredentials(token_endpoint, client_id, client_secret, scope=None)
    async with ScimClient(base_url, auth, dialect="entra") as client:
        users = await client.find("User", "userName", "ada@example.com")
        created = await client.create("User", {"userName": "ada@example.com", "active": True})
        await client.update("User", created["id"], [Change("active", False)])

Modules: ``auth`` (credentials), ``transport`` (pool, concurrency, retries), ``dialects`` (PATCH
shapes), ``documents`` (attribute paths <-> documents), ``errors``, ``connection`` (Test
Connection), ``scim_client`` (the requests).
"""

from identity_sync.engine.client import documents
from identity_sync.engine.client.auth import BearerToken, ClientCredentials
from identity_sync.engine.client.dialects import DIALECTS
from identity_sync.engine.client.errors import ConnectionProblem, TargetError
from identity_sync.engine.client.scim_client import ScimClient

__all__ = ["DIALECTS", "BearerToken", "ClientCredentials", "ConnectionProblem", "ScimClient", "TargetError",
           "documents"]
