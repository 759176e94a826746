"""Listing the targeted instances, shared by MailSender and ComputeShutdown."""

from __future__ import annotations

from .decisions import Targets, select_targets
from .domain import InstanceSelection
from .errors import OutOfTimeError, TransientServiceError
from .fanout import call_with_budget
from .ports import ComputeWorkspace
from .retry import Backpressure, RetryPolicy

# One listing (all pages) must not eat the whole Functions time limit, even if a call hangs.
LIST_BUDGET = 60.0


def list_targets(
    workspace: ComputeWorkspace,
    selection: InstanceSelection,
    policy: RetryPolicy,
    backpressure: Backpressure | None = None,
    budget: float = LIST_BUDGET,
) -> Targets:
    def listing():
        return policy.call(workspace.list_instances, "listing compute instances", backpressure)

    try:
        return select_targets(call_with_budget(listing, budget), selection)
    except OutOfTimeError as error:
        raise TransientServiceError("AzureML", f"listing compute instances: {error}") from None
