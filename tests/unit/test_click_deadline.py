"""A person pressed the button: the page comes back within the click deadline whatever Table Storage
does. Issue: an endpoint that accepts connections and never answers held the page for 46 s."""

import importlib
import socket
import time

from shared.cancellation import CLICK_DEADLINE
from tests.unit.test_functions import MailSender, TimerRequest, World, link_of, request

CancelShutDown = importlib.import_module("CancelShutDown")
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def test_a_click_gets_an_honest_page_in_time_when_table_storage_never_answers(monkeypatch):
    world = World(monkeypatch)
    MailSender.main(TimerRequest())
    link = link_of(world, "ci-alice")
    World(monkeypatch, real_ledger=True, real_sleep=True)  # the click meets the real Table client
    with socket.socket() as silent:  # listens, so connects succeed; never accepts, so reads hang
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        monkeypatch.setenv(
            "AzureWebJobsStorage",
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
        )
        started = time.monotonic()
        response = CancelShutDown.main(request("POST", link))
        elapsed = time.monotonic() - started
    body = response.get_body().decode()
    assert elapsed < CLICK_DEADLINE + 1.0 <= 5.0
    assert response.status_code == 503 and "not confirmed" in body and "keeps running" not in body
    assert '<form method="post">' in body  # pressing again is one tap, and safe
