"""The auditor's console in a real browser: Debian's Chromium, headless,
driven over WebDriver (selenium + chromedriver), against the real binary's
`console` over a dataset the real layer and collector wrote
(examples/answer_dataset.rs). Each view loads and shows the right verdict
and owner for known event ids, the export link gives `activity --format
csv`, the keyboard reaches every control, the page breaks no rule of its
Content-Security-Policy, every question shows in the "Who looked" view
under the viewer's name (its access dataset verifies), and a screenshot of
each view is saved under target/console-screenshots/ for review. With
UPDATE_README_SCREENSHOTS=1 it also writes the README's two screenshots
(docs/console-find.png and docs/console-timeline.png)."""

import os
import pathlib
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

import answer_data

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("AUDIT_COLLECTOR_BIN", ROOT / "target" / "debug" / "audit-collector"))
SHOTS = ROOT / "target" / "console-screenshots"
README_SHOTS = {"find-agent.png": "console-find.png", "timeline.png": "console-timeline.png"}
TOKEN = "browser-test-token-0123456789"


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no Chromium: test.sh installs Debian's chromium and chromium-driver")


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    parent = tmp_path_factory.mktemp("console")
    info = answer_data.write(parent / "audit-data", parent / "witness")
    subprocess.run(["cargo", "build", "-q", "--bin", "audit-collector"], cwd=ROOT, check=True)
    tokens = parent / "viewers"
    tokens.write_text(f"auditor-ann:{TOKEN}\n")
    proc = subprocess.Popen(
        [str(BIN), "console", "--data-dir", info["data_dir"], "--listen", "127.0.0.1:0",
         "--tokens-file", str(tokens), "--access-dir", str(parent / "access"),
         "--witness", str(parent / "witness")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn"},
    )
    line = proc.stdout.readline()
    base = next(w for w in line.split() if w.startswith("http://"))
    info["base"] = base
    info["access"] = str(parent / "access")
    yield info
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(console):
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1400"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    driver.implicitly_wait(5)
    # Sign in the way a person does: the 401 page's form.
    driver.get(console["base"] + "/find")
    assert "Sign in" in driver.title
    token = driver.find_element(By.ID, "token")
    navigate(driver, lambda: token.send_keys(TOKEN + Keys.ENTER))
    assert driver.current_url.endswith("/find")
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver, name):
    """Saves a screenshot for review, and the README's when asked to."""
    driver.save_screenshot(str(SHOTS / name))
    if os.environ.get("UPDATE_README_SCREENSHOTS") == "1" and name in README_SHOTS:
        shutil.copyfile(SHOTS / name, ROOT / "docs" / README_SHOTS[name])


def navigate(driver, action):
    """Runs `action` (a click or an Enter that leaves the page) and waits
    until the next page has replaced this one. Without the wait a lookup can
    still find the old page's element (a "HUMAN" verdict before "Prove
    human" has answered) or find it gone mid-read (a stale element)."""
    old = driver.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def verdict(driver):
    return driver.find_element(By.ID, "verdict").text


def dd(driver, label):
    """The value beside a label of the facts list."""
    return driver.find_element(By.XPATH, f"//dt[normalize-space()='{label}']/following-sibling::dd[1]").text


def no_policy_violations(driver):
    logs = [e["message"] for e in driver.get_log("browser")]
    bad = [m for m in logs if "Content Security Policy" in m or "Refused to" in m]
    assert not bad, bad


def find(driver, base, event_id):
    driver.get(base + "/find")
    box = driver.find_element(By.ID, "event_id")
    box.clear()
    navigate(driver, lambda: box.send_keys(event_id + Keys.ENTER))


def test_find_shows_human_or_ai_and_the_owner(console, browser):
    find(browser, console["base"], console["human_ok"])
    assert verdict(browser) == "HUMAN"
    assert dd(browser, "Accountable human") == "usr_alice"
    assert "PASS" in dd(browser, "Verified")
    shot(browser, "find-human.png")
    button = browser.find_element(By.XPATH, "//button[normalize-space()='Prove human']")
    navigate(browser, button.click)
    assert verdict(browser).startswith("PROVEN")
    shot(browser, "prove-human.png")

    find(browser, console["base"], console["ledger"][1])
    assert verdict(browser) == "AI"
    assert dd(browser, "Agent") == "agt_ledger (ledger-bot)"
    assert dd(browser, "Credential") == "key_A"
    assert dd(browser, "Accountable human") == "usr_alice"
    assert dd(browser, "Consent") == "cns_1"
    assert dd(browser, "Consent verified").startswith("NOT VERIFIED")
    assert dd(browser, "Delegation chain") == "— (single hop)"
    assert dd(browser, "Chain").startswith("INTACT")
    assert dd(browser, "Signed checkpoint").startswith("covers this row's seal entry. SIGNED by")
    assert browser.find_elements(By.XPATH, "//button[normalize-space()='Prove human']") == []
    shot(browser, "find-agent.png")

    find(browser, console["base"], console["other_agent"])
    assert verdict(browser) == "AI"
    assert dd(browser, "Accountable human") == "usr_bob"

    # "Who touched acct_9?": the search form on the same view.
    browser.get(console["base"] + "/find")
    browser.find_element(By.ID, "target").send_keys("acct_9")
    browser.find_element(By.ID, "from").send_keys(console["from"])
    browser.find_element(By.ID, "to").send_keys(console["to"])
    button = browser.find_element(By.XPATH, "//button[normalize-space()='Search']")
    navigate(browser, button.click)
    ids = [r.find_elements(By.TAG_NAME, "td")[-1].text
           for r in browser.find_elements(By.CSS_SELECTOR, "table.rows tbody tr")]
    assert ids == [console["ledger"][1]], ids

    find(browser, console["base"], "not-an-id")
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "is not an event id" in alert
    no_policy_violations(browser)


def test_timeline_lists_the_agent_and_exports_what_activity_prints(console, browser):
    browser.get(console["base"] + "/timeline")
    browser.find_element(By.ID, "agent").send_keys("agt_ledger")
    browser.find_element(By.ID, "from").send_keys(console["from"])
    browser.find_element(By.ID, "to").send_keys(console["to"])
    button = browser.find_element(By.XPATH, "//button[normalize-space()='Show']")
    navigate(browser, button.click)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.rows tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[-1].text for r in rows] == console["ledger"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg rect.agent")) >= 1

    # The CSV link, fetched with the browser's own sign-in cookie.
    href = browser.find_element(By.LINK_TEXT, "CSV").get_attribute("href")
    cookie = browser.get_cookie("audit_console")
    req = urllib.request.Request(href, headers={"Cookie": f"audit_console={cookie['value']}"})
    exported = urllib.request.urlopen(req).read().decode()
    cli = subprocess.run(
        [str(BIN), "activity", "--data-dir", console["data_dir"], "--agent", "agt_ledger",
         "--from", console["from"], "--to", console["to"], "--format", "csv"],
        check=True, capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"},
    ).stdout
    assert exported == cli

    # An owner's timeline: her own action and her agent's, told apart.
    q = urllib.parse.urlencode({"owner": "usr_alice", "from": console["from"], "to": console["to"]})
    browser.get(console["base"] + "/timeline?" + q)
    kinds = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table.rows tbody td:nth-child(2)")]
    assert sorted(set(kinds)) == ["agent", "human"], kinds
    assert browser.find_elements(By.CSS_SELECTOR, "svg rect.human")
    shot(browser, "timeline.png")

    # A row's event id opens the find view.
    link = browser.find_element(By.LINK_TEXT, console["ledger"][0])
    navigate(browser, link.click)
    assert verdict(browser) == "AI"
    no_policy_violations(browser)


def test_violations_and_trail_health(console, browser):
    q = urllib.parse.urlencode({"from": console["from"], "to": console["to"]})
    browser.get(console["base"] + "/violations?" + q)
    assert "1 violation(s) at 1 callsite(s)" in browser.page_source
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table.rows tbody td")]
    assert "billing" in cells and "refunds.issue" in cells
    shot(browser, "violations.png")
    # verify runs in the background: the page says so until it is done.
    deadline = time.monotonic() + 60
    while True:
        browser.get(console["base"] + "/health")
        if verdict(browser) != "VERIFYING" and "under way" not in browser.page_source:
            break
        assert time.monotonic() < deadline, "verify still running"
        time.sleep(0.2)
    assert verdict(browser) == "INTACT"
    assert "Coverage gaps (0)" in browser.page_source
    shot(browser, "health.png")
    no_policy_violations(browser)


def focusables(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href], button, input:not([type=hidden])'))"
        ".filter(e => e.offsetParent !== null || e.classList.contains('skip'));")


def test_who_looked_lists_this_browsers_questions(console, browser):
    """Each question above is an access row naming the viewer; the rows are
    sealed every few seconds, so the view is polled until they are in."""
    deadline = time.monotonic() + 30
    while True:
        browser.get(console["base"] + "/access?viewer=auditor-ann")
        rows = browser.find_elements(By.CSS_SELECTOR, "table.rows tbody tr")
        questions = {r.find_elements(By.TAG_NAME, "td")[2].text for r in rows}
        if {"console.find", "console.prove", "console.timeline", "console.timeline.csv",
                "console.violations", "console.health"} <= questions:
            break
        assert time.monotonic() < deadline, f"access rows seen: {questions}"
        time.sleep(1)
    viewers = {r.find_elements(By.TAG_NAME, "td")[1].text for r in rows}
    assert viewers == {"auditor-ann"}
    abouts = [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows]
    assert f"event_id={console['human_ok']}" in abouts
    shot(browser, "who-looked.png")
    verified = subprocess.run([str(BIN), "verify", "--data-dir", console["access"]],
                              capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    assert verified.returncode == 0 and verified.stdout.startswith("intact"), verified.stdout
    no_policy_violations(browser)


@pytest.mark.parametrize("path", ["/find?event_id=HUMAN", "/timeline?agent=agt_ledger", "/violations", "/health",
                                  "/access"])
def test_the_keyboard_reaches_every_control(console, browser, path):
    path = path.replace("HUMAN", console["human_ok"])
    browser.get(console["base"] + path)
    wanted = focusables(browser)
    assert len(wanted) >= 5, path
    body = browser.find_element(By.TAG_NAME, "body")
    body.click()
    reached = []
    for _ in range(len(wanted) + 10):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        el = browser.switch_to.active_element
        if el in reached:
            break
        reached.append(el)
    missing = [e.get_attribute("outerHTML")[:80] for e in wanted if e not in reached]
    assert not missing, f"{path}: not reachable with Tab: {missing}"
