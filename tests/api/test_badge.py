"""The visible badge: off by default, drawn when a tenant's settings ask for it, recorded in the C2PA manifest."""

from __future__ import annotations

import numpy as np

from .helpers import decode, run_cli

PROMPT = "a small green star in the top left on a white background"


def corner(server, key: str, seed: int, size: str = "256x256") -> tuple[np.ndarray, str, str]:
    """The bottom-right corner of a new image, its id, and its answer's Server-Timing."""
    raw = server.client(key).images.with_raw_response.generate(prompt=PROMPT, size=size, quality="low",
                                                                 extra_body={"seed": seed})
    result = raw.parse()
    image = np.asarray(decode(result.data[0].b64_json).convert("RGB")).astype(int)
    return image[-40:, -120:], result.data[0].model_extra["id"], raw.headers["server-timing"]


def test_badge_only_for_the_tenant_that_asks(server):
    asking, other = server.key_for("badge-on"), server.key_for("badge-off")
    plain, _, timing = corner(server, asking, seed=4)
    assert "badge;" not in timing
    done = run_cli("tenants", "badge", "--tenant", "badge-on", "--text", "AI-generated", "--corner", "bottom-right",
                   "--data-dir", str(server.data_dir))
    assert done.returncode == 0, done.stderr
    badged, image_id, timing = corner(server, asking, seed=4)
    assert "badge;dur=" in timing  # drawing it is a step of its own
    unbadged, _, _ = corner(server, other, seed=4)

    # Each image carries its own invisible watermark (a few levels), so "untouched" means no more than that.
    assert np.abs(plain - unbadged).max() <= 12  # the other tenant's images have no badge
    dark = (badged.sum(-1) < 200).mean()
    assert dark > 0.15 and (plain.sum(-1) < 200).mean() < 0.01  # the dark plate is there, and only with the badge
    light_text = (badged.sum(-1) > 600) & (plain.sum(-1) > 600)
    assert light_text.any()  # and white letters on it

    with server.client(asking) as client:
        provenance = client.get(f"/images/{image_id}/provenance", cast_to=object)
    described = [a.get("description", "") for a in provenance["c2pa"]["actions"]]
    assert any("AI-generated" in text for text in described)
    assert provenance["c2pa"]["validation_state"] == "Trusted"

    done = run_cli("tenants", "badge", "--tenant", "badge-on", "--off", "--data-dir", str(server.data_dir))
    assert done.returncode == 0 and "badge" not in done.stdout
    again, _, _ = corner(server, asking, seed=4)
    assert np.abs(again - plain).max() <= 12


def test_badge_settings_are_checked(server):
    server.key_for("badge-bad")
    done = run_cli("tenants", "badge", "--tenant", "badge-bad", "--size", "0.9", "--data-dir", str(server.data_dir))
    assert done.returncode == 2 and "size" in done.stderr
    done = run_cli("tenants", "show", "--tenant", "nobody-here", "--data-dir", str(server.data_dir))
    assert done.returncode == 1
