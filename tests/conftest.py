"""Suite-wide: collect every test's captured logs and output, and every link token minted, so that the
last test of the run can prove that no secret and no token ever reached a log (tests/test_secrets.py)."""

from __future__ import annotations

import pytest

from shared.links import LinkSigner

CAPTURED: list[str] = []  # captured log, stdout and stderr of every test phase
TOKENS: set[str] = set()  # every cancel-link token signed in this process (plus the dev host's, see e2e)


@pytest.fixture(scope="session", autouse=True)
def _record_tokens():
    original = LinkSigner.sign

    def sign(self, grant):
        token = original(self, grant)
        TOKENS.add(token)
        return token

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LinkSigner, "sign", sign)
        yield


def pytest_runtest_logreport(report):
    CAPTURED.extend(text for text in (report.caplog, report.capstdout, report.capstderr) if text)


def pytest_collection_modifyitems(config, items):
    # The secrets scan reads what all other tests logged, so it runs last.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
