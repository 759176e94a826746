"""What people see, in headless Chromium: the mail, the confirmation page, the success page, an error page.

Runs against the dev host demo, with its usual shutdowns a few minutes after start (so the links stay
valid throughout; the sweeps themselves are test_devhost's walkthrough). The morning-after report comes
from a second demo whose shutdowns are within two minutes of start: it keeps ci-alice in ws-demo, runs
the sweep once both shutdowns have passed, and the report it mails is opened from its outbox. The demo serves two workspaces
in two zones, and its mail groups the instances by workspace. It takes this machine's zone from TZ, and
here TZ is a zone where ws-demo's shutdown falls in the evening: its group then says "tonight", as it
does in real use, whatever the time of day the tests run (the other workspace's says what its own
clock says). Screenshots go to $SCREENSHOT_DIR (`make screenshots` sets docs/screenshots) or to the
test's temporary directory.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.rendering import relative_day
from tests.e2e.conftest import DevHost, PrintedWorkspace, chromium_missing

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or ""),
]

WINDOWS = {"desktop": (1280, 900), "phone": (390, 844)}
TEAM = "ml-team@contoso.com"
FINOPS = "finops@contoso.com"  # the demo's report_emails
REPORT_LEAD = 25  # seconds: the report demo's first shutdown; the report follows the second, a minute later
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
    "--hide-scrollbars", "--lang=en-US",
)  # fmt: skip


# Well-known zones with a lettered abbreviation (CET, not +04: the screenshots show it), no more than
# four hours apart all year, so one of them always has the shutdown within two hours of 20:00.
ZONES = (
    "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver", "America/Chicago",
    "America/New_York", "America/Halifax", "Europe/London", "Europe/Berlin", "Europe/Athens",
    "Europe/Moscow", "Asia/Karachi", "Asia/Kolkata", "Asia/Jakarta", "Asia/Hong_Kong", "Asia/Tokyo",
    "Australia/Sydney", "Pacific/Auckland",
)  # fmt: skip


def evening_zone(now: datetime) -> str:
    """The zone in which the demo's shutdown (a few minutes from `now`) is nearest to 20:00."""
    soon = now + timedelta(minutes=4)

    def distance(zone: str) -> float:
        local = soon.astimezone(ZoneInfo(zone))
        return abs(local.hour * 60 + local.minute - 20 * 60)

    return min(ZONES, key=distance)


@pytest.fixture(scope="module")
def devhost(tmp_path_factory):
    host = DevHost(tmp_path_factory.mktemp("outbox"), env={"TZ": evening_zone(datetime.now(UTC))})
    try:
        yield host
    finally:
        host.stop()


class ReportDemo:
    """A second demo, shutting down within two minutes of start, that mails the morning-after report.
    Started before the module's first test, so that its shutdowns pass while the other tests run."""

    def __init__(self, outbox: Path, zone: str):
        self.host = DevHost(outbox, shutdown_in=REPORT_LEAD, env={"TZ": zone})
        self.workspaces = self.host.workspaces
        self._report: Path | None = None
        # Keep ci-alice of ws-demo all night from the team's mail, as a person would (before the shutdown).
        link = self.host.link(TEAM, "ci-alice", self.workspaces[0].name)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert self.host.request("POST", link, b"", form)[0] == 200

    def report(self) -> Path:
        """The report's .html in the outbox: the sweep call at each shutdown time (as the printed steps
        say; one that has passed is swept at once), and the second one mails it."""
        if self._report is None:
            for workspace in self.workspaces:
                time.sleep(max(0.0, (workspace.shutdown_at - datetime.now(UTC)).total_seconds()) + 0.5)
                assert self.host.run_timer("ComputeShutdown") == 202
            line = self.host.wait_for_line(f"SendGrid stand-in accepted a mail to {FINOPS}: ")
            self._report = self.host.outbox / line.rsplit(": ", 1)[1]
        return self._report


@pytest.fixture(scope="module", autouse=True)
def report_demo(tmp_path_factory):
    demo = ReportDemo(tmp_path_factory.mktemp("report-outbox"), evening_zone(datetime.now(UTC)))
    try:
        yield demo
    finally:
        demo.host.stop()


@pytest.fixture(scope="module", params=list(WINDOWS))
def browser(request, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else "chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    driver.window_name = request.param  # for screenshot names
    resize(driver, WINDOWS[request.param][1])
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    target = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    target.mkdir(parents=True, exist_ok=True)
    return target


def resize(driver, height: int) -> None:
    """Emulate the window's viewport exactly (a headless window cannot be narrower than 500 px)."""
    width = WINDOWS[driver.window_name][0]
    metrics = {
        "width": width,
        "height": height,
        "deviceScaleFactor": 1,
        "mobile": driver.window_name == "phone",
    }
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def shoot(driver, screenshots: Path, page: str) -> None:
    from selenium.webdriver.common.by import By

    # As tall as the content, so the whole mail or page is in the picture and little else.
    content = driver.execute_script(
        "return Math.ceil(document.querySelector('body > *:last-child').getBoundingClientRect().bottom)"
    )
    resize(driver, content + 32)
    assert driver.find_element(By.TAG_NAME, "body").screenshot(
        str(screenshots / f"{page}-{driver.window_name}.png")
    )


def heading_after_navigation(driver, expected: str) -> str:
    """The page's h1 once the navigation a click started has finished (the old page can linger)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def heading(d):
        try:
            text = d.find_element(By.TAG_NAME, "h1").text
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return text if text == expected else False

    try:
        return WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,)).until(heading)
    except Exception:
        return driver.find_element(By.TAG_NAME, "h1").text  # let the caller's assert show what is there


def local_time(workspace: PrintedWorkspace, after: timedelta) -> str:
    """HH:MM on the workspace's own clock, `after` its shutdown."""
    return f"{(workspace.shutdown_at + after).astimezone(workspace.zone):%H:%M}"


def fits_the_window(driver) -> bool:
    """No sideways scrolling, and the viewport really is as wide as the emulated window."""
    inner, scroll = driver.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    return inner == WINDOWS[driver.window_name][0] and scroll <= inner


def mail_sent_at(mail_file: Path) -> datetime:
    """When the SendGrid stand-in accepted a mail: its outbox name starts with that instant, in UTC."""
    return datetime.strptime(mail_file.name.split("-", 1)[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def keep_link(driver, workspace: str, instance: str):
    """The keep button of `instance` in the mail's group of `workspace` (both groups have a ci-alice)."""
    from selenium.webdriver.common.by import By

    group = f"//h2[normalize-space()='{workspace}']/ancestor::tr[1]"
    button = (
        f"following-sibling::tr//a[starts-with(normalize-space(), 'Keep {instance} in {workspace} running')]"
    )
    return driver.find_element(By.XPATH, f"({group}/{button})[1]")


def test_mail_link_confirm_and_keep(browser, devhost, screenshots):
    from selenium.webdriver.common.by import By

    home, away = devhost.workspaces
    mail_file, _ = devhost.newest_mail("ml-team@contoso.com")  # the demo mailed at start
    browser.get(mail_file.as_uri())
    whens = {w.name: relative_day(w.shutdown_at, mail_sent_at(mail_file), w.zone) for w in (home, away)}
    assert whens[home.name] == "tonight"  # TZ puts ws-demo's shutdown in the evening
    together = f" {whens[home.name]}" if len(set(whens.values())) == 1 else ""  # one day for both, or none
    assert browser.find_element(By.TAG_NAME, "h1").text == f"7 compute instances will be stopped{together}"
    groups = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert groups == [home.name, away.name]  # grouped by workspace, in the order of aml_workspaces
    body = browser.find_element(By.TAG_NAME, "body").text
    for workspace in (home, away):
        local = workspace.shutdown_at.astimezone(workspace.zone)
        assert f"Resource group {workspace.resource_group} · stops at {local:%A} {local.day}" in body
        assert f"{local:%H:%M} {local.tzname()}" in body  # each group at its own local time
        assert (
            keep_link(browser, workspace.name, "ci-alice").text
            == f"Keep ci-alice in {workspace.name} running {whens[workspace.name]}"  # the name repeats
        )
    assert "Not stopped in ws-demo: 1 instance opted out with the auto-shutdown tag." in body
    assert "ci-frank" not in body
    assert fits_the_window(browser)
    shoot(browser, screenshots, "mail")
    resize(browser, WINDOWS[browser.window_name][1])

    # One demo, two people: on the phone ci-alice of ws-demo, on the desktop ci-bob of the other
    # workspace, whose page tells the times on its own clock.
    workspace, instance = {"phone": (home, "ci-alice"), "desktop": (away, "ci-bob")}[browser.window_name]
    keep_link(browser, workspace.name, instance).click()
    assert (
        heading_after_navigation(browser, f"Keep {instance} running tonight?")
        == f"Keep {instance} running tonight?"
    )
    facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert f"{workspace.name} (resource group {workspace.resource_group})" in facts and instance in facts
    buttons = browser.find_elements(By.CSS_SELECTOR, "form.choices button[name=delay]")
    choices = {button.get_attribute("value"): button for button in buttons}
    assert list(choices) == ["60", "120", "night"] and all(b.is_displayed() for b in buttons)
    later, latest = (re.fullmatch(r"Stop it at (\d\d:\d\d) instead", choices[v].text) for v in ("60", "120"))
    assert later and latest and choices["night"].text == f"Keep {instance} running tonight"
    assert later.group(1) == local_time(workspace, timedelta(hours=1))
    assert latest.group(1) == local_time(workspace, timedelta(hours=2))
    assert fits_the_window(browser)
    shoot(browser, screenshots, "confirm")
    resize(browser, WINDOWS[browser.window_name][1])

    choices["60"].click()  # one more hour
    expected = f"{instance} now stops at {later.group(1)}"
    assert heading_after_navigation(browser, expected) == expected
    assert f"will be stopped at {later.group(1)}" in browser.find_element(By.CLASS_NAME, "lead").text
    more = browser.find_elements(By.CSS_SELECTOR, "form.choices button[name=delay]")
    assert [b.get_attribute("value") for b in more] == ["120", "night"]  # only what is longer
    assert fits_the_window(browser)
    shoot(browser, screenshots, "later")
    resize(browser, WINDOWS[browser.window_name][1])

    more[-1].click()  # changed my mind: all night
    expected = f"{instance} keeps running tonight"
    assert heading_after_navigation(browser, expected) == expected
    assert "will not be stopped" in browser.find_element(By.CLASS_NAME, "lead").text
    assert fits_the_window(browser)
    shoot(browser, screenshots, "kept")
    resize(browser, WINDOWS[browser.window_name][1])


def test_a_tampered_link_shows_the_error_page(browser, devhost, screenshots):
    from selenium.webdriver.common.by import By

    link = devhost.link("ml-team@contoso.com", "ci-alice", "ws-demo")
    browser.get(link[:-6] + ("AAAAAA" if not link.endswith("AAAAAA") else "BBBBBB"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "This link is not valid"
    assert "damaged or was not issued" in browser.find_element(By.CLASS_NAME, "lead").text
    assert browser.find_elements(By.TAG_NAME, "form") == []
    assert fits_the_window(browser)
    shoot(browser, screenshots, "error")


@pytest.mark.timeout(300)  # the first call waits for the report demo's second shutdown: up to 150 s
def test_the_morning_after_report_reads_well(browser, report_demo, screenshots):
    """The report from the outbox, as a mail program would show it: at phone width nothing scrolls
    sideways, its tables fit, and its figures are on screen, each on one line."""
    from selenium.webdriver.common.by import By

    home, away = report_demo.workspaces
    day = home.shutdown_at.astimezone(home.zone).date()
    browser.get(report_demo.report().as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Night of {day:%A} {day.day} {day:%B %Y}"
    assert [h.text for h in browser.find_elements(By.TAG_NAME, "h2")] == [home.name, away.name]
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Needs attention" not in body
    tonight = re.search(r"Tonight \(5 stops\)\n(\d+\.\d\d) USD", body)
    assert tonight and f"{day:%B} so far: {tonight.group(1)} USD" in body, body  # the month began tonight
    assert "kept all night by ml-team@contoso.com" in body

    # No sideways scrolling; every table, cell and text inside the window, none cut off.
    assert fits_the_window(browser)
    outside = browser.execute_script(
        """return [...document.querySelectorAll('table, td, p, h1, h2, strong, span')].filter(e =>
             e.getBoundingClientRect().right > innerWidth + 0.5 || e.getBoundingClientRect().left < 0
             || (e.tagName != 'STRONG' && e.tagName != 'SPAN' && e.scrollWidth > e.clientWidth + 1)
           ).map(e => e.tagName + ': ' + e.textContent.trim().slice(0, 40))"""
    )
    assert outside == [], outside
    # The key figures (tonight's and the month's totals, each stop's saving) on screen, at a size one
    # can read; each saving on one line.
    amount = "[self::p or self::strong or self::td][contains(., ' USD')]"
    figures = [  # the innermost elements that show an amount
        e for e in browser.find_elements(By.XPATH, f"//*{amount}") if not e.find_elements(By.XPATH, f".//*{amount}")
    ]  # fmt: skip
    savings = [e for e in figures if e.tag_name == "td"]
    assert len(savings) == 5 and all(re.fullmatch(r"\d+\.\d\d USD", e.text) for e in savings)
    assert {e.text for e in figures} >= {f"{tonight.group(1)} USD"}
    for element in figures:
        font, lines = browser.execute_script(
            "const e = arguments[0], text = document.createRange();"
            "text.selectNodeContents(e);"  # the lines its text takes: the distinct tops of its boxes
            "const tops = new Set([...text.getClientRects()].map(r => Math.round(r.top)));"
            "return [parseFloat(getComputedStyle(e).fontSize), tops.size]",
            element,
        )
        assert element.is_displayed() and font >= 12, (element.text, font)
        if element in savings:
            assert lines == 1, (element.text, lines)
    shoot(browser, screenshots, "report")
    resize(browser, WINDOWS[browser.window_name][1])


@pytest.mark.timeout(300)  # as above, should it run first
def test_the_report_breaks_no_instance_name_or_vm_size(browser, report_demo):
    """Each instance name and VM size on one line, at phone width too: a table cell that may break
    anywhere is squeezed to a few letters at 390 px (ci-bo|b, STAND|ARD_D|S3_V2) beside a long one."""
    browser.get(report_demo.report().as_uri())
    broken = browser.execute_script(
        """return [...document.querySelectorAll('td strong, td span')]
             .filter(e => /^(ci-|STANDARD_)/.test(e.textContent) && e.getClientRects().length > 1)
             .map(e => e.textContent)"""
    )
    assert broken == []
