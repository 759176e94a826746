"""A loopback stand-in for the Azure and SendGrid endpoints the app talks to. Dev only, never deployed.

Entra ID (Azure AD), ARM, the regional Azure ML API, SendGrid, ACS Email and the Azure Retail Prices
API are served over real HTTPS on 127.0.0.1 (one TLS server with a throw-away test CA, reached through
a CONNECT proxy), App Service's managed-identity endpoint over plain HTTP on 127.0.0.1, and Azurite is
started as a child process for Table Storage. The real SDKs (azureml-core, azure-identity, sendgrid, azure-cosmosdb-table) and plain
requests run unmodified against them. Used by the tests (``tests/integration``,
``tests/e2e``), by ``make run``'s demo (``devhost``) and by ``make bench`` (``bench``); it is kept out of
the deployment package by ``.funcignore``, and nothing in the Function App imports it.

See :class:`StandIns` (stack.py) for the entry point and :class:`Azurite` for storage.
"""

from .azureml import AzureMLStandIn, StandInWorkspace
from .azurite import Azurite
from .identity import ManagedIdentityStandIn
from .prices import RetailPricesStandIn
from .sendgrid import SendGridStandIn
from .stack import StandIns
from .traffic import Fault, Record, Traffic

__all__ = [
    "AzureMLStandIn",
    "Azurite",
    "Fault",
    "ManagedIdentityStandIn",
    "Record",
    "RetailPricesStandIn",
    "SendGridStandIn",
    "StandInWorkspace",
    "StandIns",
    "Traffic",
]
