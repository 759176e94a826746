from shared.decisions import announced, mail_subject, plan_mails, plan_shutdown, select_targets
from shared.domain import Instance, InstanceSelection

ALICE = Instance("ci-alice", "Running", "alice@contoso.com")
BOB = Instance("ci-bob", "Running", "Bob@Contoso.com")
CAROL = Instance("ci-carol", "Stopped", "carol@contoso.com")
DAVE = Instance("ci-dave", "JobRunning", "dave@contoso.com")
ERIN = Instance("ci-erin", "Starting", "erin@contoso.com")
ROBOT = Instance("ci-robot", "Running", "3f2b-object-id")
FLEET = (ALICE, BOB, CAROL, DAVE, ERIN, ROBOT)


def test_every_instance_selection_takes_all_sorted_by_name():
    targets = select_targets(reversed(FLEET), InstanceSelection(every_instance=True))
    assert [i.name for i in targets.instances] == sorted(i.name for i in FLEET)
    assert targets.missing == ()


def test_named_selection_keeps_its_order_and_reports_unknown_names():
    targets = select_targets(FLEET, InstanceSelection(names=("ci-bob", "ci-ghost", "ci-alice")))
    assert targets.instances == (BOB, ALICE)
    assert targets.missing == ("ci-ghost",)


def test_shutdown_plan_stops_running_instances_nobody_kept():
    plan = plan_shutdown(FLEET, kept_names={"ci-bob", "ci-carol"})
    assert plan.stop == (ALICE, ROBOT)
    assert plan.kept == (BOB,)
    assert plan.busy == (DAVE,)
    assert plan.not_running == (CAROL, ERIN)


def test_an_instance_running_a_job_is_never_stopped_even_if_not_kept():
    assert DAVE not in plan_shutdown([DAVE], kept_names=()).stop


def test_only_running_and_busy_instances_are_announced():
    assert announced(FLEET) == (ALICE, BOB, DAVE, ROBOT)


def test_fixed_recipients_hear_about_everything_owners_about_their_own():
    plan = plan_mails(announced(FLEET), ["ml-team@contoso.com"], notify_instance_owner=True)
    assert plan.by_recipient["ml-team@contoso.com"] == (ALICE, BOB, DAVE, ROBOT)
    assert plan.by_recipient["alice@contoso.com"] == (ALICE,)
    assert plan.by_recipient["dave@contoso.com"] == (DAVE,)
    assert "carol@contoso.com" not in plan.by_recipient  # stopped: nothing to announce
    assert "3f2b-object-id" not in plan.by_recipient  # not an e-mail address


def test_owners_are_not_mailed_unless_asked():
    plan = plan_mails([ALICE], ["ml-team@contoso.com"], notify_instance_owner=False)
    assert list(plan.by_recipient) == ["ml-team@contoso.com"]


def test_one_mail_per_address_whatever_its_case():
    plan = plan_mails([ALICE, BOB], ["bob@contoso.com"], notify_instance_owner=True)
    assert set(plan.by_recipient) == {"bob@contoso.com", "alice@contoso.com"}
    assert plan.by_recipient["bob@contoso.com"] == (ALICE, BOB)


def test_no_running_instance_means_no_mail():
    assert plan_mails([], ["ml-team@contoso.com"], True).by_recipient == {}


def test_subject_lists_names_after_a_separator_and_shortens_long_lists():
    assert mail_subject("Compute stops tonight", ["ci-a"]) == "Compute stops tonight – ci-a"
    assert mail_subject("Stops tonight:", ["a1x", "b1x"]) == "Stops tonight – a1x, b1x"
    assert mail_subject("S", ["a", "b", "c", "d", "e"]) == "S – a, b, c and 2 more"
    assert mail_subject("  Two   words  ", []) == "Two words"


def test_names_match_without_case_and_keep_azures_spelling():
    targets = select_targets(FLEET, InstanceSelection(names=("CI-Alice", "Ci-Ghost")))
    assert targets.instances == (ALICE,)  # spelled as Azure lists it: ci-alice
    assert targets.missing == ("Ci-Ghost",)
    assert InstanceSelection(names=("CI-Bob",)).includes("ci-bob")


def test_a_keep_recorded_in_another_spelling_still_keeps_the_instance():
    assert plan_shutdown([ALICE], kept_names={"CI-ALICE"}).kept == (ALICE,)
