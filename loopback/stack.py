"""Everything the real SDKs need to talk to the loopback stand-ins, in one object.

:class:`StandIns` starts the TLS server (the AzureML, SendGrid, ACS Email and Retail Prices stand-ins
behind one port), the CONNECT proxy in front of it and the managed-identity endpoint, and tells you
the environment that routes the SDKs there (:attr:`StandIns.env`; :attr:`StandIns.identity_env` for the identity endpoint,
which only a test of the managed identity sets). It is plain Python, usable from pytest fixtures, a
demo script or a benchmark::

    with StandIns() as s:
        s.azureml.seed("ci-alice")
        s.prices.seed_price("westeurope", "STANDARD_DS3_V2", 0.293)
        os.environ.update(s.env)          # or pass env=... to a subprocess
        ...                               # run code that uses azureml-core / sendgrid / azure-identity
        print(s.traffic.dump())

Knobs that make the loopback cloud behave like the real one in benchmarks: :attr:`StandIns.latency`
(every remote call), :attr:`StandIns.connection_cost` (every new TLS connection) and
:meth:`StandIns.enforce_write_bucket` (ARM's write throttling). :attr:`StandIns.connections` counts
the TLS connections clients opened.

azureml-core's own retries need no setting here: the app's adapter switches them off itself
(``shared.settings.prepare_sdk_environment``, before azureml is first imported). Code that imports
azureml-core directly, as the wire-behaviour tests do, talks to the SDK as it ships.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from .acs import AcsStandIn
from .azureml import AzureMLStandIn, WriteBuckets
from .identity import ManagedIdentityStandIn
from .prices import RetailPricesStandIn
from .proxy import ConnectProxy
from .sendgrid import SendGridStandIn
from .server import StandInServer
from .tls import LoopbackCA
from .traffic import Record, Traffic

#: The variables :attr:`StandIns.env` sets. A child process that must not inherit a *running* stack's
#: routing (the dev host, a benchmark run) starts from :func:`environ_without_routing`.
ROUTING_ENV = ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
#: The variables :attr:`StandIns.identity_env` sets (as App Service does); children are cleaned of them too.
IDENTITY_ENV = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")


def environ_without_routing(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name not in ROUTING_ENV + IDENTITY_ENV}


class StandIns:
    """TLS server + CONNECT proxy + the stand-ins. ``start()``/``stop()`` or use as a context manager.

    Keyword arguments are passed to the stand-ins: ``azureml={...}`` to :class:`AzureMLStandIn`,
    ``sendgrid={...}`` to :class:`SendGridStandIn` (e.g. ``sendgrid={"outbox_dir": "outbox"}``),
    ``identity={...}`` to :class:`ManagedIdentityStandIn` (its tenant is the AzureML stand-in's),
    ``prices={...}`` to :class:`RetailPricesStandIn` (``prices.azure.com``, e.g. ``{"page_size": 2}``).
    ``connection_cost``: see the property.
    """

    def __init__(
        self,
        azureml: dict[str, Any] | None = None,
        sendgrid: dict[str, Any] | None = None,
        identity: dict[str, Any] | None = None,
        connection_cost: float = 0.0,
        prices: dict[str, Any] | None = None,
    ):
        self.traffic = Traffic()
        self.azureml = AzureMLStandIn(traffic=self.traffic, **(azureml or {}))
        self.sendgrid = SendGridStandIn(traffic=self.traffic, **(sendgrid or {}))
        identity_args = {"tenant_id": self.azureml.tenant_id, **(identity or {})}
        self.identity = ManagedIdentityStandIn(traffic=self.traffic, **identity_args)
        self.azureml.accept_tokens_from(self.identity)
        self._connection_cost = connection_cost
        self.acs = AcsStandIn(traffic=self.traffic, aad=self.azureml.aad)
        self.acs.accept_tokens_from(self.identity)  # the managed identity mails too
        self.prices = RetailPricesStandIn(traffic=self.traffic, **(prices or {}))
        self.ca: LoopbackCA | None = None
        self.server: StandInServer | None = None
        self.proxy: ConnectProxy | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> StandIns:
        if self.server is not None:
            return self
        try:
            self.ca = LoopbackCA()
            self.server = StandInServer(
                self.ca.server_context(),
                [self.azureml, self.sendgrid, self.acs, self.prices],
                self.traffic,
                connection_cost=self._connection_cost,
            )
            self.server.start()
            self.proxy = ConnectProxy(("127.0.0.1", self.server.port)).start()
            self.identity.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop proxy, servers and identity endpoint and delete the CA directory. Safe to call twice or
        after a failed start."""
        proxy, server, ca = self.proxy, self.server, self.ca
        self.proxy = self.server = self.ca = None
        for closer in (proxy and proxy.stop, server and server.stop, self.identity.stop, ca and ca.cleanup):
            if closer:
                with contextlib.suppress(Exception):
                    closer()

    def __enter__(self) -> StandIns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- how clients reach us
    def _started(self) -> tuple[LoopbackCA, ConnectProxy]:
        if self.ca is None or self.proxy is None:
            raise RuntimeError("StandIns not started")
        return self.ca, self.proxy

    @property
    def ca_file(self) -> str:
        return self._started()[0].ca_file

    @property
    def proxy_url(self) -> str:
        return self._started()[1].url

    @property
    def https_port(self) -> int:
        if self.server is None:
            raise RuntimeError("StandIns not started")
        return self.server.port

    @property
    def env(self) -> dict[str, str]:
        """Environment that sends HTTPS through the proxy and trusts the test CA; 127.0.0.1 stays direct."""
        ca_file, proxy_url = self.ca_file, self.proxy_url
        no_proxy = "127.0.0.1,localhost"
        return {
            "HTTPS_PROXY": proxy_url,
            "https_proxy": proxy_url,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "REQUESTS_CA_BUNDLE": ca_file,
            "SSL_CERT_FILE": ca_file,
        }

    @property
    def identity_env(self) -> dict[str, str]:
        """``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``, as App Service sets them for a Function App with
        a managed identity: with them in ``os.environ``, azure-identity's ``ManagedIdentityCredential``
        gets its tokens from :attr:`identity` (plain HTTP on 127.0.0.1, never through the proxy)."""
        return self.identity.env

    def app_settings(self) -> dict[str, str]:
        """The App Settings (local.settings.json names) that point the app at these stand-ins."""
        aml = self.azureml
        return {
            "tenant_id": aml.tenant_id,
            "subscription_id": aml.subscription_id,
            "service_principal_id": aml.client_id,
            "service_principal_password": aml.client_secret,
            "resource_group": aml.resource_group,
            "aml_workspace": aml.workspace,
            "SENDGRID_API_KEY": self.sendgrid.api_key,
        }

    # ---------------------------------------------------------------- faults and log (shared Traffic)
    @property
    def add_fault(self):
        """:meth:`Traffic.add_fault` of the shared log. service: None|"aad"|"arm"|"azureml"|"sendgrid"|"acs"|"prices"|"identity"|"table"."""
        return self.traffic.add_fault

    @property
    def latency(self) -> float:
        return self.traffic.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.traffic.latency = seconds

    @property
    def connection_cost(self) -> float:
        """Seconds every new TLS connection costs the client before its handshake (0: free). A real
        connection to Azure costs a TCP and a TLS handshake over the network; set this (with
        :attr:`latency`) so that a client that does not reuse connections pays for it in a benchmark."""
        return self.server.connection_cost if self.server is not None else self._connection_cost

    @connection_cost.setter
    def connection_cost(self, seconds: float) -> None:
        self._connection_cost = seconds
        if self.server is not None:
            self.server.connection_cost = seconds

    @property
    def connections(self) -> int:
        """TLS connections the clients opened (through the proxy) since start or the last reset."""
        return self.server.accepted if self.server is not None else 0

    def enforce_write_bucket(self, capacity: int = 200, refill_per_second: float = 10.0) -> WriteBuckets:
        """ARM's write throttling on the AzureML stand-in: see :meth:`AzureMLStandIn.enforce_write_bucket`."""
        return self.azureml.enforce_write_bucket(capacity, refill_per_second)

    @property
    def log(self) -> list[Record]:
        return self.traffic.records()

    def records(self, service=None, method=None, path_regex=None, status=None) -> list[Record]:
        return self.traffic.records(service, method, path_regex, status)

    def count(self, service=None, method=None, path_regex=None, status=None) -> int:
        return self.traffic.count(service, method, path_regex, status)

    def max_in_flight(self, service=None, method=None, path_regex=None, status=None) -> int:
        return self.traffic.max_in_flight(service, method, path_regex, status)

    def stopped_names(self) -> list[str]:
        return self.azureml.stopped_names()

    def reset(self) -> None:
        """Between tests: no computes, faults, log, outbox, latency, connection cost, write bucket, only
        the default price catalogue, and the connection counts start at 0; credentials and tokens stay."""
        self.traffic.reset()
        self.azureml.reset()
        self.sendgrid.reset()
        self.acs.reset()
        self.prices.reset()
        self.connection_cost = 0.0
        if self.server is not None:
            self.server.reset_accepted()
        if self.proxy is not None:
            self.proxy.clear_connects()
