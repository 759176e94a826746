"""What people see, in headless Chromium: the mail, the confirmation page, the success page, an error page.

Runs against the dev host demo, with its usual shutdown a few minutes after start (so the links stay
valid throughout; the sweep itself is test_devhost's walkthrough). The demo takes this machine's zone
from TZ, and here TZ is a zone where that shutdown falls in the evening: the mail then says "tonight",
as it does in real use, whatever the time of day the tests run. Screenshots go to $SCREENSHOT_DIR
(`make screenshots` sets docs/screenshots) or to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import DevHost, chromium_missing

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or ""),
]

WINDOWS = {"desktop": (1280, 900), "phone": (390, 844)}
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


def fits_the_window(driver) -> bool:
    """No sideways scrolling, and the viewport really is as wide as the emulated window."""
    inner, scroll = driver.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    return inner == WINDOWS[driver.window_name][0] and scroll <= inner


def test_mail_link_confirm_and_keep(browser, devhost, screenshots):
    from selenium.webdriver.common.by import By

    mail_file, _ = devhost.newest_mail("ml-team@contoso.com")  # the demo mailed at start
    browser.get(mail_file.as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text == "4 compute instances will be stopped tonight"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Not stopped: 1 instance opted out with the auto-shutdown tag." in body and "ci-frank" not in body
    assert fits_the_window(browser)
    shoot(browser, screenshots, "mail")
    resize(browser, WINDOWS[browser.window_name][1])

    instance = {"phone": "ci-alice", "desktop": "ci-bob"}[browser.window_name]  # one demo, two people
    browser.find_element(By.LINK_TEXT, f"Keep {instance} running tonight").click()
    assert (
        heading_after_navigation(browser, f"Keep {instance} running tonight?")
        == f"Keep {instance} running tonight?"
    )
    facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "ws-demo (resource group rg-demo)" in facts and instance in facts
    buttons = browser.find_elements(By.CSS_SELECTOR, "form.choices button[name=delay]")
    choices = {button.get_attribute("value"): button for button in buttons}
    assert list(choices) == ["60", "120", "night"] and all(b.is_displayed() for b in buttons)
    later, latest = (re.fullmatch(r"Stop it at (\d\d:\d\d) instead", choices[v].text) for v in ("60", "120"))
    assert later and latest and choices["night"].text == f"Keep {instance} running tonight"
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

    link = devhost.link("ml-team@contoso.com", "ci-alice")
    browser.get(link[:-6] + ("AAAAAA" if not link.endswith("AAAAAA") else "BBBBBB"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "This link is not valid"
    assert "damaged or was not issued" in browser.find_element(By.CLASS_NAME, "lead").text
    assert browser.find_elements(By.TAG_NAME, "form") == []
    assert fits_the_window(browser)
    shoot(browser, screenshots, "error")
