"""The API contract: schemathesis fuzzes a live server from its own OpenAPI document, bounded in time.

It fails on any server error, any status the document does not declare for the operation, any response that
breaks its declared schema (success and error shape alike), content types and headers that differ from the
document, and invalid input that is accepted. Only `positive_data_acceptance` is left out: the document cannot
express every cross-field rule (output_compression only with jpeg or webp, a data URL's payload), so a request
the schema allows may still be a 400, which is the documented answer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Server, start_server

SEED = "20261206"
MAX_EXAMPLES = "20"


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("contract"), {"PICTOR_RATE_LIMIT_PER_MINUTE": "0"})
    yield running
    running.stop()


def schemathesis_command() -> list[str]:
    script = Path(sys.executable).parent / "schemathesis"
    return [str(script)] if script.exists() else [shutil.which("schemathesis") or "schemathesis"]


def test_the_server_keeps_its_openapi_contract(fuzzed_server, tmp_path):
    report = subprocess.run(
        [*schemathesis_command(), "run", f"{fuzzed_server.url}/openapi.json",
         "--header", f"Authorization: Bearer {fuzzed_server.demo_key}",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", MAX_EXAMPLES, "--seed", SEED, "--workers", "1", "--request-timeout", "60",
         "--no-color"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False)
    assert report.returncode == 0, report.stdout[-8000:] + report.stderr[-2000:]
    assert "Traceback" not in fuzzed_server.log()
