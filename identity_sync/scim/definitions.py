"""The schemas we serve: core User (RFC 7643 §4.1), the enterprise extension (§4.3), the Global
Relay extension named in the Entra gallery tutorial, and core Group (§4.2).

Characteristics follow RFC 7643 §8.7.1 with two deliberate choices:

* ``password`` is not part of our User schema. An archive has no use for it; clients that send
  one (Okta does) have it ignored, and it is never stored, in clear or otherwise.
* ``proxyAddresses`` is multi-valued (Exchange semantics: ``SMTP:`` primary, ``smtp:`` aliases);
  the tutorial only says "String", so a bare string and ``[{"value": …}]`` are accepted too.
"""

from __future__ import annotations

from identity_sync.scim.attributes import (
    BOOLEAN,
    COMPLEX,
    DATETIME,
    REFERENCE,
    Attribute,
    Schema,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GLOBALRELAY_SCHEMA = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"


def _multi(name: str, description: str, *, types: tuple[str, ...], value_type: str = "string",
           value_case_exact: bool = False, extra: tuple[Attribute, ...] = ()) -> Attribute:
    """A typed multi-valued complex attribute (emails, phoneNumbers, ims, …)."""
    return Attribute(
        name,
        COMPLEX,
        multi_valued=True,
        description=description,
        sub_attributes=(
            Attribute("value", value_type, description=f"The value of the {name} entry.",
                      case_exact=value_case_exact),
            Attribute("display", description="A human-readable name, primarily used for display purposes."),
            Attribute("type", description="A label indicating the attribute's function.", canonical_values=types),
            Attribute("primary", BOOLEAN, description="Indicates the primary value of this attribute."),
            *extra,
        ),
    )


ID = Attribute("id", description="Unique identifier for the resource, assigned by the service provider.",
               case_exact=True, mutability="readOnly", returned="always", uniqueness="server")
EXTERNAL_ID = Attribute("externalId", description="Identifier of the resource as defined by the provisioning client.",
                        case_exact=True)
META = Attribute(
    "meta",
    COMPLEX,
    description="Resource metadata.",
    mutability="readOnly",
    sub_attributes=(
        Attribute("resourceType", case_exact=True, mutability="readOnly"),
        Attribute("created", DATETIME, mutability="readOnly"),
        Attribute("lastModified", DATETIME, mutability="readOnly"),
        Attribute("location", REFERENCE, case_exact=True, mutability="readOnly", reference_types=("uri",)),
        Attribute("version", case_exact=True, mutability="readOnly"),
    ),
)
#: Attributes every resource has (RFC 7643 §3.1); they are not listed in ``/Schemas``.
COMMON_ATTRIBUTES = (ID, EXTERNAL_ID, META)

_ADDRESS_SUBS = (
    Attribute("formatted", description="The full mailing address, formatted for display."),
    Attribute("streetAddress", description="The full street address component."),
    Attribute("locality", description="The city or locality component."),
    Attribute("region", description="The state or region component."),
    Attribute("postalCode", description="The zip code or postal code component."),
    Attribute("country", description="The country name component."),
    Attribute("type", description="A label indicating the attribute's function.",
              canonical_values=("work", "home", "other")),
    Attribute("primary", BOOLEAN, description="Indicates the primary mailing address."),
)

USER = Schema(
    USER_SCHEMA,
    "User",
    "User Account",
    (
        Attribute("userName", description="Unique identifier for the User, case-insensitive per tenant.",
                  required=True, uniqueness="server"),
        Attribute("name", COMPLEX, description="The components of the user's real name.", sub_attributes=(
            Attribute("formatted", description="The full name, formatted for display."),
            Attribute("familyName", description="The family name of the User."),
            Attribute("givenName", description="The given name of the User."),
            Attribute("middleName", description="The middle name(s) of the User."),
            Attribute("honorificPrefix", description="The honorific prefix(es) of the User."),
            Attribute("honorificSuffix", description="The honorific suffix(es) of the User."),
        )),
        Attribute("displayName", description="The name of the User, suitable for display to end-users."),
        Attribute("nickName", description="The casual way to address the user."),
        Attribute("profileUrl", REFERENCE, description="A fully qualified URL pointing to the User's profile.",
                  reference_types=("external",)),
        Attribute("title", description="The user's title, such as \"Vice President\"."),
        Attribute("userType", description="Used to identify the relationship between the organization and the user."),
        Attribute("preferredLanguage", description="Preferred written or spoken language (RFC 7231 §5.3.5)."),
        Attribute("locale", description="Default location for localizing, e.g. en-US."),
        Attribute("timezone", description="The User's time zone in IANA format, e.g. America/Los_Angeles."),
        Attribute("active", BOOLEAN, description="The User's administrative status. false = disabled, never deleted."),
        _multi("emails", "Email addresses for the user.", types=("work", "home", "other")),
        _multi("phoneNumbers", "Phone numbers for the User.",
               types=("work", "home", "mobile", "fax", "pager", "other")),
        _multi("ims", "Instant messaging addresses for the User.",
               types=("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
        _multi("photos", "URLs of photos of the User.", types=("photo", "thumbnail"), value_type=REFERENCE,
               value_case_exact=True),
        Attribute("addresses", COMPLEX, multi_valued=True, description="A physical mailing address for this User.",
                  sub_attributes=_ADDRESS_SUBS),
        Attribute("groups", COMPLEX, multi_valued=True, mutability="readOnly",
                  description="A list of groups to which the user belongs (direct membership).",
                  sub_attributes=(
                      Attribute("value", case_exact=True, mutability="readOnly"),
                      Attribute("$ref", REFERENCE, case_exact=True, mutability="readOnly",
                                reference_types=("Group",)),
                      Attribute("display", mutability="readOnly"),
                      Attribute("type", mutability="readOnly", canonical_values=("direct", "indirect")),
                  )),
        _multi("entitlements", "A list of entitlements for the User.", types=()),
        _multi("roles", "A list of roles for the User.", types=()),
        _multi("x509Certificates", "A list of certificates issued to the User.", types=(), value_type="binary",
               value_case_exact=True),
    ),
)

ENTERPRISE_USER = Schema(
    ENTERPRISE_SCHEMA,
    "EnterpriseUser",
    "Enterprise User",
    (
        Attribute("employeeNumber", description="Numeric or alphanumeric identifier assigned to a person."),
        Attribute("costCenter", description="Identifies the name of a cost center."),
        Attribute("organization", description="Identifies the name of an organization."),
        Attribute("division", description="Identifies the name of a division."),
        Attribute("department", description="Identifies the name of a department."),
        Attribute("manager", COMPLEX, description="The User's manager: a reference to another User of this tenant.",
                  sub_attributes=(
                      Attribute("value", case_exact=True, description="The id of the SCIM resource of the manager."),
                      Attribute("$ref", REFERENCE, case_exact=True, reference_types=("User",),
                                description="The URI of the manager's User resource."),
                      Attribute("displayName", mutability="readOnly", description="The manager's displayName."),
                  )),
    ),
)

GLOBALRELAY_USER = Schema(
    GLOBALRELAY_SCHEMA,
    "GlobalRelayUser",
    "Global Relay Identity Sync user extension: archive aliases and Exchange extension attributes.",
    (
        Attribute("proxyAddresses", multi_valued=True, exact_element_identity=True,
                  description="Exchange proxy addresses (SMTP: primary, smtp: aliases), kept verbatim. Filters "
                              "compare them case-insensitively; PATCH add and remove match exact values, so "
                              "SMTP:a@x and smtp:a@x are different addresses."),
        *(Attribute(f"extensionAttribute{i}", description=f"Exchange custom attribute {i}.") for i in range(1, 16)),
    ),
)

GROUP = Schema(
    GROUP_SCHEMA,
    "Group",
    "Group",
    (
        Attribute("displayName", required=True, uniqueness="server",
                  description="A human-readable name for the Group, unique per tenant (case-insensitive)."),
        Attribute("members", COMPLEX, multi_valued=True, description="A list of members of the Group.",
                  sub_attributes=(
                      Attribute("value", case_exact=True, mutability="immutable",
                                description="Identifier of the member of this Group."),
                      Attribute("$ref", REFERENCE, case_exact=True, mutability="immutable",
                                reference_types=("User", "Group"), description="The URI of the member resource."),
                      Attribute("display", mutability="readOnly", description="The member's display name."),
                      Attribute("type", mutability="immutable", canonical_values=("User", "Group"),
                                description="The type of the member."),
                  )),
    ),
)
