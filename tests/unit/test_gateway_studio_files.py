"""The studio's static files: served at /studio with the content types a browser needs
to run ES modules, public with auth on (the page asks for the key) while the API stays
closed, outside the rate limits, and shipped with the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import STUDIO_DIR, create_app
from services.gateway.http.apikeys import is_public_path
from services.gateway.settings import GatewaySettings

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
}
STUDIO_FILES = sorted(p for p in STUDIO_DIR.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def client() -> TestClient:
    # No lifespan: static files and the key check need no Redis.
    return TestClient(create_app(GatewaySettings(auth_required=True)))


def test_the_studio_has_its_page_and_modules() -> None:
    names = {p.relative_to(STUDIO_DIR).as_posix() for p in STUDIO_FILES}
    assert {"index.html", "api.js", "studio.css"} <= names
    assert {p.suffix for p in STUDIO_FILES} <= set(CONTENT_TYPES)


@pytest.mark.parametrize("path", STUDIO_FILES, ids=lambda p: p.name)
def test_every_file_is_served_without_a_key_with_its_content_type(
    client: TestClient, path: Path
) -> None:
    url = "/studio/" + path.relative_to(STUDIO_DIR).as_posix()
    response = client.get(url)
    assert response.status_code == 200, response.text
    media_type = response.headers["content-type"].split(";")[0]
    expected = CONTENT_TYPES[path.suffix]
    # Browsers run a module only with a JavaScript type; both names are standard.
    allowed = {expected, "application/javascript"} if path.suffix == ".js" else {expected}
    assert media_type in allowed, (url, media_type)
    assert response.content == path.read_bytes()


def test_the_page_is_at_studio_and_the_api_still_needs_a_key(client: TestClient) -> None:
    redirect = client.get("/studio", follow_redirects=False)
    assert redirect.status_code in (307, 308)
    assert redirect.headers["location"].endswith("/studio/")
    page = client.get("/studio/")
    assert page.status_code == 200 and '<script type="module"' in page.text
    assert client.get("/studio/missing.js").status_code == 404
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/studioz").status_code == 401  # a prefix of the name opens nothing


def test_only_the_studio_prefix_is_public() -> None:
    assert is_public_path("/studio") and is_public_path("/studio/api.js")
    assert not is_public_path("/studio-x") and not is_public_path("/v1/studio/")


def test_the_package_ships_the_studio_files() -> None:
    pyproject = tomllib.loads(Path("pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    assert {"*" + suffix for suffix in CONTENT_TYPES} <= set(patterns)
