"""Keys and tenants through the real `pictor` command line, against a running server's data folder."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from .helpers import run_cli, start_server

PROMPT = "a red circle"


def test_keys_create_list_revoke(server):
    data_dir = str(server.data_dir)
    created = run_cli("keys", "create", "--tenant", "acme", "--label", "ci", "--data-dir", data_dir)
    assert created.returncode == 0, created.stderr
    lines = created.stdout.split()
    assert len(lines) == 1 and re.fullmatch(r"pk-[A-Za-z0-9_-]{40,}", lines[0]), created.stdout
    key = lines[0]

    acme = server.client(key)
    made = acme.images.generate(prompt=PROMPT, size="64x64", quality="low")
    image_id = made.data[0].model_extra["id"]
    # The image belongs to acme: the demo tenant cannot read it, acme can.
    assert httpx.get(f"{server.api}/images/{image_id}/content", headers={"authorization": f"Bearer {key}"},
                     timeout=30).status_code == 200
    with pytest.raises(openai.NotFoundError):
        server.client().get(f"/images/{image_id}/content", cast_to=object)

    listed = run_cli("keys", "list", "--tenant", "acme", "--data-dir", data_dir)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout, "a listing must never show a key"
    assert f"pk-...{key[-4:]}" in listed.stdout and "active" in listed.stdout and "ci" in listed.stdout
    key_id = next(line.split()[0] for line in listed.stdout.splitlines() if line.split()[1] == f"pk-...{key[-4:]}")

    # A second key for the same tenant, made through PICTOR_DATA_DIR instead of the flag.
    second = run_cli("keys", "create", "--tenant", "acme", env={"PICTOR_DATA_DIR": data_dir})
    assert second.returncode == 0, second.stderr
    second_key = second.stdout.strip()
    assert second_key != key

    revoked = run_cli("keys", "revoke", key_id, "--data-dir", data_dir)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(openai.AuthenticationError) as info:
        acme.images.generate(prompt=PROMPT, size="64x64", quality="low")
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        acme.models.list()
    assert "revoked" in run_cli("keys", "list", "--tenant", "acme", "--data-dir", data_dir).stdout
    # The tenant's other key and its images are untouched.
    assert httpx.get(f"{server.api}/images/{image_id}/content", headers={"authorization": f"Bearer {second_key}"},
                     timeout=30).status_code == 200


def test_keys_cli_errors_are_clear(server):
    data_dir = str(server.data_dir)
    missing = run_cli("keys", "revoke", "key_0000000000000000", "--data-dir", data_dir)
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr and "key_0000000000000000" in missing.stderr
    unknown = run_cli("keys", "list", "--tenant", "nobody-here", "--data-dir", data_dir)
    assert unknown.returncode != 0
    assert "Traceback" not in unknown.stderr and "nobody-here" in unknown.stderr


def test_models_command():
    done = run_cli("models")
    assert done.returncode == 0, done.stderr
    assert "pictor-embedded" in done.stdout


def test_demo_key_is_shown_on_first_start_only_and_keyless_mode(tmp_path):
    first = start_server(tmp_path)
    try:
        assert first.demo_key.startswith("pk-")
        assert first.client().images.generate(prompt=PROMPT, size="64x64", quality="low").data
        assert httpx.post(f"{first.api}/images/generations", json={"prompt": PROMPT}, timeout=30).status_code == 401
    finally:
        first.stop()
    (tmp_path / "serve.log").rename(tmp_path / "first.log")
    # Second start on the same data folder, as a local keyless demo: no new key is printed.
    second = start_server(tmp_path, extra_args=("--keyless",))
    try:
        assert second.demo_key == "" and "pk-" not in second.log()
        response = httpx.post(f"{second.api}/images/generations", timeout=60,
                              json={"prompt": PROMPT, "size": "64x64", "quality": "low"})
        assert response.status_code == 200, response.text
        assert second.client(first.demo_key).models.list().data  # the first key still works
        with pytest.raises(openai.AuthenticationError):  # a wrong key is still wrong
            second.client("pk-wrong").models.list()
    finally:
        second.stop()
