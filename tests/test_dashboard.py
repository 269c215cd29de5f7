"""The admin dashboard in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, through selenium) against a real gateway on the bundled example
plus a broken route and a broken file."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import yaml

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, http_route

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "etc", "example")
TOKEN = "dash-b0ard-t0ken"
#: A file whose error message carries markup: the page must show it as text.
HOSTILE = "hostile<img src=x onerror=document.title='xss'>"

if not (CHROMIUM and CHROMEDRIVER):
    reason = "needs Debian's chromium and chromium-driver (apt-get install them)"
    if os.environ.get("TWISTGW_REQUIRE_BROWSER"):
        pytest.fail(reason, pytrace=False)  # CI installs them: missing is a failure there
    pytest.skip(reason, allow_module_level=True)

from selenium import webdriver  # noqa: E402 - after the skip: no browser, no driver
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _example(backends) -> list[dict]:
    """etc/example's manifests, the Gateway on the test's address pool (no static
    address) and the Services on the test's echo backends."""
    ports = {"web-v1": backends.start("web-v1")[1], "web-v2": backends.start("web-v2")[1]}
    documents = []
    for path in sorted(glob.glob(os.path.join(EXAMPLE, "*.yaml"))):
        with open(path) as handle:
            documents += [doc for doc in yaml.safe_load_all(handle) if doc]
    for doc in documents:
        if doc["kind"] == "Gateway":
            doc["spec"].pop("addresses", None)
        elif doc["kind"] == "EndpointSlice":
            doc["ports"][0]["port"] = ports[doc["metadata"]["name"]]
    return documents


def _configure(process: GatewayProcess, backends) -> GatewayProcess:
    process.write("example.yaml", _example(backends))
    rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/broken"}}],
        "backendRefs": [backend("missing", port=80)],
    }
    broken = http_route("broken", [rule], [{"name": "demo"}], namespace="demo")
    process.write("broken.yaml", [broken])
    process.write(
        "hostile.yaml",
        [{**broken, "metadata": {"name": HOSTILE, "namespace": "demo"}}],
    )
    wait_until(lambda: process.admin("/readyz")[0] == 200, what="the example served")
    return process


@pytest.fixture(scope="module")
def dashboard(backends) -> Iterator[GatewayProcess]:
    process = GatewayProcess().start()
    yield _configure(process, backends)
    process.stop()


@pytest.fixture(scope="module")
def guarded(backends, tmp_path_factory) -> Iterator[GatewayProcess]:
    token_file = tmp_path_factory.mktemp("admin") / "token"
    token_file.write_text(TOKEN + "\n")
    process = GatewayProcess(extra_args=("--admin-token-file", str(token_file))).start()
    yield _configure(process, backends)
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="twistgw-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _errors(driver: webdriver.Chrome) -> list[dict]:
    """The console's errors since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


#: A route's row as seen now (the page redraws every refresh: one script, no stale nodes).
_ROW = """
for (const row of document.querySelectorAll("tr.route")) {
  if (row.dataset.route === arguments[0]) {
    const cell = (name) => row.querySelector("." + name)?.textContent;
    return {classes: [...row.classList], text: row.textContent,
            total: cell("total"), rate: cell("rate")};
  }
}
return null;
"""


def _row(driver: webdriver.Chrome, route: str) -> dict | None:
    return driver.execute_script(_ROW, route)


def _wait(driver: webdriver.Chrome, check, what: str):
    return WebDriverWait(driver, 20, 0.1).until(lambda _: check(), message=what)


def test_dashboard(dashboard, browser, tmp_path):
    browser.get(f"http://127.0.0.1:{dashboard.admin_port}/")
    _wait(browser, lambda: _row(browser, "demo/web"), "the example's routes")
    text = browser.find_element(By.TAG_NAME, "main").text
    for shown in ("Gateway demo/demo", "Listener http", "demo/web", "demo/moved"):
        assert shown in text

    # a route's requests: counted, then shown within a refresh or two
    def total() -> int:
        return int(float(_row(browser, "demo/web")["total"]))

    before = total()
    for _ in range(5):
        assert dashboard.request("/", host="example.com", port=8080)[0] == 200
    _wait(browser, lambda: total() >= before + 5, "demo/web's request count to rise")
    _wait(browser, lambda: _row(browser, "demo/web")["rate"] not in ("–", "0.0"), "a rate")

    # the broken route: highlighted, with its condition's message
    broken = _row(browser, "demo/broken")
    assert "problem" in broken["classes"]
    assert "BackendNotFound" in broken["text"]

    # the broken file: reported as text, its markup inert
    errors = browser.find_element(By.ID, "errors").text
    assert HOSTILE in errors
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.title == "twistgw dashboard"
    browser.save_screenshot(os.environ.get("TWISTGW_DASHBOARD_SCREENSHOT", tmp_path / "dash.png"))

    # the filter: by route name, then problems only
    search = browser.find_element(By.ID, "search")
    search.send_keys("moved")
    _wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "tr.route")) == 1, "filter")
    assert _row(browser, "demo/moved") is not None
    search.clear()
    browser.find_element(By.ID, "problems-only").click()
    _wait(browser, lambda: _row(browser, "demo/web") is None, "problems only")
    assert _row(browser, "demo/broken") is not None

    assert _errors(browser) == []


def test_dashboard_asks_for_the_token(guarded, browser):
    _errors(browser)
    browser.get(f"http://127.0.0.1:{guarded.admin_port}/")
    form = browser.find_element(By.ID, "token-form")
    _wait(browser, form.is_displayed, "the token form")
    assert _row(browser, "demo/web") is None
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    form.submit()
    _wait(browser, lambda: _row(browser, "demo/web"), "the routes, with the token")
    assert not form.is_displayed()
    # the only error: the first dashboard.json, refused for want of the token
    errors = _errors(browser)
    assert len(errors) == 1, errors
    assert "dashboard.json" in errors[0]["message"] and "401" in errors[0]["message"]
