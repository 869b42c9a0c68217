"""Provenance end to end: C2PA on every output, verification, lineage, audit proofs, the audit CLI and replay.

A server of its own, so that the audit log holds only this module's entries. Proofs are checked with
an RFC 9162 verifier written here, independently of Pictor's, and checkpoints with `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing

import c2pa
import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from PIL import Image
from png_chunks import png_chunk

from pictor.engine.placement import cpu_threads

from .helpers import Server, alpha_mask, decode, png_bytes, run_cli, start_server

PROMPT = "a red circle in the top left on a white background"
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("provenance"))
    yield running
    running.stop()
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {server.demo_key}"},
                      timeout=120) as plain:
        yield plain


@pytest.fixture(scope="module")
def anchors(server: Server) -> bytes:
    response = httpx.get(f"{server.url}/v1/provenance/trust_anchors", timeout=10)  # public: no key needed
    assert response.status_code == 200 and b"BEGIN CERTIFICATE" in response.content
    return response.content


def c2pa_state(data: bytes, mime: str, anchors: bytes | None) -> str:
    """Straight from the c2pa library's Reader, not through Pictor."""
    settings: dict = {"verify": {"remote_manifest_fetch": False}}
    if anchors:
        settings["trust"] = {"trust_anchors": anchors.decode()}
    with c2pa.Reader(mime, io.BytesIO(data), context=c2pa.Context(c2pa.Settings.from_dict(settings))) as reader:
        return reader.get_validation_state()


def generate(server: Server, fmt: str = "png", seed: int = 1, key: str | None = None):
    result = server.client(key).images.generate(prompt=PROMPT, size="64x64", quality="low", output_format=fmt,
                                                extra_body={"seed": seed})
    item = result.data[0]
    return item.model_extra["id"], base64.b64decode(item.b64_json)


def edit(server: Server, image: bytes, prompt: str, seed: int = 3, mask: bytes | None = None):
    extra = {"mask": ("mask.png", mask, "image/png")} if mask else {}
    result = server.client().images.edit(image=("in.png", image, "image/png"), prompt=prompt, size="64x64",
                                         quality="low", extra_body={"seed": seed}, **extra)
    item = result.data[0]
    return item.model_extra["id"], base64.b64decode(item.b64_json)


def verify_upload(http: httpx.Client, data: bytes, key: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = http.post("/v1/provenance/verify", files={"image": ("x", data, "application/octet-stream")},
                         headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_every_output_format_is_trusted_with_the_served_anchor(server, anchors, fmt):
    image_id, data = generate(server, fmt)
    assert c2pa_state(data, MIME[fmt], anchors) == "Trusted"
    assert c2pa_state(data, MIME[fmt], None) != "Trusted"  # trust comes from the anchor, not from the file


def test_image_provenance_names_model_seed_and_audit_entry(server, http):
    image_id, _ = generate(server, seed=21)
    body = http.get(f"/v1/images/{image_id}/provenance").json()
    c2pa_summary = body["c2pa"]
    assert c2pa_summary["validation_state"] == "Trusted"
    assert [a["action"] for a in c2pa_summary["actions"]] == ["c2pa.created"]
    assert "trainedAlgorithmicMedia" in c2pa_summary["actions"][0]["digitalSourceType"]
    made = c2pa_summary["pictor"]
    assert made["artifact_id"] == image_id and made["seed"] == 21 and made["model_id"] == "pictor-embedded"
    assert len(made["weights_hash"]) == 64 and made["audit_index"] == body["audit_index"] >= 0
    assert PROMPT not in str(body["c2pa"])  # the manifest carries a salted hash, never the prompt


def test_one_changed_pixel_makes_the_file_invalid(server, http):
    _, signed = generate(server, seed=5)
    manifest = png_chunk(signed, b"caBX")
    changed = np.asarray(decode(base64.b64encode(signed).decode())).copy()
    changed[10, 10, 0] ^= 1
    out = io.BytesIO()
    Image.fromarray(changed).save(out, format="PNG")
    tampered = out.getvalue()
    tampered = tampered[:33] + manifest + tampered[33:]  # the same manifest, right after IHDR as before
    report = verify_upload(http, tampered)
    assert report["c2pa"]["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in report["c2pa"]["errors"]
    assert report["image"] is None  # neither its bytes nor a valid manifest tie it to an image

    untouched = verify_upload(http, signed)
    assert untouched["c2pa"]["validation_state"] == "Trusted" and untouched["image"]["match"] == "exact"
    assert set(untouched["watermark"]) >= {"detected", "artifact_id", "confidence"}


def test_an_edit_of_an_edit_shows_both_ancestors(server, http, anchors):
    first_id, first = generate(server, seed=7)
    second_id, second = edit(server, first, "make the circle blue")
    third_id, third = edit(server, second, "move the circle to the bottom right")
    summary = http.get(f"/v1/images/{third_id}/provenance").json()["c2pa"]
    assert summary["lineage"] == [second_id, first_id]
    assert [a["action"] for a in summary["actions"]] == ["c2pa.opened", "c2pa.edited"]
    assert c2pa_state(third, "image/png", anchors) == "Trusted"

    lineage = http.get(f"/v1/images/{third_id}/lineage").json()
    assert [a["id"] for a in lineage["ancestors"]] == [second_id, first_id]
    assert {"parent": second_id, "child": third_id, "operation": "edit"} in lineage["edges"]
    assert {"parent": first_id, "child": second_id, "operation": "edit"} in lineage["edges"]
    below = http.get(f"/v1/images/{first_id}/lineage").json()
    assert {d["id"] for d in below["descendants"]} >= {second_id, third_id}
    assert below["ancestors"] == []


def test_another_tenant_sees_neither_the_image_nor_its_lineage(server, http):
    image_id, data = generate(server, seed=8)
    other = server.key_for("provenance-other")
    headers = {"authorization": f"Bearer {other}"}
    for path in (f"/v1/images/{image_id}/provenance", f"/v1/images/{image_id}/lineage"):
        response = http.get(path, headers=headers)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    report = verify_upload(http, data, key=other)
    assert report["c2pa"]["validation_state"] == "Trusted" and report["image"] is None
    index = http.get(f"/v1/images/{image_id}/provenance").json()["audit_index"]
    assert http.get(f"/v1/audit/entries/{index}/proof", headers=headers).status_code == 404


def test_verify_refuses_what_is_not_an_image(http):
    response = http.post("/v1/provenance/verify", files={"image": ("x.png", b"not an image", "image/png")})
    assert response.status_code == 400 and response.json()["error"]["param"] == "image"
    response = http.post("/v1/provenance/verify", files={"file": ("x.png", b"abc", "image/png")})
    assert response.status_code == 400 and response.json()["error"]["code"] == "missing_image"


# ---- the audit log --------------------------------------------------------------------------------------------


def _leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def rfc9162_inclusion_root(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, written out here so that Pictor's own code is not checking itself."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0
    return r


def rfc9162_consistency_roots(old: int, new: int, old_root: bytes, proof: list[bytes]) -> tuple[bytes, bytes]:
    """RFC 9162 section 2.1.4.2: the (old, new) roots that the proof commits to."""
    if old == new:
        return old_root, old_root
    if old & (old - 1) == 0:  # a power of two: the old root is the proof's first node
        proof = [old_root, *proof]
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        assert sn != 0
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0
    return fr, sr


def checkpoint_root(body: dict) -> tuple[int, bytes]:
    """Check the signed note with the published key; return its (size, root)."""
    note = body["checkpoint"]
    text, _, signatures = note.partition("\n\n")
    origin, size, root = text.split("\n")[:3]
    assert origin == body["origin"]
    line = signatures.strip().split("\n")[0]
    assert line.startswith("\u2014 ")
    signature = base64.b64decode(line.split(" ")[-1])[4:]
    load_pem_public_key(body["public_key"].encode()).verify(signature, (text + "\n").encode())
    return int(size), base64.b64decode(root)


def test_inclusion_and_consistency_proofs_verify_independently(server, http):
    image_id, _ = generate(server, seed=31)
    index = http.get(f"/v1/images/{image_id}/provenance").json()["audit_index"]
    old = http.get("/v1/audit/checkpoint").json()
    old_size, old_root = checkpoint_root(old)
    assert old_size > index

    proof = http.get(f"/v1/audit/entries/{index}/proof").json()
    assert proof["tree_size"] == old_size and proof["leaf_index"] == index
    leaf = _leaf(proof["entry"].encode())
    root = rfc9162_inclusion_root(leaf, index, proof["tree_size"], [bytes.fromhex(p) for p in proof["proof"]])
    assert root == old_root

    for seed in range(40, 43):
        generate(server, seed=seed)
    new = http.get("/v1/audit/checkpoint").json()
    new_size, new_root = checkpoint_root(new)
    assert new_size >= old_size + 3
    body = http.get("/v1/audit/consistency", params={"old_size": old_size, "new_size": new_size}).json()
    roots = rfc9162_consistency_roots(old_size, new_size, old_root, [bytes.fromhex(p) for p in body["proof"]])
    assert roots == (old_root, new_root)

    wrong = bytearray(leaf)
    wrong[0] ^= 1
    assert rfc9162_inclusion_root(bytes(wrong), index, proof["tree_size"],
                                  [bytes.fromhex(p) for p in proof["proof"]]) != old_root
    too_big = http.get(f"/v1/audit/entries/{index}/proof", params={"tree_size": new_size + 1000})
    assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "tree_size"


def test_audit_verify_passes_and_catches_a_changed_entry(server, http, tmp_path):
    generate(server, seed=50)
    generate(server, seed=51)
    http.get("/v1/audit/checkpoint")  # every entry so far under a signed checkpoint
    done = run_cli("audit", "verify", "--data-dir", str(server.data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    exported = run_cli("audit", "export", str(tmp_path / "export"), "--data-dir", str(server.data_dir))
    assert exported.returncode == 0, exported.stderr
    lines = (tmp_path / "export" / "entries.jsonl").read_text().splitlines()
    assert len(lines) >= 2 and (tmp_path / "export" / "public_key.pem").read_text().startswith("-----BEGIN")

    copy = tmp_path / "data"
    shutil.copytree(server.data_dir, copy)
    with closing(sqlite3.connect(copy / "pictor.db")) as db:
        entry, = db.execute("SELECT entry FROM audit_entries WHERE idx = 1").fetchone()
        db.execute("UPDATE audit_entries SET entry = ? WHERE idx = 1", (entry.replace('"seed":', '"seed":1'),))
        db.commit()
    done = run_cli("audit", "verify", "--data-dir", str(copy))
    assert done.returncode == 1
    assert "changed" in done.stdout and "entry 1" in done.stdout, done.stdout


def test_replay_remakes_the_same_pixels_and_erasure_stops_it(server, http):
    image_id, made = generate(server, seed=61)
    index = http.get(f"/v1/images/{image_id}/provenance").json()["audit_index"]
    done = run_cli("replay", str(index), "--data-dir", str(server.data_dir))
    assert done.returncode == 0 and "reproduced" in done.stdout, done.stdout + done.stderr
    # The model's CPU threads are part of what made the pixels (engine/placement): recorded, and named when they
    # differ; the server and replay both take half the cores by default.
    assert server.audit_entry(image_id)["cpu_threads"] == cpu_threads(0)
    other = max(cpu_threads(0) + 1, 2)
    done = run_cli("replay", str(index), "--data-dir", str(server.data_dir),
                   env={"PICTOR_TORCH_THREADS": str(other)})
    if done.returncode == 1:  # most kernels sum in another order with more threads; a few do not
        assert f"made with {cpu_threads(0)} CPU threads, replayed with {other}" in done.stdout, done.stdout
    else:
        assert "reproduced" in done.stdout, done.stdout + done.stderr

    mask = png_bytes(alpha_mask(64, 64, (0, 0, 32, 32)))
    masked_id, _ = edit(server, made, "a blue square", mask=mask)
    masked_index = http.get(f"/v1/images/{masked_id}/provenance").json()["audit_index"]
    done = run_cli("replay", str(masked_index), "--data-dir", str(server.data_dir))
    assert done.returncode == 0 and "reproduced" in done.stdout, done.stdout + done.stderr

    assert http.delete(f"/v1/images/{image_id}/prompt").json()["prompt_erased"] is True
    done = run_cli("replay", str(index), "--data-dir", str(server.data_dir))
    assert done.returncode == 1 and "erased" in done.stdout
    http.get("/v1/audit/checkpoint")
    assert run_cli("audit", "verify", "--data-dir", str(server.data_dir)).returncode == 0


def test_pictor_verify_cli(server, tmp_path):
    image_id, data = generate(server, seed=71)
    path = tmp_path / "out.png"
    path.write_bytes(data)
    done = run_cli("verify", str(path), "--data-dir", str(server.data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "C2PA: Trusted" in done.stdout and image_id in done.stdout
    plain = tmp_path / "plain.png"
    Image.new("RGB", (32, 32), "white").save(plain)
    done = run_cli("verify", str(plain), "--data-dir", str(server.data_dir))
    assert done.returncode == 1 and "no manifest" in done.stdout


def test_a_crash_between_reservation_and_record_leaves_a_verifiable_log(tmp_path):
    """kill -9 while a request holds an audit reservation (reserved, signed, not yet recorded): the restarted
    server closes it as a void entry, and the log verifies with every later entry under a checkpoint."""
    from pictor.storage import Database

    # Reservations younger than the timeout may be a live process's (several processes share one log): a short one
    # here, so that the restarted server knows this one for abandoned.
    env = {"PICTOR_AUDIT_RESERVATION_TIMEOUT_S": "1"}
    running = start_server(tmp_path, env)
    generate(running, seed=90)
    database = Database(f"sqlite:///{running.data_dir / 'pictor.db'}")
    (reserved,) = database.reserve_audit(1)  # what ImageService does right before signing
    database.close()
    running.process.kill()
    running.process.wait(timeout=10)
    time.sleep(1.5)

    restarted = start_server(tmp_path, env)
    restarted.demo_key = running.demo_key  # printed on the first start only
    try:
        generate(restarted, seed=91)
        with httpx.Client(base_url=restarted.url, headers={"authorization": f"Bearer {restarted.demo_key}"}) as http:
            size, _ = checkpoint_root(http.get("/v1/audit/checkpoint").json())
        assert size == reserved + 2
    finally:
        restarted.stop()
    with closing(sqlite3.connect(restarted.data_dir / "pictor.db")) as db:
        status, entry = db.execute("SELECT status, entry FROM audit_entries WHERE idx = ?", (reserved,)).fetchone()
    assert status == "void" and '"event":"void"' in entry
    done = run_cli("audit", "verify", "--data-dir", str(restarted.data_dir))
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_operator_chain_and_key_sign_instead_of_the_made_ca(tmp_path):
    from pictor.governance.credentials import load_or_create

    own = tmp_path / "operator-pki"
    load_or_create(own, organisation="Operator Inc")  # stands in for the operator's own CA and leaf
    (tmp_path / "server").mkdir()
    running = start_server(tmp_path / "server", {"PICTOR_SIGNING_CHAIN": str(own / "signing.pem"),
                                                 "PICTOR_SIGNING_KEY": str(own / "signing.key"),
                                                 "PICTOR_SIGNING_ANCHORS": str(own / "root-ca.pem")})
    try:
        served = httpx.get(f"{running.url}/v1/provenance/trust_anchors", timeout=10).content
        _, data = generate(running, seed=3)
    finally:
        running.stop()
    assert served == (own / "root-ca.pem").read_bytes()
    assert c2pa_state(data, "image/png", served) == "Trusted"
    assert not (running.data_dir / "provenance").exists()  # no CA of Pictor's own was made


# ---- the invisible watermark ------------------------------------------------------------------------------------


def recompressed(data: bytes, scale: float = 0.5, quality: int = 50) -> bytes:
    """What a screenshot-and-repost does: metadata gone, smaller, JPEG-compressed."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def test_a_stripped_recompressed_copy_is_traced_by_its_watermark(server, http, tmp_path):
    result = server.client().images.generate(prompt=PROMPT, size="1024x1024", quality="low",
                                             extra_body={"seed": 81})
    image_id = result.data[0].model_extra["id"]
    copy = recompressed(base64.b64decode(result.data[0].b64_json))
    report = verify_upload(http, copy)
    assert report["c2pa"]["validation_state"] is None  # the manifest did not survive
    assert report["watermark"]["detected"] and report["watermark"]["artifact_id"] == image_id
    assert report["watermark"]["confidence"] > 0.5
    assert report["image"]["id"] == image_id and report["image"]["match"] == "watermark"
    assert report["lineage"]["id"] == image_id

    other = verify_upload(http, copy, key=server.key_for("provenance-other"))
    assert other["watermark"]["detected"] and other["watermark"]["artifact_id"] is None and other["image"] is None

    path = tmp_path / "copy.jpg"
    path.write_bytes(copy)
    done = run_cli("verify", str(path), "--data-dir", str(server.data_dir))
    assert done.returncode == 0 and "watermark: detected" in done.stdout and image_id in done.stdout, done.stdout

    entry = http.get(f"/v1/images/{image_id}/provenance").json()["c2pa"]
    assert "c2pa.watermarked" in [a["action"] for a in entry["actions"]]


def test_unmarked_images_show_no_watermark(http):
    photo = Image.effect_mandelbrot((768, 768), (-2.0, -1.2, 0.8, 1.2), 60).convert("RGB")
    out = io.BytesIO()
    photo.save(out, format="PNG")
    report = verify_upload(http, out.getvalue())
    assert report["watermark"]["detected"] is False and report["image"] is None


def test_images_too_small_for_a_watermark_say_so_in_the_audit_log(server, http):
    small, _ = generate(server, seed=82)  # 64x64: under the mark's minimum side
    big = server.client().images.generate(prompt=PROMPT, size="256x256", quality="low", extra_body={"seed": 83})
    entries = {}
    with closing(sqlite3.connect(server.data_dir / "pictor.db")) as db:
        for (text,) in db.execute("SELECT entry FROM audit_entries WHERE status = 'final'"):
            entry = json.loads(text)
            entries[entry.get("artifact_id")] = entry
    assert entries[small]["watermark"] is None
    marked = entries[big.data[0].model_extra["id"]]["watermark"]
    assert marked["payload"] == big.data[0].model_extra["id"][4:16]


def test_a_masked_edit_keeps_outside_pixels_exact_under_the_watermark(server):
    source = Image.effect_mandelbrot((256, 256), (-2.0, -1.2, 0.8, 1.2), 40).convert("RGB")
    mask = alpha_mask(256, 256, (64, 64, 192, 192))
    result = server.client().images.edit(image=("in.png", png_bytes(source), "image/png"),
                                         mask=("mask.png", png_bytes(mask), "image/png"),
                                         prompt="a red circle", quality="low", extra_body={"seed": 84})
    out = np.asarray(decode(result.data[0].b64_json).convert("RGB"))
    outside = np.asarray(mask)[..., 3] > 0
    assert np.array_equal(out[outside], np.asarray(source)[outside])
