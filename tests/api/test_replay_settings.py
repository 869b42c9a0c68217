"""Replay remakes an edit with the server settings that shaped it, as its audit entry records them.

A server of its own with a blend band at the mask's edge (mask_blend_px=3) and no automatic edit mask: `pictor
replay` reproduces its edits whatever this machine's own settings say, and an entry that does not record them is
named as the reason when the pixels differ.
"""

from __future__ import annotations

import base64
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest

from .helpers import Server, alpha_mask, png_bytes, run_cli, start_server

PROMPT = "a red circle in the top left on a white background"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("replay"), {"PICTOR_MASK_BLEND_PX": "3",
                                                              "PICTOR_AUTO_EDIT_MASK": "false"})
    yield running
    running.stop()
    assert "Traceback" not in running.log(), running.log()


def made(server: Server) -> bytes:
    result = server.client().images.generate(prompt=PROMPT, size="64x64", quality="low", extra_body={"seed": 5})
    return base64.b64decode(result.data[0].b64_json)


def edited(server: Server, image: bytes, prompt: str, mask: bytes | None = None) -> int:
    """The audit index of an edit made through the HTTP API."""
    extra = {"mask": ("mask.png", mask, "image/png")} if mask else {}
    result = server.client().images.edit(image=("in.png", image, "image/png"), prompt=prompt, size="64x64",
                                         quality="low", extra_body={"seed": 7}, **extra)
    image_id = result.data[0].model_extra["id"]
    provenance = httpx.get(f"{server.url}/v1/images/{image_id}/provenance", timeout=30,
                           headers={"authorization": f"Bearer {server.demo_key}"})
    return provenance.json()["audit_index"]


def replayed(server: Server, index: int, env: dict[str, str] | None = None, data_dir=None):
    return run_cli("replay", str(index), "--data-dir", str(data_dir or server.data_dir), env=env)


def test_a_masked_edit_replays_with_its_recorded_blend_band(server, tmp_path):
    mask = png_bytes(alpha_mask(64, 64, (16, 16, 48, 48)))
    index = edited(server, made(server), "a blue square", mask)
    for env in (None, {"PICTOR_MASK_BLEND_PX": "3"}, {"PICTOR_MASK_BLEND_PX": "0"}):
        done = replayed(server, index, env)
        assert done.returncode == 0 and "reproduced, same pixels hash" in done.stdout, (env, done.stdout + done.stderr)

    # An entry made before the settings were recorded: the pixels differ, and the report says which setting may.
    copy = tmp_path / "data"
    shutil.copytree(server.data_dir, copy)
    with closing(sqlite3.connect(copy / "pictor.db")) as db:
        (entry,) = db.execute("SELECT entry FROM audit_entries WHERE idx = ?", (index,)).fetchone()
        assert '"mask_blend_px":3' in entry
        db.execute("UPDATE audit_entries SET entry = ? WHERE idx = ?", (entry.replace('"mask_blend_px":3,', ''), index))
        db.commit()
    done = replayed(server, index, data_dir=copy)
    assert done.returncode == 1 and "NOT reproduced" in done.stdout, done.stdout + done.stderr
    assert ("its entry does not record mask_blend_px (made before it was recorded): replayed with mask_blend_px=0; "
            "set PICTOR_MASK_BLEND_PX to the server's setting of then") in done.stdout, done.stdout
    done = replayed(server, index, {"PICTOR_MASK_BLEND_PX": "3"}, data_dir=copy)
    assert done.returncode == 0 and "reproduced" in done.stdout, done.stdout + done.stderr


def test_an_unmasked_edit_replays_without_the_automatic_mask_it_was_made_without(server):
    index = edited(server, made(server), "make the circle green")
    done = replayed(server, index)
    assert done.returncode == 0 and "reproduced, same pixels hash" in done.stdout, done.stdout + done.stderr
