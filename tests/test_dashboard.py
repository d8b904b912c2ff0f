"""The dashboard in a real headless browser (Debian's chromium driven by Playwright): it loads without
console errors, shows the live chunkservers, uploads a file that the REST API gives back byte for
byte, shows its chunks, and shows a killed chunkserver as dead. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, MiB, Http

CHROMIUM = os.environ.get("HERCULES_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts" / "dashboard"
# The detector calls a server dead after DEAD_AFTER seconds without heartbeats; the page refreshes
# every second; what is left covers the browser.
DEAD_WITHIN_MS = (float(FAST["HERCULES_DEAD_AFTER"]) + 1 + 5) * 1000



@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # a failure, not a skip: the dashboard would go untested
        pytest.fail(f"no chromium at {CHROMIUM}: `make chromium` installs it (apt-get, as root), "
                    "or point HERCULES_CHROMIUM at one")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def watched_page(browser: Browser) -> tuple[Page, list[str]]:
    """A new page and the list its console errors and uncaught exceptions are collected in."""
    p = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    return p, errors


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    p, errors = watched_page(browser)
    yield p
    p.close()
    assert errors == [], f"console errors: {errors}"


def shot(page: Page, name: str) -> None:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_root_redirects_to_the_cluster_page_with_three_live_chunkservers(cluster: LocalCluster, page: Page) -> None:
    cluster.wait_live(3)
    page.goto(cluster.gateway_url + "/")
    assert page.url.endswith("/ui")
    expect(page.locator("tr.server[data-state=alive]")).to_have_count(3)
    expect(page.locator("#total-alive b")).to_have_text("3 / 3")
    expect(page.locator("#total-missing b")).to_have_text("0")
    shot(page, "cluster")


def test_upload_through_the_page_downloads_byte_for_byte(cluster: LocalCluster, page: Page, gw: Http,
                                                          tmp_path: Path) -> None:
    data = os.urandom(2 * MiB + 12345)  # three chunks of FAST's 1 MiB
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    page.goto(cluster.gateway_url + "/ui#/files/")
    page.set_input_files("#upload-input", str(local))
    page.click("#upload-button")
    expect(page.locator("tr.entry[data-path='/upload.bin']")).to_be_visible()
    assert page.eval_on_selector("#upload-progress", "p => [p.value, p.max]") == [len(data), len(data)]
    shot(page, "files")
    status, _, body = gw.request("GET", "/api/v1/files/upload.bin")
    assert status == 200 and body == data

    page.click("tr.entry[data-path='/upload.bin'] a")
    expect(page.locator("#file-size")).to_have_text(f"{len(data)} bytes")
    expect(page.locator("tr.chunk")).to_have_count(3)
    for row in page.locator("tr.chunk").all():
        assert len(row.locator("td").nth(3).inner_text().split(", ")) == 3  # three replicas each
    shot(page, "file")


def test_rename_snapshot_and_delete_from_the_browser(cluster: LocalCluster, page: Page, gw: Http) -> None:
    assert gw.request("PUT", "/api/v1/files/b/one.txt", b"one")[0] == 201
    page.goto(cluster.gateway_url + "/ui#/files/b")
    answers = iter(["/b/two.txt", "/b/copy.txt"])
    page.on("dialog", lambda d: d.accept(next(answers, "")) if d.type == "prompt" else d.accept())
    page.click("tr.entry[data-path='/b/one.txt'] button:text('rename')")
    expect(page.locator("tr.entry[data-path='/b/two.txt']")).to_be_visible()
    page.click("tr.entry[data-path='/b/two.txt'] button:text('snapshot')")
    expect(page.locator("tr.entry[data-path='/b/copy.txt']")).to_be_visible()
    page.click("tr.entry[data-path='/b/two.txt'] button.delete")
    expect(page.locator("tr.entry[data-path='/b/two.txt']")).to_have_count(0)
    assert gw.request("GET", "/api/v1/files/b/copy.txt")[2] == b"one"


def test_api_docs_page_renders_every_operation(cluster: LocalCluster, page: Page, gw: Http) -> None:
    _, doc = gw.json("GET", "/api/v1/openapi.json")
    operations = sum(len([m for m in item if m != "parameters"]) for item in doc["paths"].values())
    page.goto(cluster.gateway_url + "/api/v1/docs")
    expect(page.locator("details")).to_have_count(operations)
    shot(page, "api-docs")


def test_a_gateway_with_tokens_asks_for_one_and_uploads_with_it(browser: Browser, tmp_path: Path) -> None:
    token = "dashboard-test-token"
    creds = tmp_path / "credentials.toml"
    creds.write_text(f'[[principal]]\nname = "ops"\ntoken = "{token}"\naccess = "admin"\n')
    with LocalCluster(tmp_path / "secured", settings={**FAST, "HERCULES_AUTH_FILE": str(creds)}) as secured:
        secured.wait_live(3)
        page, errors = watched_page(browser)
        page.goto(secured.gateway_url + "/ui")
        page.fill("#token-input", token)
        page.click("#token-button")
        expect(page.locator("tr.server[data-state=alive]")).to_have_count(3)
        local = tmp_path / "secret.bin"
        local.write_bytes(os.urandom(100_000))
        page.goto(secured.gateway_url + "/ui#/files/")
        page.set_input_files("#upload-input", str(local))
        page.click("#upload-button")
        expect(page.locator("tr.entry[data-path='/secret.bin']")).to_be_visible()
        with page.expect_download() as download:
            page.click("tr.entry[data-path='/secret.bin'] a.download")
        assert Path(download.value.path()).read_bytes() == local.read_bytes()
        page.close()
    # the one request the page made before it had a token, and nothing else
    assert errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]


def test_killed_chunkserver_shows_as_dead(cluster: LocalCluster, page: Page) -> None:
    page.goto(cluster.gateway_url + "/ui#/cluster")
    expect(page.locator("tr.server[data-state=alive]")).to_have_count(3)
    cluster.kill("chunk2")
    expect(page.locator("tr.server[data-state=dead]")).to_have_count(1, timeout=DEAD_WITHIN_MS)
    expect(page.locator("#total-alive b")).to_have_text("2 / 3")
    shot(page, "chunkserver-dead")
