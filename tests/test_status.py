"""The status rules of a heartbeat (seed: evaluateStatus), as a pure function: no servers."""

import pytest

from registry.status import STATUSES, Signal, Transition, next_transition, transition_table

WEDGE_MSG = "claude_agent_sdk wedge: Control request timeout: initialize — restart workspace to recover"


def test_online_healthy_stays_online():
    assert next_transition("online", Signal(error_rate=0.2)) is None


def test_online_wedged_degrades_with_runtime_state_and_sample_error():
    t = next_transition("online", Signal(error_rate=0.0, runtime_state="wedged", sample_error=WEDGE_MSG))
    assert t == Transition("degraded", "WORKSPACE_DEGRADED", {"runtime_state": "wedged", "sample_error": WEDGE_MSG})


def test_wedge_takes_precedence_over_error_rate_and_degrades_once():
    # The seed fired two DEGRADED events here (both branches tested the stale
    # status); one transition, the wedge's, is the intended behaviour.
    t = next_transition("online", Signal(error_rate=0.9, runtime_state="wedged", sample_error="x"))
    assert t.payload == {"runtime_state": "wedged", "sample_error": "x"}


@pytest.mark.parametrize("rate", [0.5, 0.51, 1.0])
def test_online_error_rate_at_or_above_half_degrades(rate):
    t = next_transition("online", Signal(error_rate=rate, sample_error="connection timeout"))
    assert t == Transition("degraded", "WORKSPACE_DEGRADED", {"error_rate": rate, "sample_error": "connection timeout"})


def test_error_rate_just_below_threshold_stays_online():
    assert next_transition("online", Signal(error_rate=0.4999)) is None


def test_non_wedged_runtime_state_does_not_degrade_online():
    assert next_transition("online", Signal(runtime_state="busy")) is None


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.0999])
def test_degraded_recovers_below_a_tenth_without_runtime_state(rate):
    assert next_transition("degraded", Signal(error_rate=rate)) == Transition("online", "WORKSPACE_ONLINE", {})


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.6])
def test_degraded_stays_at_or_above_a_tenth(rate):
    assert next_transition("degraded", Signal(error_rate=rate)) is None


@pytest.mark.parametrize("state", ["wedged", "busy"])
def test_degraded_stays_while_any_runtime_state_is_reported(state):
    assert next_transition("degraded", Signal(error_rate=0.0, runtime_state=state)) is None


@pytest.mark.parametrize("signal", [Signal(), Signal(error_rate=0.9), Signal(runtime_state="wedged")])
def test_offline_comes_back_online_on_any_heartbeat(signal):
    assert next_transition("offline", signal) == Transition("online", "WORKSPACE_ONLINE", {})


@pytest.mark.parametrize("signal", [Signal(), Signal(error_rate=0.9)])
def test_provisioning_goes_online_with_recovered_from(signal):
    assert next_transition("provisioning", signal) == Transition("online", "WORKSPACE_ONLINE", {"recovered_from": "provisioning"})


@pytest.mark.parametrize("status", ["failed", "removed", "paused", "hibernated"])
@pytest.mark.parametrize("signal", [Signal(), Signal(error_rate=1.0), Signal(runtime_state="wedged")])
def test_platform_owned_statuses_are_left_alone(status, signal):
    assert next_transition(status, signal) is None


def test_table_has_one_entry_per_status_that_changes():
    table = transition_table(Signal(error_rate=0.7, sample_error="e"))
    by_prev = {row["prev"]: row for row in table}
    assert set(by_prev) == {"online", "offline", "provisioning"}
    assert by_prev["online"]["next"] == "degraded"
    assert by_prev["offline"]["event_type"] == "WORKSPACE_ONLINE"
    assert all(row["prev"] in STATUSES for row in table)


def test_table_matches_next_transition_for_every_status():
    for signal in [Signal(), Signal(error_rate=0.6), Signal(runtime_state="wedged"), Signal(error_rate=0.05)]:
        table = {row["prev"]: row for row in transition_table(signal)}
        for status in STATUSES:
            t = next_transition(status, signal)
            if t is None:
                assert status not in table
            else:
                assert table[status] == {"prev": status, "next": t.status, "event_type": t.event_type, "payload": t.payload}
