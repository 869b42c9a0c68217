"""Signed checkpoints (tree heads) in the C2SP `checkpoint` and `signed-note` text formats, Ed25519 only.

A note is its body (origin, decimal tree size, base64 root hash, each line ending in a newline), a blank
line, then signature lines `— <key name> <base64(4-byte key hash || 64-byte signature)>`. The signature
covers the body bytes; the key hash is SHA-256(key name || 0x0A || 0x01 || public key)[:4], so that tools
from the transparency-dev ecosystem (Go `golang.org/x/mod/sumdb/note`) can check the same text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_PREFIX = "\u2014 "  # em dash and a space
ED25519_ALGORITHM = b"\x01"


class CheckpointError(ValueError):
    """A note that is malformed or whose signature does not verify with the given key."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def _check_name(name: str) -> str:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise ValueError(f"key name must be non-empty, without spaces or '+': {name!r}")
    return name


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The signed-note key id: the first 4 bytes of SHA-256(name || '\\n' || 0x01 || raw public key)."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALGORITHM + _raw_public(public_key)).digest()[:4]


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The signed text: three lines, each ending in a newline."""
    if not origin or "\n" in origin or origin != origin.strip():
        raise ValueError(f"origin must be one non-empty line without surrounding spaces: {origin!r}")
    if size < 0 or len(root) != 32:
        raise ValueError("a checkpoint needs a non-negative size and a 32-byte root")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def load_public_key(key: Ed25519PublicKey | str | bytes) -> Ed25519PublicKey:
    """Accept a key object or its PEM text."""
    if isinstance(key, Ed25519PublicKey):
        return key
    loaded = serialization.load_pem_public_key(key.encode() if isinstance(key, str) else key)
    if not isinstance(loaded, Ed25519PublicKey):
        raise CheckpointError("checkpoint keys are Ed25519")
    return loaded


class CheckpointSigner:
    """An Ed25519 key with a signed-note key name; it signs checkpoints for one log origin."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        self.name = _check_name(name)
        self._private_key = private_key
        self.public_key = private_key.public_key()

    @classmethod
    def load_or_create(cls, path: Path, name: str) -> CheckpointSigner:
        """Load the PEM private key at `path`, or create it (mode 0600) when the file does not exist."""
        path = Path(path)
        if not path.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint-key-")  # mkstemp: mode 0600
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
                os.link(temporary, path)  # never replaces a key that another process created meanwhile
            except FileExistsError:
                pass
            finally:
                os.unlink(temporary)
        return cls.load(path, name)

    @classmethod
    def load(cls, path: Path, name: str) -> CheckpointSigner:
        """The Ed25519 private key in the PEM file at `path` (an operator's own key, shared by every process)."""
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key, name)

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public_key)

    def public_key_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def verifier_key(self) -> str:
        """The signed-note verifier key string `<name>+<hex key hash>+<base64(0x01 || public key)>`."""
        encoded = base64.b64encode(ED25519_ALGORITHM + _raw_public(self.public_key)).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    def sign(self, size: int, root: bytes, origin: str | None = None) -> str:
        """The full signed note for a tree of `size` with `root`; the origin defaults to the key name."""
        body = checkpoint_body(origin or self.name, size, root)
        signature = self._private_key.sign(body.encode())
        encoded = base64.b64encode(self.key_hash + signature).decode()
        return f"{body}\n{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def parse_checkpoint(note: str) -> tuple[Checkpoint, str, list[tuple[str, bytes]]]:
    """Split a note into its checkpoint, the signed body text and its (key name, signature blob) lines.

    Nothing is verified here except the format.
    """
    body, separator, signatures = note.partition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise CheckpointError("a signed note is a body, a blank line and signature lines ending in a newline")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise CheckpointError("a checkpoint body has an origin, a tree size and a root hash")
    origin, size_text, root_text, *extensions = lines
    if not origin or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError(f"bad origin or tree size: {origin!r}, {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as error:
        raise CheckpointError(f"root hash is not base64: {root_text!r}") from error
    if len(root) != 32:
        raise CheckpointError("root hash must be 32 bytes")
    parsed: list[tuple[str, bytes]] = []
    for line in signatures[:-1].split("\n"):
        name, _, blob = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        if not line.startswith(SIGNATURE_PREFIX) or not name or not blob:
            raise CheckpointError(f"malformed signature line: {line!r}")
        try:
            parsed.append((name, base64.b64decode(blob, validate=True)))
        except binascii.Error as error:
            raise CheckpointError(f"signature is not base64: {line!r}") from error
    return Checkpoint(origin, int(size_text), root, tuple(extensions)), body, parsed


def verify_checkpoint(
    note: str, public_key: Ed25519PublicKey | str | bytes, *, name: str | None = None, origin: str | None = None
) -> tuple[int, bytes]:
    """The (tree size, root hash) of a note that carries a valid signature by `public_key`.

    `name` pins the key name (otherwise any line whose key hash matches the key is tried); `origin` pins the
    log. Raises CheckpointError when the format, the origin or the signature is wrong.
    """
    key = load_public_key(public_key)
    checkpoint, body, signatures = parse_checkpoint(note)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for {checkpoint.origin!r}, expected {origin!r}")
    candidates = [
        blob for line_name, blob in signatures
        if (name is None or line_name == name) and len(blob) == 68 and blob[:4] == key_hash(line_name, key)
    ]
    if not candidates:
        raise CheckpointError("no signature line by this key")
    for blob in candidates:
        try:
            key.verify(blob[4:], body.encode())
        except InvalidSignature:
            continue
        return checkpoint.size, checkpoint.root
    raise CheckpointError("checkpoint signature does not verify")
