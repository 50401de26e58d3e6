"""The pilot's lifetime rules at their boundaries (SPEC 6.3), with the clock and the
randomness injected: hard end minus grace, token expiry, walltime, Slurm end, the
retire spread; and the pilot's name.

The headline rules: the pilot is gone a grace period before any hard end, and it
stops accepting jobs before it must be gone.
"""

from __future__ import annotations

import random
import uuid

import pytest

from ospool_ep.inputs import policy
from ospool_ep.inputs.policy import Lifetime, pilot_name, pilot_uuid, plan_lifetime, sanitize_name

HOUR = 3600
NOW = 1_790_000_000
GRACE = 300


class Pinned(random.Random):
    """A Random whose ``randint`` always answers one end of the range, and remembers it."""

    def __init__(self, end: str = "low") -> None:
        super().__init__(0)
        self.end = end
        self.asked: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.asked.append((a, b))
        return a if self.end == "low" else b


def lifetime(
    *,
    accept: int = 20,
    retirement: int = 4,
    walltime: int | None = None,
    job_end: int | None = None,
    token_expiry: int | None = None,
    grace: int = GRACE,
    rng: random.Random | None = None,
    start: float = NOW,
) -> Lifetime:
    return plan_lifetime(
        start=start,
        accept_jobs_for_hours=accept,
        retirement_hours=retirement,
        walltime_seconds=walltime,
        job_end_time=job_end,
        token_expiry=token_expiry,
        grace_seconds=grace,
        rng=rng or Pinned(),
    )


def test_uncapped_hours_give_to_retire_and_to_die_exactly() -> None:
    life = lifetime(accept=20, retirement=4)
    assert life == Lifetime(NOW, NOW + 20 * HOUR, NOW + 24 * HOUR, ())


def test_a_fractional_start_is_truncated_to_the_second() -> None:
    assert lifetime(start=NOW + 0.9).start == NOW


@pytest.mark.parametrize(
    ("accept", "spread"),
    [(1, 72), (12, 864), (13, 900), (20, 900)],
    ids=["2% of an hour", "2% of 12 h", "capped at 15 min", "capped at 15 min for 20 h"],
)
def test_the_retire_spread_is_2_percent_of_the_window_at_most_15_minutes(
    accept: int, spread: int
) -> None:
    low, high = Pinned("low"), Pinned("high")
    assert lifetime(accept=accept, rng=low).to_retire == NOW + accept * HOUR
    assert lifetime(accept=accept, rng=high).to_retire == NOW + accept * HOUR - spread
    assert low.asked == [(0, spread)]
    # The spread only moves ToRetire, never ToDie.
    assert lifetime(accept=accept, rng=high).to_die == NOW + (accept + 4) * HOUR


def test_the_spread_constants_are_15_minutes_and_2_percent() -> None:
    assert policy.RETIRE_SPREAD_MAX_SECONDS == 900
    assert policy.RETIRE_SPREAD_FRACTION == 0.02


def test_a_real_random_spread_stays_within_its_bounds() -> None:
    for seed in range(50):
        life = lifetime(accept=20, rng=random.Random(seed))
        assert NOW + 20 * HOUR - 900 <= life.to_retire <= NOW + 20 * HOUR


HARD_ENDS = {
    "PILOT_WALLTIME": lambda seconds: {"walltime": seconds},
    "Slurm job end": lambda seconds: {"job_end": NOW + seconds},
    "token expiry": lambda seconds: {"token_expiry": NOW + seconds},
}


@pytest.mark.parametrize("reason", list(HARD_ENDS))
def test_a_hard_end_exactly_grace_after_the_planned_end_does_not_cap(reason: str) -> None:
    """Uncapped to_die = 24 h; a hard end at 24 h + grace leaves it alone."""
    life = lifetime(**HARD_ENDS[reason](24 * HOUR + GRACE))
    assert life == Lifetime(NOW, NOW + 20 * HOUR, NOW + 24 * HOUR, ())


@pytest.mark.parametrize("reason", list(HARD_ENDS))
def test_a_hard_end_one_second_earlier_caps_to_die_at_the_end_minus_grace(reason: str) -> None:
    life = lifetime(**HARD_ENDS[reason](24 * HOUR + GRACE - 1))
    assert life.capped_by == (reason,)
    assert life.to_die == NOW + 24 * HOUR - 1
    # Retirement keeps its 4 hours: (to_die - now) // 2 is far more.
    assert life.to_retire == NOW + 20 * HOUR - 1


@pytest.mark.parametrize("reason", list(HARD_ENDS))
def test_a_short_hard_end_gives_retirement_at_most_half_the_life(reason: str) -> None:
    """A 2 h batch job: gone grace before its end, accepting jobs for the first half."""
    life = lifetime(**HARD_ENDS[reason](2 * HOUR))
    alive = 2 * HOUR - GRACE
    assert life.to_die == NOW + alive
    assert life.to_retire == NOW + alive - alive // 2
    assert life.capped_by == (reason,)


def test_an_odd_remaining_life_gives_retirement_the_smaller_half() -> None:
    life = lifetime(walltime=GRACE + 7)
    assert life.to_die == NOW + 7
    assert life.to_retire == NOW + 4


def test_retirement_hours_still_bound_retirement_when_capped() -> None:
    """Capped at 30 h: retirement stays 4 h, not half of 30 h; accepting is not extended."""
    life = lifetime(accept=40, retirement=4, token_expiry=NOW + 30 * HOUR + GRACE)
    assert life.to_die == NOW + 30 * HOUR
    assert life.to_retire == NOW + 26 * HOUR


def test_capping_never_moves_to_retire_later() -> None:
    life = lifetime(accept=1, retirement=40, walltime=30 * HOUR)
    assert life.to_die == NOW + 30 * HOUR - GRACE
    assert life.to_retire == NOW + 1 * HOUR


@pytest.mark.parametrize("end", [NOW + GRACE, NOW + 10, NOW - 3600])
def test_a_hard_end_within_the_grace_or_past_ends_the_pilot_now(end: int) -> None:
    life = lifetime(token_expiry=end)
    assert life.to_die == NOW
    assert life.to_retire == NOW
    assert life.capped_by == ("token expiry",)


def test_every_hard_end_that_bites_is_named_in_order_and_the_earliest_wins() -> None:
    life = lifetime(walltime=10 * HOUR, job_end=NOW + 9 * HOUR, token_expiry=NOW + 8 * HOUR)
    assert life.capped_by == ("PILOT_WALLTIME", "Slurm job end", "token expiry")
    assert life.to_die == NOW + 8 * HOUR - GRACE
    # An end later than one already applied does not bite, so it is not named.
    token_first = lifetime(walltime=10 * HOUR, job_end=NOW + 9 * HOUR, token_expiry=NOW + HOUR)
    assert token_first.capped_by == ("PILOT_WALLTIME", "Slurm job end", "token expiry")
    earliest_first = lifetime(walltime=8 * HOUR, token_expiry=NOW + 9 * HOUR)
    assert earliest_first.capped_by == ("PILOT_WALLTIME",)
    later_first = lifetime(walltime=8 * HOUR, job_end=NOW + 10 * HOUR)
    assert later_first.capped_by == ("PILOT_WALLTIME",)
    assert later_first.to_die == NOW + 8 * HOUR - GRACE


@pytest.mark.parametrize("walltime", [None, 0])
def test_no_walltime_or_zero_means_no_walltime_cap(walltime: int | None) -> None:
    assert lifetime(walltime=walltime).capped_by == ()


def test_the_grace_is_subtracted_from_the_hard_end_itself() -> None:
    assert lifetime(job_end=NOW + 10 * HOUR, grace=0).to_die == NOW + 10 * HOUR
    assert lifetime(job_end=NOW + 10 * HOUR, grace=600).to_die == NOW + 10 * HOUR - 600


@pytest.mark.parametrize("expires_in", [HOUR, 10 * HOUR, 23 * HOUR, 24 * HOUR + GRACE - 1])
@pytest.mark.parametrize("end", ["low", "high"])
def test_the_pilot_retires_before_its_token_expires_and_is_gone_a_grace_before(
    expires_in: int, end: str
) -> None:
    """The headline rule: never a pilot holding jobs with a dead token."""
    exp = NOW + expires_in
    life = lifetime(token_expiry=exp, rng=Pinned(end))
    assert life.to_die <= exp - GRACE
    assert life.to_retire < life.to_die
    assert life.to_die - life.to_retire <= 4 * HOUR + policy.RETIRE_SPREAD_MAX_SECONDS


def test_the_capped_spread_is_taken_from_the_capped_window() -> None:
    high = Pinned("high")
    life = lifetime(accept=20, walltime=2 * HOUR + GRACE, rng=high)
    window = HOUR  # to_retire - now after capping: half of the 2 h life
    assert high.asked == [(0, int(window * 0.02))]
    assert life.to_retire == NOW + window - int(window * 0.02)


def test_a_window_under_50_seconds_has_no_spread() -> None:
    """2% of under 50 s rounds to 0 s: ToRetire is not moved at all."""
    high = Pinned("high")
    life = lifetime(token_expiry=NOW + GRACE + 60, rng=high)
    assert high.asked == [(0, 0)]
    assert (life.to_retire, life.to_die) == (NOW + 30, NOW + 60)


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("host-1.example.org", "host-1.example.org"),
        ("My Site (CE 1)", "My-Site-CE-1"),
        ("a  __  b", "a-b"),
        ("..-a-..", "a"),
        ("-.-", "pilot"),
        ("", "pilot"),
        ("ünï", "n"),
        ("x" * 70, "x" * 63),
        ("x" * 62 + ".y", "x" * 62),
        ("x" * 62 + "-" + "y" * 5, "x" * 62),
        ("-" + "x" * 63, "x" * 63),
        ("." + "x" * 63, "x" * 63),
        ("Xeon-X", "Xeon-X"),
    ],
)
def test_a_name_is_sanitised_to_a_dns_label_of_at_most_63_characters(text: str, name: str) -> None:
    assert sanitize_name(text) == name


def test_the_pilot_name_is_resource_then_host_and_optionally_ten_hex_digits() -> None:
    rng = random.Random(3)
    expected_hex = f"{random.Random(3).getrandbits(40):010x}"
    assert pilot_name(resource_name="CE 1", hostname="node.x", randomize=False, rng=rng) == (
        "CE-1.node.x"
    )
    name = pilot_name(resource_name="CE 1", hostname="node.x", randomize=True, rng=random.Random(3))
    assert name == f"CE-1.{expected_hex}.node.x"
    assert len(expected_hex) == 10


def test_small_random_bits_are_zero_padded_to_ten_digits() -> None:
    class Small(random.Random):
        def getrandbits(self, k: int) -> int:
            assert k == 40
            return 0xAB

    assert pilot_name(resource_name="r", hostname="h", randomize=True, rng=Small()) == (
        "r.00000000ab.h"
    )


def test_the_pilot_uuid_is_a_version_4_uuid_from_the_given_randomness() -> None:
    text = pilot_uuid(random.Random(5))
    assert text == pilot_uuid(random.Random(5))
    assert uuid.UUID(text).version == 4
    assert text != pilot_uuid(random.Random(6))
