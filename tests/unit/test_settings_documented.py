"""Every App Setting the app reads is in local.settings.json.example and in the README's table."""

import json
import re
from pathlib import Path

from shared.settings import Settings
from tests.fakes import VALID_ENVIRON

ROOT = Path(__file__).parents[2]
RETIRED = {"mail_schedule", "shutdown_schedule"}  # read only to refuse them
PLATFORM = {"FUNCTIONS_WORKER_RUNTIME", "TZ", "IDENTITY_ENDPOINT"}  # set by the platform, not the example


class Recording(dict):
    def __init__(self, values):
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def settings_read() -> set[str]:
    environ = Recording(VALID_ENVIRON)
    Settings.from_environ(environ)
    return environ.asked - RETIRED


def test_the_app_reads_the_settings_we_expect():
    assert {"time_zone", "shutdown_time", "opt_out_tag", "AzureWebJobsStorage"} <= settings_read()


def test_every_setting_is_in_the_example_file():
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert settings_read() - PLATFORM - set(example) == set()
    assert set(example) - settings_read() == set()  # and nothing there that the app ignores


def test_every_setting_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = set(re.findall(r"^\| `([A-Za-z_]+)` \|", readme, flags=re.MULTILINE))
    assert settings_read() - table - {"IDENTITY_ENDPOINT"} == set()
