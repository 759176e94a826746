"""One deployment as the timers and people drive it: `bootstrap()` over the fakes, with a clock the test
moves. Used by the regression tests of the promises and by the stateful property test.

Every mail sent is kept with the tokens of its links, so a test (or Hypothesis) can click *any* link
of *any* earlier mail at any moment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from shared import app
from shared.cancellation import CancelRequest, CancelResult
from shared.domain import ClientInfo, Instance, OutgoingMail
from shared.links import CancelGrant
from shared.settings import Settings
from tests.fakes import FakeLedger, FakeMailer, FakeWorkspace, environ

PRICE = 0.5  # USD per hour, for every size and region


class FlatPrices:
    def hourly_price(self, region, size, currency):
        return PRICE


@dataclass(frozen=True)
class Link:
    token: str
    grant: CancelGrant
    mail: OutgoingMail
    sent_at: datetime


class World:
    def __init__(self, *instances: Instance, now: datetime, **settings: str | None):
        self.settings = Settings.from_environ(environ(**settings))
        self.compute = FakeWorkspace(*instances)
        self.compute.stopped_at = []  # (name, when) of each stop that happened
        stop = self.compute.stop

        def stop_and_remember(name: str):
            outcome = stop(name)
            if outcome.value == "stopped":
                self.compute.stopped_at.append((name, self.now))
            return outcome

        self.compute.stop = stop_and_remember
        self.ledger, self.mailer = FakeLedger(), FakeMailer()
        self.now = now
        self.links: list[Link] = []
        self.app = app.bootstrap(
            self.settings, workspace=self.compute, ledger=self.ledger, mailer=self.mailer,
            clock=lambda: self.now, sleep=lambda s: None, monotonic=lambda: 0.0, prices=FlatPrices(),
        )  # fmt: skip

    def at(self, now: datetime) -> World:
        self.now = now
        return self

    def mail(self):
        return self._run(self.app.mail_sender)

    def sweep(self):
        return self._run(self.app.compute_shutdown)

    def _run(self, timer):
        """A timer's run; the mails it sent are remembered with their links, whatever it raises."""
        sent = len(self.mailer.sent)
        try:
            return timer()
        finally:
            self._remember(self.mailer.sent[sent:])

    def click(self, link: Link, method: str = "POST", delay: str | None = None) -> CancelResult:
        request = CancelRequest(method, link.token, ClientInfo("203.0.113.9", "promises"), delay)
        return self.app.cancel_shutdown(request)

    def link(self, instance: str, to: str = "ml-team@contoso.com", nth: int = -1) -> Link:
        """The link of `instance` in the `nth` mail `to` got (the latest by default)."""
        found = [k for k in self.links if k.grant.instance == instance and k.mail.to == to]
        return found[nth]

    def _remember(self, mails: list[OutgoingMail]) -> None:
        for mail in mails:
            for token in re.findall(r"token=([^\s&\"<]+)", mail.text):
                token = unquote(token)
                self.links.append(Link(token, self.app.signer.verify(token), mail, self.now))
