"""`pictor batch run`: a JSONL of requests through the Batch API from the command line, against a running server
and against one it starts itself, with the output, error and image files, and resuming after an interruption."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from PIL import Image

from .helpers import pictor_command, run_cli

GENERATIONS = "/v1/images/generations"


def write_requests(path: Path, count: int, refused: bool = False) -> Path:
    lines = [{"custom_id": f"img-{i}", "method": "POST", "url": GENERATIONS,
              "body": {"prompt": f"{i % 3 + 1} red circles on a blue background", "size": "64x64", "seed": i}}
             for i in range(count)]
    if refused:
        lines.append({"custom_id": "refused", "method": "POST", "url": GENERATIONS,
                      "body": {"prompt": "explicit porn scene in a hotel room", "size": "64x64"}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def rows(path: Path) -> dict[str, dict]:
    return {row["custom_id"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_batch_run_against_a_server_writes_outputs_errors_and_images_and_resumes(server, client, http, tmp_path):
    requests = write_requests(tmp_path / "requests.jsonl", 4, refused=True)
    before = len(client.batches.list(limit=100).data)
    args = ["batch", "run", str(requests), "--server", server.url, "--images", str(tmp_path / "images"),
            "--no-progress"]
    done = run_cli(*args, env={"PICTOR_API_KEY": server.demo_key})
    assert done.returncode == 0, done.stderr
    assert "completed: 4 of 5 succeeded, 1 failed" in done.stdout

    output = rows(tmp_path / "requests.output.jsonl")
    assert sorted(output) == [f"img-{i}" for i in range(4)]
    errors = rows(tmp_path / "requests.output.errors.jsonl")
    assert list(errors) == ["refused"] and errors["refused"]["response"]["status_code"] == 400
    images = sorted((tmp_path / "images").iterdir())
    assert [p.name for p in images] == [f"img-{i}_0.png" for i in range(4)]
    for path in images:  # the files are the images the server stored, byte for byte
        custom_id = path.name.removesuffix("_0.png")
        image_id = output[custom_id]["response"]["body"]["data"][0]["id"]
        stored = http.get(f"/v1/images/{image_id}/content").content
        assert stored == path.read_bytes()
        assert Image.open(io.BytesIO(stored)).size == (64, 64)
    assert len(client.batches.list(limit=100).data) == before + 1

    again = run_cli(*args, "--api-key", server.demo_key)  # the same file again: the same batch, nothing new made
    assert again.returncode == 0, again.stderr
    assert "(resumed)" in again.stdout and again.stdout.split()[0] == done.stdout.split()[0]
    assert len(client.batches.list(limit=100).data) == before + 1


def test_batch_run_without_a_server_starts_one_and_resumes_after_being_killed(tmp_path):
    data = tmp_path / "data"
    requests = write_requests(tmp_path / "requests.jsonl", 30)
    state = tmp_path / "requests.output.jsonl.batch.json"
    env = {name: value for name, value in os.environ.items() if not name.startswith("PICTOR_")}
    command = [*pictor_command(), "batch", "run", str(requests), "--data-dir", str(data), "--no-progress"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             start_new_session=True)
    deadline = time.monotonic() + 180
    while not state.exists():  # the batch is created: kill the command (and the server inside it) mid-batch
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    time.sleep(1.0)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    assert not (tmp_path / "requests.output.jsonl").exists()

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    assert "(resumed)" in second.stdout and "30 of 30 succeeded" in second.stdout
    assert json.loads(state.read_text())["batch_id"] == second.stdout.split()[0]
    output = rows(tmp_path / "requests.output.jsonl")
    assert sorted(output) == sorted(f"img-{i}" for i in range(30))
    verify = run_cli("audit", "verify", "--data-dir", str(data))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_batch_run_reports_a_file_the_server_refuses(server, tmp_path):
    requests = tmp_path / "bad.jsonl"
    requests.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": {}}\nnot json\n')
    done = run_cli("batch", "run", str(requests), "--server", server.url, "--api-key", server.demo_key,
                   "--no-progress")
    assert done.returncode == 1
    assert "Line 2 of the input file is not valid JSON" in done.stderr
