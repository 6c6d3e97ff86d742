"""End to end in a real browser: Debian's headless chromium (scripts/chromium.sh) driven by selenium signs in,
sees a certificate expiring in 5 days as critical on the fleet page and timeline, and approves in the rejected
inbox the certificate of a real asyncua server the connector refused; the next secure channel succeeds.
Screenshots of every page go to $CERTMGR_TEST_ARTIFACTS/web (else the test's tmp folder); the path is printed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import pki
from certmgr.context import AppContext
from tests.apps.third_party import ThirdPartyServer
from tests.conftest import Certmgr
from tests.helpers import free_port

pytestmark = pytest.mark.uses_db
PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed by scripts/chromium.sh when missing (the test run sets up
    what it needs); a machine where that fails fails the test, it never skips it."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"scripts/chromium.sh could not provide chromium + chromedriver: {done.stderr.strip()[-400:]}")
    browser, driver = done.stdout.split()[-2:]
    return browser, driver


@pytest.fixture
def browser(chromium):
    BROWSER, DRIVER = chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    # the background-networking flags: this machine's closed network refuses Chromium's own connections
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


class WebServer:
    """`certmgr web serve`'s app under a real uvicorn on 127.0.0.1, in a thread."""

    def __init__(self, ctx: AppContext) -> None:
        import uvicorn

        from certmgr.web.app import make_app

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(make_app(ctx), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_browser_sign_in_critical_timeline_and_approve_real_rejected(initialised: Certmgr, tmp_path, key_pool, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shots = Path(os.environ.get("CERTMGR_TEST_ARTIFACTS", tmp_path)) / "web"
    shots.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {shots}")
    connector = tmp_path / "connector"
    initialised("issue", "--app-uri", "urn:plant:connector", "--store", str(connector), "--role", "client")
    initialised("issue", "--app-uri", "urn:plant:soon", "--store", str(tmp_path / "soon"), "--role", "server", "--days", "5")
    password = tmp_path / "pw"
    password.write_text(PASSWORD)
    password.chmod(0o600)
    initialised("web", "user", "add", "otto", "--role", "operator", "--password-file", str(password))
    server_pw = tmp_path / "server-pw"
    server_pw.write_text("s3cret")
    server_pw.chmod(0o600)
    server = ThirdPartyServer(tmp_path / "vendor", key_pool.get(), {"operator": "s3cret"})
    ours = pki.ApplicationStore(connector).own().certificate  # the vendor already trusts the connector
    (tmp_path / "vendor" / "trusted" / "certs" / "connector.der").write_bytes(ours.public_bytes(serialization.Encoding.DER))
    diagnose = ["diagnose", None, "--app-uri", "urn:plant:connector", "--user", "operator", "--password-file", str(server_pw), "--json"]
    ctx = AppContext(initialised.home, db_url=initialised.db_url)

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{name}.png"))

    def steps():
        diagnose[1] = server.url
        first = initialised(*diagnose, code=1).json()
        assert first["connection"]["refused_by"] == "client", first  # the connector put the server into rejected/
        with WebServer(ctx) as base:
            browser.get(base + "/fleet")
            assert "/login" in browser.current_url
            shot("1-login")
            # keyboard only, as the form's labels name the fields: type, Tab to the next field, Enter submits
            assert browser.find_element(By.CSS_SELECTOR, "label[for=username]").text
            assert browser.find_element(By.CSS_SELECTOR, "label[for=password]").text
            browser.find_element(By.ID, "username").send_keys("otto", Keys.TAB)
            assert browser.switch_to.active_element.get_attribute("id") == "password"
            browser.switch_to.active_element.send_keys(PASSWORD, Keys.ENTER)
            assert browser.current_url.endswith("/fleet")
            shot("2-fleet")
            row = browser.find_element(By.XPATH, "//tr[td/a[text()='urn:plant:soon']]")
            assert row.get_attribute("class") == "level-critical"
            assert row.value_of_css_property("font-weight") in ("700", "bold")
            tick = browser.find_element(By.CSS_SELECTOR, "svg.timeline rect.level-critical")
            assert "urn:plant:soon" in tick.find_element(By.TAG_NAME, "title").get_attribute("textContent")
            browser.find_element(By.LINK_TEXT, "Rejected inbox").click()
            shot("3-rejected")
            thumb = pki.thumbprint(server.certificate)
            assert thumb in browser.page_source
            browser.find_element(By.PARTIAL_LINK_TEXT, "Review and trust").click()
            shot("4-confirm")
            assert browser.find_element(By.ID, "thumbprint").text == thumb
            browser.find_element(By.ID, "approve").click()
            shot("5-approved")
            assert f"{thumb} is now trusted" in browser.page_source
            browser.find_element(By.LINK_TEXT, "Fleet").click()
            browser.find_element(By.LINK_TEXT, "urn:plant:connector").click()  # the application's page
            assert browser.find_element(By.ID, "history").is_displayed()
            assert "CERTMGR_CA_PASSPHRASE" in browser.find_element(By.ID, "renew-unavailable").text  # no passphrase given
            shot("6-application")
            browser.find_element(By.LINK_TEXT, "CRLs").click()
            assert browser.find_element(By.CSS_SELECTOR, "#authorities td.number").text == "1"
            shot("7-crls")
            browser.set_window_size(420, 800)  # a narrow window: wide tables scroll in their box, the page does not
            for page in ("/fleet", "/rejected", "/crls", "/audit", "/app?uri=urn:plant:connector"):
                browser.get(base + page)
                overflow = browser.execute_script(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert overflow <= 1, (page, overflow)
            browser.get(base + "/fleet")
            shot("8-fleet-narrow")
        return initialised(*diagnose).json()

    async def scenario():
        await server.start()
        try:
            return await asyncio.to_thread(steps)
        finally:
            await server.stop()

    try:
        second = asyncio.run(scenario())
    finally:
        ctx.close()
    assert second["ok"], second
    assert pki.ApplicationStore(connector).rejected() == []
    assert initialised.sql("SELECT actor FROM audit_events WHERE action = 'store.trust'") == [("otto (web)",)]
    assert sorted(p.name for p in shots.iterdir()) == ["1-login.png", "2-fleet.png", "3-rejected.png", "4-confirm.png", "5-approved.png",
                                                      "6-application.png", "7-crls.png", "8-fleet-narrow.png"]
