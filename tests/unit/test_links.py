from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.domain import InstanceSelection, Night, WorkspaceTarget
from shared.errors import ExpiredLinkError, InvalidLinkError
from shared.links import CancelGrant, LinkSigner, cancel_link, check_grant
from tests.fakes import TEST_SECRET

SHUTDOWN = datetime(2026, 11, 24, 19, tzinfo=UTC)  # 20:00 Berlin
TARGET = WorkspaceTarget("00000000-1111-2222-3333-444444444444", "ml-rg", "ml-ws")
TONIGHT = Night(TARGET, date(2026, 11, 24), SHUTDOWN)
GRANT = CancelGrant(TARGET.arm_id, "ci-alice", TONIGHT.day, SHUTDOWN)
BEFORE = SHUTDOWN - timedelta(hours=3)
signer = LinkSigner(TEST_SECRET)


def test_a_signed_grant_verifies_to_the_same_grant():
    assert signer.verify(signer.sign(GRANT)) == GRANT


def test_a_token_is_url_safe_and_fits_the_limit_even_for_the_longest_names():
    token = signer.sign(GRANT)
    assert len(token) < 260 and all(c.isalnum() or c in "-_." for c in token)
    longest = WorkspaceTarget(TARGET.subscription_id, "r" * 90, "w" * 33)
    grant = CancelGrant(longest.arm_id, "c" * 24, TONIGHT.day, SHUTDOWN)
    assert signer.verify(signer.sign(grant)) == grant


@pytest.mark.parametrize("token", [None, ""])
def test_a_missing_token_is_explained(token):
    with pytest.raises(InvalidLinkError, match="incomplete"):
        signer.verify(token)


def test_every_single_character_change_is_refused():
    token = signer.sign(GRANT)
    for position in range(len(token)):
        flipped = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        with pytest.raises(InvalidLinkError):
            signer.verify(flipped)


def test_truncated_tokens_and_tokens_signed_with_another_secret_are_refused():
    token = signer.sign(GRANT)
    for cut in (1, 10, len(token) // 2, len(token) - 1):
        with pytest.raises(InvalidLinkError):
            signer.verify(token[:cut])
    with pytest.raises(InvalidLinkError, match="damaged or was not issued"):
        signer.verify(LinkSigner("another-secret-" + "y" * 40).sign(GRANT))


def test_oversized_tokens_are_refused_before_parsing():
    with pytest.raises(InvalidLinkError):
        signer.verify("a" * 10_000)


def test_a_payload_of_the_wrong_shape_is_refused_even_when_signed():
    from itsdangerous import URLSafeSerializer

    from shared import links

    forge = URLSafeSerializer(TEST_SECRET, salt=links._SALT)
    for payload in ([1, 2], {"w": "ml-ws"}, {"w": "ml-ws", "i": "<script>", "d": "2026-11-24", "t": 1},
                    {"w": "ml-ws", "i": "ci-a", "d": "not-a-day", "t": 1}):  # fmt: skip
        with pytest.raises(InvalidLinkError):
            signer.verify(forge.dumps(payload))


def test_check_accepts_a_current_link_for_a_managed_instance():
    assert check_grant(GRANT, TARGET, TONIGHT, BEFORE) == TONIGHT
    check_grant(GRANT, replace(TARGET, instances=InstanceSelection(names=("CI-Alice",))), TONIGHT, BEFORE)


def test_a_link_from_before_workspaces_were_named_by_arm_id_still_works():
    legacy = replace(GRANT, workspace="ml-ws")
    assert check_grant(legacy, TARGET, TONIGHT, BEFORE) == TONIGHT


def test_check_refuses_another_workspace_or_an_instance_no_longer_managed():
    other_rg = WorkspaceTarget(TARGET.subscription_id, "other-rg", "ml-ws")
    with pytest.raises(InvalidLinkError, match="does not manage"):
        check_grant(GRANT, other_rg, replace(TONIGHT, target=other_rg), BEFORE)  # same name, another group
    with pytest.raises(InvalidLinkError, match="does not manage"):
        check_grant(GRANT, replace(TARGET, instances=InstanceSelection(names=("ci-bob",))), TONIGHT, BEFORE)


def test_a_link_expires_when_its_shutdown_begins():
    check_grant(GRANT, TARGET, TONIGHT, SHUTDOWN - timedelta(seconds=1))
    with pytest.raises(ExpiredLinkError, match="was stopped by the shutdown on"):
        check_grant(GRANT, TARGET, TONIGHT, SHUTDOWN)
    tomorrow = Night(TARGET, date(2026, 11, 25), SHUTDOWN + timedelta(days=1))
    with pytest.raises(ExpiredLinkError, match="was stopped by the shutdown on"):
        check_grant(GRANT, TARGET, tomorrow, SHUTDOWN + timedelta(hours=3))  # the next night is another


def test_a_link_for_a_later_night_than_the_next_shutdown_is_refused():
    later = CancelGrant(TARGET.arm_id, "ci-alice", date(2026, 11, 25), SHUTDOWN + timedelta(days=1))
    with pytest.raises(InvalidLinkError, match="next shutdown is on Tuesday 24 November 2026"):
        check_grant(later, TARGET, TONIGHT, BEFORE)


def test_without_any_next_night_every_link_has_expired():
    with pytest.raises(ExpiredLinkError):
        check_grant(GRANT, TARGET, None, BEFORE)


def test_cancel_link_merges_into_an_existing_query():
    link = cancel_link("https://app.example.net/api/CancelShutDown?code=abc%3D%3D", "TOKEN.x-y")
    assert link.count("?") == 1
    query = parse_qs(urlsplit(link).query)
    assert query == {"code": ["abc=="], "token": ["TOKEN.x-y"]}


def test_cancel_link_without_query_and_with_a_stale_token_parameter():
    assert cancel_link("http://localhost:7071/api/CancelShutDown", "T") == (
        "http://localhost:7071/api/CancelShutDown?token=T"
    )
    assert parse_qs(urlsplit(cancel_link("https://h/api/C?token=old", "new")).query) == {"token": ["new"]}
