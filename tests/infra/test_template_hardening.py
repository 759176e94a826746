"""The template's hardening, which `make lint` also checks with checkov.

checkov reads the template as written and evaluates no expression, so what it checks is literal in the
template, the same for every plan: HTTPS only, TLS 1.2 on the site and its SCM site, HTTP/2, no FTP; TLS 1.2,
HTTPS only and no anonymous blob access on the storage account; soft delete and purge protection on the
vault. These tests hold each of them there, and check what every plan renders. A check that does not apply is
skipped in the template itself (a resource's `metadata.checkov`, "CKV_…: reason"); SKIPPED below is that list,
so a new skip is a decision made here too, and none of the fixed checks can come back as a skip.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.infra.rendering import ROOT, load_template, render, variants

SITE_CONFIG = {
    "minTlsVersion": "1.2",
    "scmMinTlsVersion": "1.2",
    "ftpsState": "Disabled",
    "http20Enabled": True,
}
STORAGE = {"minimumTlsVersion": "TLS1_2", "supportsHttpsTrafficOnly": True, "allowBlobPublicAccess": False}
VAULT = {"enableSoftDelete": True, "enablePurgeProtection": True}

# The checks the template fixes: FTP off, TLS 1.2, HTTP/2 (twice), purge protection, recoverable vault.
FIXED = {"CKV_AZURE_78", "CKV_AZURE_15", "CKV_AZURE_18", "CKV_AZURE_67", "CKV_AZURE_110", "CKV_AZURE_42"}
SKIPPED = Counter(
    {
        ("Microsoft.Storage/storageAccounts", "CKV_AZURE_59"): 1,  # public network access: no VNet
        ("Microsoft.Storage/storageAccounts", "CKV_AZURE_35"): 1,  # firewall default Allow: no VNet
        ("Microsoft.Storage/storageAccounts", "CKV_AZURE_206"): 1,  # LRS: nothing worth geo-replicating
        ("Microsoft.Storage/storageAccounts", "CKV_AZURE_43"): 1,  # the name is an expression
        ("Microsoft.KeyVault/vaults", "CKV_AZURE_109"): 1,  # no firewall: no VNet
        ("Microsoft.KeyVault/vaults", "CKV_AZURE_189"): 1,  # public network access: no VNet
        ("Microsoft.KeyVault/vaults/secrets", "CKV_AZURE_41"): 3,  # no expiry: rotated by deploying
        ("Microsoft.Web/serverfarms", "CKV_AZURE_225"): 1,  # not zone redundant: a nightly job
        ("Microsoft.Web/sites", "CKV_AZURE_222"): 1,  # public: the links are clicked from anywhere
        ("Microsoft.Web/sites", "CKV_AZURE_17"): 1,  # no client certificates: phones
        ("Microsoft.Web/sites", "CKV_AZURE_16"): 1,  # the identity is an expression
        ("Microsoft.Web/sites", "CKV_AZURE_71"): 1,  # the identity is an expression
        ("Microsoft.Web/sites", "CKV_AZURE_212"): 1,  # one instance: a nightly job
        ("Microsoft.Web/sites", "CKV_AZURE_213"): 1,  # no health check: one instance
        ("Microsoft.Web/sites/config", "CKV_AZURE_13"): 1,  # no Easy Auth: the links are signed
        ("Microsoft.Web/sites/config", "CKV_AZURE_222"): 1,  # App Settings: no network access of their own
        ("Microsoft.Web/sites/config", "CKV_AZURE_63"): 1,  # App Settings, not web config
        ("Microsoft.Web/sites/config", "CKV_AZURE_65"): 1,  # App Settings, not web config
        ("Microsoft.Web/sites/config", "CKV_AZURE_66"): 1,  # App Settings, not web config
        ("Microsoft.Web/sites/config", "CKV_AZURE_80"): 1,  # Python, no .NET Framework
        ("Microsoft.Web/sites/config", "CKV_AZURE_88"): 1,  # no file share to mount
    }
)
SKIP = re.compile(r"^(CKV_AZURE_\d+): (.+)$")


def specs_of(resource_type: str) -> list[dict]:
    return [spec for spec in load_template()["resources"] if spec["type"] == resource_type]


def test_the_site_config_hardening_is_written_out_where_checkov_reads_it():
    (site,) = specs_of("Microsoft.Web/sites")
    config = site["properties"]["siteConfig"]
    assert isinstance(config, dict)  # an object, not an expression checkov cannot evaluate
    assert {key: config.get(key) for key in SITE_CONFIG} == SITE_CONFIG
    assert site["properties"]["httpsOnly"] is True


@pytest.mark.parametrize("variant", list(variants()))
def test_every_plan_is_https_only_with_tls_1_2_http_2_and_no_ftp(variant):
    template = render(variants()[variant])
    (site,) = [r for r in template.resources() if r.type == "Microsoft.Web/sites"]
    config = site.properties["siteConfig"]
    assert {key: config.get(key) for key in SITE_CONFIG} == SITE_CONFIG, variant
    assert site.properties["httpsOnly"] is True


def test_the_storage_account_and_the_vault_are_hardened_as_written():
    (storage,) = specs_of("Microsoft.Storage/storageAccounts")
    assert {key: storage["properties"].get(key) for key in STORAGE} == STORAGE
    (vault,) = specs_of("Microsoft.KeyVault/vaults")
    assert {key: vault["properties"].get(key) for key in VAULT} == VAULT
    for spec in specs_of("Microsoft.Storage/storageAccounts/blobServices/containers"):
        assert spec["properties"]["publicAccess"] == "None"


@pytest.mark.parametrize("variant", list(variants()))
def test_every_deployment_renders_the_storage_account_and_the_vault_hardened(variant):
    template = render(variants()[variant])
    (storage,) = [r for r in template.resources() if r.type == "Microsoft.Storage/storageAccounts"]
    assert {key: storage.properties.get(key) for key in STORAGE} == STORAGE
    (vault,) = [r for r in template.resources() if r.type == "Microsoft.KeyVault/vaults"]
    assert {key: vault.properties.get(key) for key in VAULT} == VAULT
    assert vault.properties["softDeleteRetentionInDays"] >= 7


def _skips() -> list[tuple[str, str, str]]:
    found = []
    for spec in load_template()["resources"]:
        for entry in spec.get("metadata", {}).get("checkov", []):
            match = SKIP.match(entry)
            assert match, entry  # the form checkov reads: "CKV_…: reason"
            found.append((spec["type"], match[1], match[2]))
    return found


def test_the_skipped_checks_are_the_ones_chosen_each_with_its_reason():
    skips = _skips()
    assert Counter((resource_type, check) for resource_type, check, _ in skips) == SKIPPED
    for _, check, reason in skips:
        assert len(reason) >= 30, (check, reason)


def test_no_fixed_check_is_skipped():
    assert FIXED.isdisjoint(check for _, check, _ in _skips())


def test_lint_runs_checkov_pinned_in_a_venv_of_its_own():
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "--framework arm -f infra/azuredeploy.json" in lint
    assert "$(CHECKOV_VENV)/.installed" in lint.splitlines()[0]
    lock = [
        line
        for line in (ROOT / "infra" / "checkov-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", line) for line in lock), lock
    assert any(re.fullmatch(r"checkov==\d+\.\d+\.\d+", line) for line in lock)
    for app_lock in ("requirements.txt", "requirements-dev.txt"):
        assert "checkov" not in (ROOT / app_lock).read_text().lower()
