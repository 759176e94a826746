"""Loopback stand-ins for Entra ID, ARM, the regional Azure ML API, SendGrid, and Azurite.

The real SDKs (azureml-core, sendgrid, azure-cosmosdb-table) run unmodified and talk real HTTP(S) to
local servers; see :class:`StandIns` (stack.py) for the entry point and :class:`Azurite` for storage.
"""

from .azureml import AzureMLStandIn
from .azurite import Azurite
from .sendgrid import SendGridStandIn
from .stack import StandIns
from .traffic import Fault, Record, Traffic

__all__ = ["AzureMLStandIn", "Azurite", "Fault", "Record", "SendGridStandIn", "StandIns", "Traffic"]
