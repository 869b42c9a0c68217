"""C2PA signing and reading with real images: trust, tampering, lineage, and every way to hold the key."""

import datetime as dt
import io
import json
import stat
from concurrent.futures import ThreadPoolExecutor

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image
from png_chunks import png_chunk

from pictor.governance import credentials as creds_module
from pictor.governance.credentials import SigningCredentials, from_callback, from_files, load_or_create
from pictor.governance.provenance import TRAINED_ALGORITHMIC_MEDIA, Parent, ProvenanceClaim, read, sign

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def gradient(fmt: str = "png", size: int = 256, tint: int = 0) -> bytes:
    x = np.linspace(0, 255, size, dtype=np.uint8)
    pixels = np.stack([np.tile(x, (size, 1)), np.tile(x[:, None], (1, size)),
                       np.full((size, size), tint, np.uint8)], axis=-1)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=PIL_FORMATS[fmt])
    return out.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def claim(artifact_id: str, fmt: str = "png", kind: str = "created", parents=(), **extra) -> ProvenanceClaim:
    return ProvenanceClaim(artifact_id=artifact_id, kind=kind, model_id="pictor-embedded", weights_hash="sha256:00ff",
                           seed=42, prompt_hash="hmac-sha256:abcd", job_id=f"job-{artifact_id}", format=fmt,
                           audit_index=7, policy_version="2025-01", parents=parents, **extra)


@pytest.fixture(scope="module")
def credentials(tmp_path_factory) -> SigningCredentials:
    return load_or_create(tmp_path_factory.mktemp("data") / "provenance")


def c2pa_state(data: bytes, mime: str, anchors: bytes | None) -> str:
    """The validation state straight from c2pa's Reader, independently of `read`."""
    settings = {"verify": {"remote_manifest_fetch": False}}
    if anchors:
        settings["trust"] = {"trust_anchors": anchors.decode()}
    with c2pa.Reader(mime, io.BytesIO(data), context=c2pa.Context(c2pa.Settings.from_dict(settings))) as reader:
        return reader.get_validation_state()


# --- credentials ---------------------------------------------------------------------------------------------


def test_credentials_persist_and_stay_private(tmp_path):
    folder = tmp_path / "data" / "provenance"
    first = load_or_create(folder)
    second = load_or_create(folder)
    assert first == second  # same chain, anchors and key: loaded, not made again
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("root-ca.key", "signing.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert first.alg == "es256"


def test_leaf_can_sign_manifests_and_is_no_ca(credentials):
    leaf = credentials.certificate
    root = x509.load_pem_x509_certificate(credentials.trust_anchors_pem)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    leaf.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert 9 * 365 < (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days < 11 * 365
    assert isinstance(leaf.public_key().curve, ec.SECP256R1)
    assert x509.load_pem_x509_certificates(credentials.chain_pem) == [leaf]  # no root in the chain
    assert creds_module.certificate_problems(leaf) == []
    assert creds_module.certificate_problems(root)  # a CA cannot sign manifests


# --- signing and reading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_signed_image_is_trusted_with_the_served_anchor(credentials, fmt):
    image = gradient(fmt)
    signed = sign(image, claim("a1", fmt), credentials)
    mime = f"image/{fmt}"
    assert c2pa_state(signed, mime, credentials.trust_anchors_pem) == "Trusted"
    assert c2pa_state(signed, mime, None) != "Trusted"
    assert np.array_equal(pixels(signed), pixels(image))  # signing never touches pixels

    summary = read(signed, fmt, credentials.trust_anchors_pem)
    assert summary.validation_state == "Trusted" and summary.errors == []
    assert summary.title == f"a1.{'jpg' if fmt == 'jpeg' else fmt}"
    assert summary.claim_generator.startswith("Pictor ")
    assert summary.signer == "Pictor content credentials"
    assert summary.actions[0]["action"] == "c2pa.created"
    assert summary.actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA

    untrusted = read(signed, mime, None)
    assert untrusted.validation_state == "Valid" and untrusted.errors == ["signingCredential.untrusted"]


def test_1024_png_is_trusted_and_small(credentials):
    image = gradient("png", size=1024)
    signed = sign(image, claim("big"), credentials)
    assert read(signed, "png", credentials.trust_anchors_pem).validation_state == "Trusted"
    assert len(signed) - len(image) < 16_000  # no thumbnail: the manifest is a few kB


def test_one_changed_pixel_invalidates_the_manifest(credentials):
    signed = sign(gradient("png"), claim("t1"), credentials)
    manifest = png_chunk(signed, b"caBX")
    changed = pixels(signed).copy()
    changed[100, 100] ^= 1
    out = io.BytesIO()
    Image.fromarray(changed).save(out, format="PNG")
    tampered = out.getvalue()
    # The manifest chunk goes back where it was (right after IHDR), so only the pixels differ from what was signed.
    tampered = tampered[:33] + manifest + tampered[33:]
    assert signed[:33] == tampered[:33] and png_chunk(tampered, b"caBX") == manifest
    assert np.array_equal(pixels(tampered), changed)

    summary = read(tampered, "png", credentials.trust_anchors_pem)
    assert summary.validation_state == "Invalid"
    assert "assertion.dataHash.mismatch" in summary.errors
    assert summary.pictor["artifact_id"] == "t1"  # still readable, just not valid
    assert c2pa_state(tampered, "image/png", credentials.trust_anchors_pem) == "Invalid"


def test_image_without_manifest(credentials):
    summary = read(gradient("webp"), "webp", credentials.trust_anchors_pem)
    assert summary.validation_state is None and summary.pictor is None and summary.lineage == []


def test_edit_of_an_edit_lists_both_ancestors_in_order(credentials):
    original = sign(gradient("png"), claim("A", "png"), credentials)
    edit = sign(gradient("jpeg", tint=80), claim("B", "jpeg", "edited", [Parent(original, "png", "A")]), credentials)
    mask = gradient("png", tint=255)
    second = sign(gradient("webp", tint=160),
                  claim("C", "webp", "edited", [Parent(edit, "image/jpeg", "B"), Parent(mask, "png", "mask")]),
                  credentials)

    summary = read(second, "webp", credentials.trust_anchors_pem)
    assert summary.validation_state == "Trusted"
    assert summary.lineage == ["B", "A"]
    assert [a["action"] for a in summary.actions] == ["c2pa.opened", "c2pa.edited"]
    assert summary.actions[1]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    parent, mask_ingredient = summary.ingredients
    assert (parent.relationship, parent.artifact_id) == ("parentOf", "B")
    assert [a["action"] for a in parent.actions] == ["c2pa.opened", "c2pa.edited"]
    (grandparent,) = parent.ingredients
    assert (grandparent.artifact_id, [a["action"] for a in grandparent.actions]) == ("A", ["c2pa.created"])
    assert (mask_ingredient.relationship, mask_ingredient.title, mask_ingredient.artifact_id) == \
        ("inputTo", "mask", None)


def test_pictor_assertion_and_extra_actions_round_trip(credentials):
    badge = {"action": "c2pa.edited", "description": "visible AI badge"}
    watermarked = {"action": "c2pa.watermarked"}
    soft_binding = {"label": "c2pa.soft-binding",
                    "data": {"alg": "org.pictor.watermark", "blocks": [{"scope": {}, "value": "YXJ0aWZhY3Q="}]}}
    made = claim("r1", extra_actions=[badge, watermarked], extra_assertions=[soft_binding])
    summary = read(sign(gradient(), made, credentials), "png", credentials.trust_anchors_pem)
    assert summary.validation_state == "Trusted"
    assert summary.pictor == made.assertion()
    assert summary.pictor["seed"] == 42 and summary.pictor["audit_index"] == 7
    assert [a["action"] for a in summary.actions] == ["c2pa.created", "c2pa.edited", "c2pa.watermarked"]
    assert summary.actions[1]["description"] == "visible AI badge"
    as_json = json.loads(json.dumps(summary.to_dict()))
    assert as_json["validation_state"] == "Trusted" and as_json["pictor"]["artifact_id"] == "r1"


def test_bad_claims_are_refused(credentials):
    with pytest.raises(ValueError, match="parent"):
        sign(gradient(), claim("e1", kind="edited"), credentials)
    with pytest.raises(ValueError, match="format"):
        sign(gradient(), claim("g1", fmt="bmp"), credentials)
    with pytest.raises(c2pa.C2paError, match="softBindingMissing"):  # c2pa verifies what it just signed
        sign(gradient(), claim("g2", extra_actions=[{"action": "c2pa.watermarked"}]), credentials)


def test_worker_threads_sign_at_once(credentials):
    with ThreadPoolExecutor(4) as pool:
        signed = list(pool.map(lambda i: sign(gradient(tint=i), claim(f"w{i}"), credentials), range(12)))
    summaries = [read(s, "png", credentials.trust_anchors_pem) for s in signed]
    assert [s.validation_state for s in summaries] == ["Trusted"] * 12
    assert [s.pictor["artifact_id"] for s in summaries] == [f"w{i}" for i in range(12)]


# --- operator-supplied keys ----------------------------------------------------------------------------------


def test_operator_chain_with_an_intermediate(tmp_path):
    root_key, root = certificate("Operator root", ca=True)
    inter_key, inter = certificate("Operator intermediate", ca=True, issuer=(root_key, root))
    leaf_key, leaf = certificate("Operator signer", ca=False, issuer=(inter_key, inter))
    pem = serialization.Encoding.PEM
    (tmp_path / "chain.pem").write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    (tmp_path / "key.pem").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    (tmp_path / "root.pem").write_bytes(root.public_bytes(pem))
    operator = from_files(tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "root.pem")
    summary = read(sign(gradient("jpeg"), claim("o1", "jpeg"), operator), "jpeg", operator.trust_anchors_pem)
    assert summary.validation_state == "Trusted" and summary.signer == "Operator signer"

    (tmp_path / "ca-chain.pem").write_bytes(inter.public_bytes(pem))
    (tmp_path / "ca-key.pem").write_bytes(inter_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                                  serialization.NoEncryption()))
    with pytest.raises(ValueError, match="CA certificate"):
        from_files(tmp_path / "ca-chain.pem", tmp_path / "ca-key.pem", tmp_path / "root.pem")
    with pytest.raises(ValueError, match="not the key"):
        from_files(tmp_path / "chain.pem", tmp_path / "ca-key.pem", tmp_path / "root.pem")


def test_callback_signer(credentials):
    key = serialization.load_pem_private_key(credentials.key_pem, password=None)
    calls = []

    def kms_sign(data: bytes) -> bytes:  # stands in for a KMS / HSM call
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    remote = from_callback(credentials.chain_pem, credentials.trust_anchors_pem, kms_sign)
    assert remote.key_pem is None
    summary = read(sign(gradient("png"), claim("k1"), remote), "png", credentials.trust_anchors_pem)
    assert summary.validation_state == "Trusted" and calls


def test_credentials_need_exactly_one_way_to_sign(credentials):
    with pytest.raises(ValueError, match="exactly one"):
        SigningCredentials(credentials.chain_pem, credentials.trust_anchors_pem)
    with pytest.raises(ValueError, match="algorithm"):
        SigningCredentials(credentials.chain_pem, b"", alg="md5", key_pem=credentials.key_pem)


def certificate(name: str, ca: bool, issuer=None):
    """A P-256 key and certificate: self-signed when `issuer` is None, else issued by (issuer key, issuer cert)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_key, issuer_cert = issuer or (key, None)
    issuer_name = issuer_cert.subject if issuer_cert else subject
    issuer_public = issuer_key.public_key()
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
               .not_valid_after(now + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    return key, builder.sign(issuer_key, hashes.SHA256())
