"""Signing credentials for C2PA manifests: a private CA made on first start, an operator's chain, or a KMS callback.

On first start `load_or_create` makes, in the data folder's `provenance/` (mode 0700, keys 0600):

- `root-ca.pem` / `root-ca.key`: a self-signed root (CA:true, keyCertSign) that verifiers add as a trust anchor.
  Its key is only needed to issue a new leaf later; an operator may move it offline.
- `signing.pem` / `signing.key`: the leaf that signs manifests, issued by that root. c2pa-rs only accepts a
  signing certificate that is not a CA, has an AuthorityKeyIdentifier, key usage digitalSignature and one of a few
  extended key usages (emailProtection here).

Keys are ECDSA P-256 (C2PA `es256`). Later starts load the same files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_CERT, ROOT_KEY = "root-ca.pem", "root-ca.key"
LEAF_CERT, LEAF_KEY = "signing.pem", "signing.key"
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
LEAF_YEARS, ROOT_YEARS = 10, 25


@dataclass(frozen=True)
class SigningCredentials:
    """What signs C2PA manifests: a certificate chain and either a private key or a signing callback.

    `chain_pem` is the signing certificate then any intermediates, without the root; `trust_anchors_pem` holds the
    root(s) a verifier must trust for the manifest to read as "Trusted" (empty when the chain leads to a publicly
    trusted root). `sign` gets the bytes to sign and returns the signature (for ECDSA, DER or raw r||s).
    """

    chain_pem: bytes
    trust_anchors_pem: bytes
    alg: str = "es256"
    key_pem: bytes | None = field(default=None, repr=False)
    sign: Callable[[bytes], bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.alg not in ALGORITHMS:
            raise ValueError(f"unknown signing algorithm {self.alg!r}; one of {', '.join(ALGORITHMS)}")
        if (self.key_pem is None) == (self.sign is None):
            raise ValueError("give exactly one of key_pem and sign")
        if not self.chain_pem.strip():
            raise ValueError("the certificate chain is empty")

    @property
    def certificate(self) -> x509.Certificate:
        """The signing (leaf) certificate."""
        return x509.load_pem_x509_certificates(self.chain_pem)[0]

    def make_signer(self) -> c2pa.Signer:
        """A new c2pa `Signer` (the caller owns it; a `c2pa.Context` given it takes ownership)."""
        alg = c2pa.C2paSigningAlg[self.alg.upper()]
        if self.key_pem is not None:
            return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, self.chain_pem, self.key_pem, None))
        return c2pa.Signer.from_callback(self.sign, alg, self.chain_pem.decode())


def load_or_create(folder: Path, organisation: str = "Pictor") -> SigningCredentials:
    """The installation's own credentials in `folder`, made there (a root CA and a leaf) the first time."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    with _locked(folder / ".lock"):
        if not (folder / LEAF_KEY).exists():
            _create(folder, organisation)
    return from_files(folder / LEAF_CERT, folder / LEAF_KEY, folder / ROOT_CERT)


def from_files(chain_path: Path, key_path: Path, anchors_path: Path | None = None) -> SigningCredentials:
    """Credentials from an operator's PEM files: chain (leaf first, no root), private key, trust anchors."""
    chain_pem, key_pem = Path(chain_path).read_bytes(), Path(key_path).read_bytes()
    anchors_pem = Path(anchors_path).read_bytes() if anchors_path else b""
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    key = serialization.load_pem_private_key(key_pem, password=None)
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError(f"{key_path} is not the key of the first certificate in {chain_path}")
    problems = certificate_problems(leaf)
    if problems:
        raise ValueError(f"{chain_path}: the signing certificate cannot sign C2PA manifests: {'; '.join(problems)}")
    return SigningCredentials(chain_pem, anchors_pem, algorithm_for(key), key_pem=key_pem)


def from_callback(chain_pem: bytes, anchors_pem: bytes, sign: Callable[[bytes], bytes],
                  alg: str = "es256") -> SigningCredentials:
    """Credentials whose key lives elsewhere (a KMS or HSM): `sign(data) -> signature` is called per manifest."""
    problems = certificate_problems(x509.load_pem_x509_certificates(chain_pem)[0])
    if problems:
        raise ValueError(f"the signing certificate cannot sign C2PA manifests: {'; '.join(problems)}")
    return SigningCredentials(chain_pem, anchors_pem, alg, sign=sign)


def algorithm_for(key) -> str:
    """The C2PA algorithm name for a private key (RSA keys sign with PSS)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in names:
            raise ValueError(f"unsupported curve {key.curve.name}")
        return names[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ValueError(f"unsupported key type {type(key).__name__}")


def certificate_problems(cert: x509.Certificate) -> list[str]:
    """Why c2pa-rs would refuse this signing certificate (empty when it is fine)."""
    problems = []

    def extension(kind):
        with contextlib.suppress(x509.ExtensionNotFound):
            return cert.extensions.get_extension_for_class(kind).value
        return None

    constraints = extension(x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        problems.append("it is a CA certificate")
    if extension(x509.AuthorityKeyIdentifier) is None:
        problems.append("no AuthorityKeyIdentifier")
    usage = extension(x509.KeyUsage)
    if usage is None or not usage.digital_signature:
        problems.append("key usage lacks digitalSignature")
    allowed = {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.TIME_STAMPING,
               ExtendedKeyUsageOID.OCSP_SIGNING}
    eku = extension(x509.ExtendedKeyUsage)
    if eku is None or not allowed & set(eku):
        problems.append("no emailProtection (or timeStamping / OCSPSigning) extended key usage")
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        problems.append(f"it expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    return problems


def _create(folder: Path, organisation: str) -> None:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                           x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} provenance root CA")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                           x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} content credentials")])
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365 * ROOT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(leaf_name).issuer_name(root_name)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365 * LEAF_YEARS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
            .sign(root_key, hashes.SHA256()))
    # The leaf key last: its presence marks a complete set (see load_or_create).
    _write(folder / ROOT_KEY, _key_pem(root_key))
    _write(folder / ROOT_CERT, root.public_bytes(serialization.Encoding.PEM))
    _write(folder / LEAF_CERT, leaf.public_bytes(serialization.Encoding.PEM))
    _write(folder / LEAF_KEY, _key_pem(leaf_key))


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes) -> None:
    """Write atomically (a temporary file renamed over the target), readable by the owner only: certificates are
    public, but what lives in the data folder is the service's own (the API serves the trust anchors)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock across processes, so that two first starts do not make two different CAs."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
