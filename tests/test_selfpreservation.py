"""The self-preservation rules of the sweep: a pure function, no servers."""

import pytest

from registry.selfpreservation import ACTIVE, EXHAUSTED, NORMAL, Decision, Policy, decide

P = Policy(threshold_percent=15, min_silent=5, max_seconds=900, max_expire=500)


def test_no_silence_expires_nothing():
    assert decide(1000, 0, NORMAL, 0, P) == Decision(0, NORMAL)


def test_few_silent_are_expired():
    assert decide(1000, 20, NORMAL, 0, P) == Decision(20, NORMAL)


def test_at_exactly_the_threshold_still_expires():
    assert decide(100, 15, NORMAL, 0, P) == Decision(15, NORMAL)


def test_above_the_threshold_enters_and_expires_nothing():
    assert decide(100, 16, NORMAL, 0, P) == Decision(0, ACTIVE, entered=True)


def test_staying_in_does_not_announce_again():
    assert decide(100, 40, ACTIVE, 60, P) == Decision(0, ACTIVE)


def test_silence_ending_leaves_once_and_expires_the_rest():
    assert decide(100, 3, ACTIVE, 120, P) == Decision(3, NORMAL, left=True)


@pytest.mark.parametrize("fleet,silent", [(1, 1), (3, 2), (5, 4), (10, 4)])
def test_small_fleets_expire_normally(fleet, silent):
    assert decide(fleet, silent, NORMAL, 0, P) == Decision(silent, NORMAL)


def test_small_fleet_with_enough_silent_does_enter():
    assert decide(10, 5, NORMAL, 0, P).state == ACTIVE


def test_cap_per_sweep():
    assert decide(100_000, 2_000, NORMAL, 0, P) == Decision(500, NORMAL)


def test_mass_silence_outlasting_max_seconds_resumes_expiry_capped():
    assert decide(1000, 400, ACTIVE, 901, P) == Decision(400, EXHAUSTED, left=True)
    assert decide(10_000, 4000, ACTIVE, 901, P) == Decision(500, EXHAUSTED, left=True)


def test_exhausted_does_not_flap_back_in():
    assert decide(1000, 300, EXHAUSTED, 0, P) == Decision(300, EXHAUSTED)


def test_exhausted_returns_to_normal_when_silence_ends_without_announcing():
    assert decide(1000, 2, EXHAUSTED, 0, P) == Decision(2, NORMAL)


def test_empty_fleet():
    assert decide(0, 0, NORMAL, 0, P) == Decision(0, NORMAL)
