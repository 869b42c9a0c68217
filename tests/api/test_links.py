"""Signed image links: one builder (LinkSigner.links) for every answer that carries one, and the check the content
endpoint makes of them."""

from __future__ import annotations

from urllib.parse import parse_qsl

from pictor.api.security import LinkSigner


def query_of(link: str) -> dict[str, str]:
    return dict(parse_qsl(link.partition("?")[2]))


def test_a_link_is_signed_for_its_tenant_and_image():
    signer = LinkSigner(b"secret", 60)
    link = signer.links("tenant-a", "http://127.0.0.1:8000/")("img_1")
    assert link.startswith("http://127.0.0.1:8000/v1/images/img_1/content?")
    query = query_of(link)
    assert signer.signed_tenant("img_1", query) == "tenant-a"
    assert signer.signed_tenant("img_2", query) is None  # another image
    assert signer.signed_tenant("img_1", {**query, "tenant": "tenant-b"}) is None  # another tenant
    assert signer.signed_tenant("img_1", {**query, "expires": "later"}) is None
    assert signer.signed_tenant("img_1", {**query, "expires": "0"}) is None  # expired
    assert LinkSigner(b"other", 60).signed_tenant("img_1", query) is None  # another installation's secret


def test_the_public_url_is_the_base_of_every_link():
    signer = LinkSigner(b"secret", 60, public_url="https://images.example.com/")
    link = signer.links("tenant-a", "http://127.0.0.1:8000/")("img_1")
    assert link.startswith("https://images.example.com/v1/images/img_1/content?")
    assert signer.signed_tenant("img_1", query_of(link)) == "tenant-a"
