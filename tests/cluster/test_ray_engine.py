"""Model replicas on Ray Serve behind two API processes (`pictor engine`, `pictor serve --engine ray`), all on
loopback in a network namespace of their own: the scenario is tests/cluster/ray_scenario.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("ray_scenario.py")
# A network namespace with only loopback (brought up by in_namespace.py, which needs no `ip` command).
IN_NAMESPACE = ["unshare", "-n", sys.executable, str(Path(__file__).with_name("in_namespace.py"))]


@pytest.fixture(scope="module")
def seen(tmp_path_factory) -> dict:
    if shutil.which("unshare") is None:
        pytest.fail("the Ray tests run in a network namespace of their own: install util-linux (`unshare`)")
    root = tmp_path_factory.mktemp("ray")
    out = root / "seen.json"
    command = [*IN_NAMESPACE, sys.executable, str(SCENARIO), str(root), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert out.exists(), f"the scenario failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    seen = json.loads(out.read_text())
    assert "error" not in seen, seen["error"] + "\n" + "\n".join(f"--- {name}\n{text}"
                                                                for name, text in seen["logs"].items())
    return seen


def test_the_api_processes_serve_the_replicas_models(seen):
    assert "pictor-embedded" in seen["models"]


def test_a_seed_makes_the_same_image_through_either_api_process(seen):
    assert seen["same_seed_same_pixels"] and seen["validation"] == "passed"


def test_concurrent_requests_across_both_processes_succeed(seen):
    assert seen["concurrent"] == [200] * 8


def test_previews_stream_through_the_replica_and_an_edit_works(seen):
    assert seen["stream"].count("image_generation.partial_image") >= 1
    assert seen["stream"][-1] == "image_generation.completed"
    assert seen["edit"] == 200


def test_a_client_that_goes_away_cancels_the_replicas_work(seen):
    assert "image_generation.completed" not in seen["cancelled_stream"]
    assert seen["replica_calls_cancelled"] >= 1


def test_jobs_survive_a_killed_api_process_with_the_models_on_ray(tmp_path):
    """tests/api/test_several_processes.py with the API processes' models on one Ray Serve application: three
    processes on PostgreSQL and S3, 200 jobs, one process killed with SIGKILL mid-way."""
    module = Path(__file__).parents[1] / "api" / "test_several_processes.py"
    command = [*IN_NAMESPACE, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
               str(module), "--basetemp", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PICTOR_TEST_ENGINE": "ray"})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert done.stdout.split()[0] == ".", done.stdout[-3000:]  # its one test ran and passed (returncode 5: none ran)
