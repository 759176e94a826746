"""JSON bodies of the AAD / ARM / regional Azure ML stand-in, as pure functions.

Shapes follow the official REST examples in ``loopback/data`` (see its NOTICE.md: Workspace-get.json,
Workspace-listBySubscription.json, Compute-get-ComputeInstance.json, Compute-list.json) and the real services' error formats, plus what
azureml-core v1 indexes without checking: ``tags``, ``properties.isAttachedCompute``,
``properties.resourceId``, ``properties.provisioningErrors``, ``sshSettings.adminPublicKey`` and
``createdBy.userName`` (without a userName the SDK calls out to resolve it). ``subnet`` is null (the
example's ``"test-subnet-resource-id"`` makes the SDK fail parsing it) and a compute has no
``identity`` key (AmlCompute would index into a null one).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

LOGIN = "https://login.microsoftonline.com"
PROVIDER = "/providers/Microsoft.MachineLearningServices"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00")


# ----------------------------------------------------------------------------- AAD
def aad_error(error: str, code: int, text: str) -> dict[str, Any]:
    """Entra ID error body, e.g. ``aad_error("invalid_client", 7000215, "Invalid client secret ...")``."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    ts = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}",
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"{LOGIN}/error?code={code}",
    }


def openid_configuration(tenant: str) -> dict[str, Any]:
    base = f"{LOGIN}/{tenant}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


def instance_discovery() -> dict[str, Any]:
    """MSAL asks for this after a failed token request (and for authorities it does not know)."""
    return {
        "tenant_discovery_endpoint": f"{LOGIN}/{{tenant}}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [
            {
                "preferred_network": "login.microsoftonline.com",
                "preferred_cache": "login.windows.net",
                "aliases": [
                    "login.microsoftonline.com",
                    "login.windows.net",
                    "login.microsoft.com",
                    "sts.windows.net",
                ],
            }
        ],
    }


# ----------------------------------------------------------------------------- ARM
def arm_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def subscription(subscription_id: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription_id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": subscription_id,
        "tenantId": tenant_id,
        "displayName": "Stand-in subscription",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


def workspace(
    arm_id: str,
    name: str,
    region: str,
    workspace_id: str,
    tenant_id: str,
    kind: str | None = "Default",
    hub_id: str | None = None,
) -> dict[str, Any]:
    """A workspace as ARM's GET and listings show it. ``kind`` None leaves the key out (ARM lists no kind
    for some older workspaces); a project's ``hub_id`` is its ``properties.hubResourceId``."""
    rg_id = arm_id.split(PROVIDER)[0]
    body = {
        "id": arm_id,
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": region,
        "tags": {},
        "sku": {"name": "Basic", "tier": "Basic"},
        "kind": "Default",
        "identity": {
            "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, workspace_id)),
            "tenantId": tenant_id,
            "type": "SystemAssigned",
        },
        "properties": {
            "friendlyName": name,
            "description": "Loopback stand-in workspace",
            "storageAccount": f"{rg_id}/providers/Microsoft.Storage/storageAccounts/standinstorage",
            "keyVault": f"{rg_id}/providers/Microsoft.KeyVault/vaults/standinkv",
            "applicationInsights": f"{rg_id}/providers/microsoft.insights/components/standininsights",
            "containerRegistry": None,
            "discoveryUrl": f"https://{region}.api.azureml.ms/discovery",
            "workspaceId": workspace_id,
            "hbiWorkspace": False,
            "provisioningState": "Succeeded",
            "creationTime": "2024-01-01T00:00:00.0000000Z",
            "privateLinkCount": 0,
            "allowPublicAccessWhenBehindVnet": False,
            "publicNetworkAccess": "Enabled",
            "mlFlowTrackingUri": f"azureml://{region}.api.azureml.ms/mlflow/v1.0{arm_id}",
            "v1LegacyMode": False,
        },
    }
    if kind is None:
        del body["kind"]
    else:
        body["kind"] = kind
    if hub_id is not None:
        body["properties"]["hubResourceId"] = hub_id
    return body


def operation_status(
    subscription_id: str, region: str, op_id: str, started: str, done: bool
) -> dict[str, Any]:
    body = {
        "id": f"/subscriptions/{subscription_id}{PROVIDER}/locations/{region}"
        f"/computeOperationsStatus/{op_id}",
        "name": op_id,
        "status": "Succeeded" if done else "InProgress",
        "startTime": started,
    }
    if done:
        body["endTime"] = now_iso()
    return body


# ----------------------------------------------------------------------------- regional host
def service_discovery(region: str) -> dict[str, Any]:
    """``GET {discoveryUrl}``: where azureml-core finds the ``api`` host for computes."""
    return {
        "api": f"https://{region}.api.azureml.ms",
        "catalog": "https://catalog.cortanaanalytics.com",
        "experimentation": f"https://{region}.experiments.azureml.net",
        "gallery": "https://gallery.cortanaintelligence.com/project",
        "history": f"https://{region}.experiments.azureml.net",
        "hyperdrive": f"https://{region}.experiments.azureml.net",
        "labeling": f"https://{region}.experiments.azureml.net",
        "modelmanagement": f"https://{region}.modelmanagement.azureml.net",
        "pipelines": f"https://{region}.aether.ms",
        "studio": "https://ml.azure.com",
    }


def aml_error(region: str, inner_code: str, message: str) -> dict[str, Any]:
    """Error body of the Azure ML services (``UserError`` with an inner code)."""
    return {
        "error": {
            "code": "UserError",
            "severity": None,
            "message": message,
            "messageFormat": None,
            "messageParameters": None,
            "referenceCode": None,
            "detailsUri": None,
            "target": None,
            "details": [],
            "innerError": {"code": inner_code, "innerError": None},
            "debugInfo": None,
            "additionalInfo": None,
        },
        "correlation": {"operation": uuid.uuid4().hex, "request": uuid.uuid4().hex[:16]},
        "environment": region,
        "location": region,
        "time": now_iso(),
        "componentName": "standin",
    }


# ----------------------------------------------------------------------------- computes
def compute_instance_properties(
    name: str,
    region: str,
    state: str,
    created_by: str,
    object_id: str,
    tenant_id: str,
    last_operation: dict | None,
    vm_size: str = "STANDARD_DS3_V2",
) -> dict[str, Any]:
    return {
        "vmSize": vm_size,
        "subnet": None,
        "applicationSharingPolicy": "Personal",
        "sshSettings": {
            "sshPublicAccess": "Disabled",
            "adminUserName": "azureuser",
            "sshPort": 50000,
            "adminPublicKey": None,
        },
        "customServices": None,
        "osImageMetadata": {
            "currentImageVersion": "24.01.01",
            "latestImageVersion": "24.01.01",
            "isLatestOsImageVersion": True,
        },
        "connectivityEndpoints": {"publicIpAddress": "20.0.0.1", "privateIpAddress": "10.0.0.4"},
        "applications": [
            {"displayName": "Jupyter", "endpointUri": f"https://{name}.{region}.instances.azureml.ms/tree/"},
            {
                "displayName": "Jupyter Lab",
                "endpointUri": f"https://{name}.{region}.instances.azureml.ms/lab",
            },
        ],
        "computeInstanceAuthorizationType": "personal",
        "personalComputeInstanceSettings": {"assignedUser": {"objectId": object_id, "tenantId": tenant_id}},
        "createdBy": {"userName": created_by, "userOrgId": tenant_id, "userId": object_id},
        "errors": None,
        "state": state,
        "lastOperation": last_operation,
        "schedules": {"computeStartStop": []},
        "enableNodePublicIp": True,
    }


def aml_compute_properties(modified_on: str) -> dict[str, Any]:
    """A cluster (AmlCompute): no instance state; it scales to zero by itself."""
    return {
        "vmSize": "STANDARD_DS3_V2",
        "vmPriority": "Dedicated",
        "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT120S"},
        "subnet": None,
        "remoteLoginPortPublicAccess": "Disabled",
        "osType": "Linux",
        "allocationState": "Steady",
        "allocationStateTransitionTime": modified_on,
        "errors": None,
        "currentNodeCount": 0,
        "targetNodeCount": 0,
        "nodeStateCounts": {
            "idleNodeCount": 0,
            "runningNodeCount": 0,
            "preparingNodeCount": 0,
            "unusableNodeCount": 0,
            "leavingNodeCount": 0,
            "preemptedNodeCount": 0,
        },
        "enableNodePublicIp": True,
    }


def compute(
    arm_id: str,
    name: str,
    region: str,
    compute_type: str,
    created_on: str,
    modified_on: str,
    properties: dict[str, Any],
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A compute resource. ``tags`` are its ARM tags (top level, as ARM serves them; ``{}`` if none)."""
    return {
        "id": arm_id,
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/computes",
        "location": region,
        "tags": dict(tags or {}),  # no "identity" key on purpose
        "properties": {
            "description": None,
            "createdOn": created_on,
            "modifiedOn": modified_on,
            "computeType": compute_type,
            "computeLocation": region,
            "provisioningState": "Succeeded",
            "provisioningErrors": None,
            "isAttachedCompute": False,
            "resourceId": None,
            "disableLocalAuth": True,
            "properties": properties,
        },
    }
