"""A throw-away OpenLDAP server for the LDAP source's tests: a ``slapd.conf`` generated into a
temporary directory (mdb databases, ``syncprov`` and ``refint`` loaded), started on a free loopback
port, stopped and deleted at the end — like tests/pg.py does for PostgreSQL.

Two databases, so that one server tests every incremental mode we can run without Active
Directory:

* ``dc=example,dc=com`` with the ``syncprov`` overlay (RFC 4533 content synchronisation, with a
  session log so that deletes are reported as such), ``refint`` (renaming or deleting an entry
  rewrites the ``member`` and ``manager`` values that name it, as Active Directory does; slapd
  does it just after the operation, so tests wait for it, and does not report it to syncrepl)
  and ``ppolicy`` (``pwdAccountLockedTime``);
* ``dc=plain,dc=com`` with neither: no change tracking, so the source polls ``modifyTimestamp``.

A small test schema (:data:`AD_TEST_SCHEMA`) gives slapd Active Directory's attribute names
(``objectGUID`` as an octet string, ``userAccountControl``, ``sAMAccountName``,
``proxyAddresses``, ``extensionAttribute1``…``15``, ``userPrincipalName``…) and object classes
``user``, ``group`` and ``computer``, so the AD preset is exercised against a real server.

The source reads as ``cn=reader`` (an ordinary identity: the size limit applies to it, unlike to
the root DN) and the tests write as the root DN. ``cn=limited`` may read at most
``LIMITED_TOTAL`` entries even through paging (a server that truncates a read).

Without ``/usr/sbin/slapd`` the LDAP tests skip — unless ``IDSYNC_REQUIRE_LDAP`` is set
(``.ci/run`` sets it), where a missing server must fail the run instead of testing less.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.pg import free_port

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIRS = (Path("/usr/lib/ldap"), Path("/usr/lib/openldap"), Path("/usr/libexec/openldap"))

SKIP_REASON = ("OpenLDAP's slapd (and python-ldap) not found: the LDAP source's tests are skipped "
               "(apt-get install slapd ldap-utils libldap2-dev libsasl2-dev, pip install -e .[ldap]; "
               "or run .ci/run)")

SUFFIX = "dc=example,dc=com"
PLAIN_SUFFIX = "dc=plain,dc=com"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PASSWORD = "reader-secret"
LIMITED_DN = f"cn=limited,{SUFFIX}"
LIMITED_PASSWORD = "limited-secret"
#: The server's size limit for an ordinary search: a read must page past it.
SIZE_LIMIT = 50
#: Entries ``cn=limited`` may read in all, paged or not.
LIMITED_TOTAL = 100

_AD_OID = "1.3.6.1.4.1.99999.77"  # a private arc: this schema exists only in tests
_STRING = "1.3.6.1.4.1.1466.115.121.1.15"
AD_TEST_SCHEMA = "\n".join([
    f"attributetype ( {_AD_OID}.1.1 NAME 'objectGUID' EQUALITY octetStringMatch "
    "SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )",
    f"attributetype ( {_AD_OID}.1.2 NAME 'userAccountControl' EQUALITY integerMatch "
    "SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
    *(f"attributetype ( {_AD_OID}.1.{number} NAME '{name}' EQUALITY caseIgnoreMatch "
      f"SUBSTR caseIgnoreSubstringsMatch SYNTAX {_STRING}{' SINGLE-VALUE' if single else ''} )"
      for number, name, single in [(3, "sAMAccountName", True), (4, "userPrincipalName", True),
                                   (5, "proxyAddresses", False), (6, "company", True), (7, "department", True),
                                   (8, "mailNickname", True), (9, "employeeID", True)]),
    *(f"attributetype ( {_AD_OID}.2.{number} NAME 'extensionAttribute{number}' EQUALITY caseIgnoreMatch "
      f"SYNTAX {_STRING} SINGLE-VALUE )" for number in range(1, 16)),
    f"objectclass ( {_AD_OID}.3.1 NAME 'user' SUP inetOrgPerson STRUCTURAL MAY ( objectGUID $ "
    "userAccountControl $ sAMAccountName $ userPrincipalName $ proxyAddresses $ company $ department $ "
    "mailNickname $ employeeID $ co $ c $ " + " $ ".join(f"extensionAttribute{n}" for n in range(1, 16)) + " ) )",
    f"objectclass ( {_AD_OID}.3.2 NAME 'computer' SUP user STRUCTURAL )",
    f"objectclass ( {_AD_OID}.3.3 NAME 'group' SUP top STRUCTURAL MUST cn MAY ( objectGUID $ sAMAccountName $ "
    "member $ description $ displayName $ mail $ mailNickname $ proxyAddresses ) )",
]) + "\n"


def find_slapd() -> bool:
    """Whether this machine can run the LDAP tests: slapd, its modules, its schemas, python-ldap."""
    try:
        import ldap  # noqa: F401
    except ImportError:
        return False
    return SLAPD.exists() and _module_dir() is not None and (SCHEMA_DIR / "inetorgperson.schema").exists()


def _module_dir() -> Path | None:
    return next((d for d in MODULE_DIRS if (d / "syncprov.la").exists() or (d / "syncprov.so").exists()), None)


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for ``host`` signed by it (cryptography):
    returns (ca.pem, server.pem, server.key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "identity-sync test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class SlapdServer:
    """One slapd on 127.0.0.1:``port`` (and, with ``tls``, LDAPS on ``tls_port``)."""

    def __init__(self, *, tls: bool = False, size_limit: int = SIZE_LIMIT, map_size: int = 1 << 30) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="idsync-slapd-"))
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.ca_file: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.root / "slapd.log"
        tls_lines = ""
        if tls:
            self.ca_file, cert, key = make_tls_files(self.root)
            tls_lines = (f"TLSCACertificateFile {self.ca_file}\nTLSCertificateFile {cert}\n"
                         f"TLSCertificateKeyFile {key}\n")
        (self.root / "ad-test.schema").write_text(AD_TEST_SCHEMA)
        databases = []
        for suffix, name, tracked in ((SUFFIX, "example", True), (PLAIN_SUFFIX, "plain", False)):
            (self.root / name).mkdir()
            # ppolicy: for its pwdAccountLockedTime (a locked account is a disabled user).
            # refint's rewrites are not replicated (slapo-refint(5)): syncprov does not report them.
            overlays = ("overlay refint\nrefint_attributes member manager\noverlay ppolicy\n"
                        "overlay syncprov\nsyncprov-checkpoint 100 1\nsyncprov-sessionlog 100000\n") if tracked else ""
            databases.append(f"""
database mdb
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw {ADMIN_PASSWORD}
directory {self.root / name}
maxsize {map_size}
dbnosync
index objectClass,entryUUID,entryCSN eq
index modifyTimestamp eq
# An ordinary search stops at {size_limit} entries; a paged one may read everything (as
# Active Directory's MaxPageSize), except for cn=limited.
limits dn.exact="{LIMITED_DN}" size.soft={size_limit} size.hard={size_limit} size.prtotal={LIMITED_TOTAL}
limits * size.soft={size_limit} size.hard={size_limit} size.prtotal=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by * read
{overlays}""")
        schemas = "".join(f"include {SCHEMA_DIR / name}.schema\n" for name in ("core", "cosine", "inetorgperson"))
        self.config = self.root / "slapd.conf"
        self.config.write_text(f"""{schemas}include {self.root / 'ad-test.schema'}
modulepath {_module_dir()}
moduleload back_mdb
moduleload syncprov
moduleload refint
moduleload ppolicy
pidfile {self.root / 'slapd.pid'}
argsfile {self.root / 'slapd.args'}
{tls_lines}{''.join(databases)}""")

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def slapadd(self, ldif: Path, suffix: str = SUFFIX) -> None:
        """Load an LDIF offline (quick mode: the fastest way to a large directory)."""
        subprocess.run([str(SLAPADD), "-q", "-f", str(self.config), "-b", suffix, "-l", str(ldif)], check=True,
                       capture_output=True, timeout=1800)

    def start(self) -> None:
        urls = self.url + "/" + (f" {self.tls_url}/" if self.tls_port else "")
        with self.log.open("wb") as log:
            # -d 0: stay in the foreground (so that we own the process) and log nothing but errors.
            self.process = subprocess.Popen([str(SLAPD), "-d", "0", "-h", urls, "-f", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        self._seed()

    def _wait_ready(self, timeout: float = 30) -> None:
        import ldap

        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}: {self.log_tail()}")
            try:
                self.admin().unbind_s()
                return
            except ldap.SERVER_DOWN:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"slapd did not answer within {timeout}s: {self.log_tail()}") from None
                time.sleep(0.05)

    def _seed(self) -> None:
        """The suffixes, the reading identities and the organisational units the tests use."""
        import ldap

        for suffix in (SUFFIX, PLAIN_SUFFIX):
            conn = self.admin(suffix)
            name = suffix.split(",")[0].split("=")[1]
            try:
                conn.add_s(suffix, [("objectClass", [b"dcObject", b"organization"]), ("dc", [name.encode()]),
                                    ("o", [name.encode()])])
            except ldap.ALREADY_EXISTS:
                conn.unbind_s()
                continue
            for ou in ("people", "groups", "ad", "moved"):
                conn.add_s(f"ou={ou},{suffix}", [("objectClass", [b"organizationalUnit"]), ("ou", [ou.encode()])])
            if suffix == SUFFIX:
                for dn, password in ((READER_DN, READER_PASSWORD), (LIMITED_DN, LIMITED_PASSWORD)):
                    conn.add_s(dn, [("objectClass", [b"person"]), ("cn", [dn[3:].split(",")[0].encode()]),
                                    ("sn", [b"service"]), ("userPassword", [password.encode()])])
            conn.unbind_s()

    def admin(self, suffix: str = SUFFIX):  # type: ignore[no-untyped-def]  # ldap.ldapobject.LDAPObject
        """A connection bound as the root DN of ``suffix`` (unlimited: the tests' writer)."""
        import ldap

        conn = ldap.initialize(self.url)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
        conn.simple_bind_s(f"cn=admin,{suffix}", ADMIN_PASSWORD)
        return conn

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_slapd(**kwargs: object) -> SlapdServer:
    server = SlapdServer(**kwargs)  # type: ignore[arg-type]
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server


def require_ldap() -> None:
    """Skip (or, with ``IDSYNC_REQUIRE_LDAP``, fail) when this machine cannot run the LDAP tests."""
    import pytest

    if not find_slapd():
        if os.environ.get("IDSYNC_REQUIRE_LDAP"):
            pytest.fail("IDSYNC_REQUIRE_LDAP is set but " + SKIP_REASON)
        pytest.skip(SKIP_REASON)


Value = str | bytes | list[str] | list[bytes] | None


def _values(value: Value) -> list[bytes]:
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, bytes) else str(item).encode() for item in items if item is not None]


class LdapDirectory:
    """One test's subtree ``ou=NAME,SUFFIX`` (with ``ou=people``, ``ou=groups``, ``ou=moved``
    under it), written as the root DN: tests share a server, never entries."""

    def __init__(self, server: SlapdServer, name: str, suffix: str = SUFFIX, *, create: bool = True) -> None:
        self.server = server
        self.conn = server.admin(suffix)
        self.base = f"ou={name},{suffix}"
        if not create:
            return
        self.conn.add_s(self.base, [("objectClass", [b"organizationalUnit"]), ("ou", [name.encode()])])
        for ou in ("people", "groups", "moved"):
            self.conn.add_s(f"ou={ou},{self.base}", [("objectClass", [b"organizationalUnit"]), ("ou", [ou.encode()])])

    def dn(self, rdn: str, ou: str = "people") -> str:
        return f"{rdn},ou={ou},{self.base}"

    def add(self, dn: str, object_classes: list[str], **attributes: Value) -> str:
        entry = [("objectClass", _values(object_classes))]  # type: ignore[arg-type]
        entry += [(name, _values(value)) for name, value in attributes.items() if value is not None]
        self.conn.add_s(dn, entry)
        return dn

    def add_user(self, uid: str, *, ou: str = "people", classes: tuple[str, ...] = (), **attributes: Value) -> str:
        """An inetOrgPerson (``classes``: more object classes, e.g. extensibleObject for ``c``)."""
        attributes.setdefault("cn", uid)
        attributes.setdefault("sn", uid)
        return self.add(self.dn(f"uid={uid}", ou), ["inetOrgPerson", *classes], uid=uid, **attributes)

    def add_group(self, cn: str, members: list[str], object_class: str = "groupOfNames", **attributes: Value) -> str:
        member_attribute = "uniqueMember" if object_class == "groupOfUniqueNames" else "member"
        return self.add(self.dn(f"cn={cn}", "groups"), [object_class], cn=cn,
                        **{member_attribute: list(members)}, **attributes)  # type: ignore[arg-type]

    def modify(self, dn: str, **attributes: Value) -> None:
        """Replace each attribute's values (``None``: remove the attribute)."""
        import ldap

        self.conn.modify_s(dn, [(ldap.MOD_REPLACE, name, _values(value) or None) for name, value in attributes.items()])

    def add_values(self, dn: str, attribute: str, values: list[str]) -> None:
        import ldap

        self.conn.modify_s(dn, [(ldap.MOD_ADD, attribute, _values(values))])  # type: ignore[arg-type]

    def delete_values(self, dn: str, attribute: str, values: list[str]) -> None:
        import ldap

        self.conn.modify_s(dn, [(ldap.MOD_DELETE, attribute, _values(values))])  # type: ignore[arg-type]

    def rename(self, dn: str, new_rdn: str, ou: str | None = None) -> str:
        """A rename (new RDN) and, with ``ou``, a move: the DN changes, the entryUUID does not."""
        superior = f"ou={ou},{self.base}" if ou else dn.split(",", 1)[1]
        self.conn.rename_s(dn, new_rdn, superior if ou else None)
        return f"{new_rdn},{superior}"

    def delete(self, dn: str) -> None:
        self.conn.delete_s(dn)

    def values(self, dn: str, attribute: str) -> set[str]:
        import ldap

        found = self.conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attribute])
        return {value.decode().lower() for name, values in found[0][1].items() if name.lower() == attribute.lower()
                for value in values}

    def wait_for(self, dn: str, attribute: str, expected: set[str], timeout: float = 10) -> None:
        """Until ``attribute`` of ``dn`` holds ``expected`` (refint rewrites references just after a
        rename or a delete, in a thread of its own)."""
        expected = {value.lower() for value in expected}
        deadline = time.monotonic() + timeout
        while self.values(dn, attribute) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{dn} {attribute}: {self.values(dn, attribute)} != {expected}")
            time.sleep(0.05)

    def close(self) -> None:
        self.conn.unbind_s()
