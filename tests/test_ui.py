"""The Dagster UI, in a real browser: `seeknal ui` on the bundled example, driven by headless
Chromium. Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
EXAMPLE_ASSETS = {
    "transactions",
    "user_profiles",
    "device_fingerprints",
    "ip_geolocation",
    "merchant_data",
    "card_data",
    "fraud_labels",
    "realtime_alerts",
    "txn_enriched",
    "merchant_risk",
    "card_velocity",
    "alert_features",
    "txn_features",
    "user_risk",
    "training_data",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    project: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`seeknal ui` serving the bundled example after one `seeknal run`, same instance for both."""
    base = tmp_path_factory.mktemp("ui")
    project = base / "fraud_detection"
    shutil.copytree(
        REPO / "examples" / "fraud_detection",
        project,
        ignore=shutil.ignore_patterns("data", "output", "target"),
    )
    env = {k: v for k, v in os.environ.items() if k != "SEEKNAL_PROJECT_DIR"}
    env.update({"DAGSTER_HOME": str(base / "dagster_home"), "CI": "true"})
    (base / "dagster_home").mkdir()
    subprocess.run(
        [sys.executable, "generate_data.py", "--transactions", "500"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    seeknal = [sys.executable, "-m", "seeknal_dagster.cli", "--project", str(project)]
    ran = subprocess.run([*seeknal, "run"], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    port = free_port()
    log = open(base / "ui.log", "wb")
    process = subprocess.Popen(
        [*seeknal, "ui", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    server = Server(f"http://127.0.0.1:{port}", process, project)
    try:
        wait_for_assets(server, timeout=120)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def wait_for_assets(server: Server, timeout: float) -> None:
    """Waits until the webserver answers and its code location has loaded the example."""
    deadline = time.monotonic() + timeout
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    while time.monotonic() < deadline:
        assert server.process.poll() is None, "seeknal ui exited early"
        try:
            request = urllib.request.Request(
                f"{server.url}/graphql", query, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                nodes = json.load(response)["data"]["assetNodes"]
            if len(nodes) == len(EXAMPLE_ASSETS):
                return
        except (OSError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"the UI did not serve the example's assets within {timeout}s")


@pytest.fixture
def browser(tmp_path: Path):  # noqa: ANN201 - a selenium WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1920,1400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, url: str) -> None:  # noqa: ANN001
    """Opens a UI page and closes Dagster's first-visit newsletter dialog if it shows."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    wait_until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#root *"))
    time.sleep(1)
    for button in browser.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        button.click()


def wait_until(browser, condition, timeout: float = 60):  # noqa: ANN001, ANN201
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.5).until(lambda _: condition())


def body_text(browser) -> str:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def screenshot(browser, name: str) -> Path:  # noqa: ANN001
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    browser.save_screenshot(str(path))
    return path


def test_asset_graph_shows_every_asset_of_the_example(ui, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def names_on_graph() -> set[str]:
        nodes = browser.find_elements(By.CSS_SELECTOR, "foreignObject [data-tooltip]")
        return {node.get_attribute("data-tooltip") for node in nodes}

    open_page(browser, f"{ui.url}/asset-groups")
    wait_until(browser, lambda: {"sources", "exposures"} <= names_on_graph())
    # The lineage view starts with groups collapsed; Alt+E expands them all (kept on reload,
    # after which the view fits the whole graph).
    ActionChains(browser).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    wait_until(browser, lambda: "training_data" in names_on_graph())
    browser.refresh()

    try:
        shown = wait_until(browser, lambda: EXAMPLE_ASSETS <= names_on_graph() and names_on_graph())
        with contextlib.suppress(TimeoutException):  # only for a tidier screenshot
            wait_until(browser, lambda: "Loading" not in body_text(browser), timeout=20)
    finally:
        path = screenshot(browser, "asset_graph.png")

    assert EXAMPLE_ASSETS <= shown, f"missing {EXAMPLE_ASSETS - names_on_graph()}; see {path}"
    assert path.stat().st_size > 10_000


def test_asset_page_shows_sql_schema_and_run_metadata(ui, browser):
    from selenium.webdriver.common.by import By

    open_page(browser, f"{ui.url}/assets/feature_group/txn_features")
    body = wait_until(
        browser,
        lambda: (
            (text := browser.find_element(By.TAG_NAME, "body").text)
            and "merchant_risk_score" in text
            and "seeknal/sql" in text
            and text
        ),
    )

    assert "Columns" in body
    for column, type_name in (("customer_id", "INTEGER"), ("merchant_risk_score", "FLOAT")):
        assert f"{column}\n{type_name}" in body
    assert "Row count\n500" in body
    assert "fraud-ml-team" in body
    assert "seeknal/preview" in body
    row = browser.find_element(By.XPATH, "//tr[.//*[normalize-space()='seeknal/sql']]")
    row.find_element(By.XPATH, ".//a[contains(., 'Show Markdown')]").click()
    dialog = wait_until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "[role=dialog]"))[0]
    screenshot(browser, "asset_txn_features_sql.png")
    assert "ASOF LEFT JOIN transform.merchant_risk risk" in dialog.text
    assert dialog.text.splitlines()[1] == "SELECT"


def test_ctrl_c_stops_the_ui_and_everything_it_started(ui):
    group = os.getpgid(dagster_dev_pid(ui))

    started = time.monotonic()
    ui.process.send_signal(signal.SIGINT)
    ui.process.wait(timeout=60)
    elapsed = time.monotonic() - started

    assert ui.process.returncode == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    assert elapsed < 45


def dagster_dev_pid(server: Server) -> int:
    """The `dagster dev` process `seeknal ui` started (its only child)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()]
    assert len(pids) == 1, pids
    return pids[0]
