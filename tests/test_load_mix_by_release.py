"""The load generator's uneven-rollout knob: a release variant's creators draw from their own cohort mix."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from loadtests import settings
from loadtests.cohorts import CohortMix, CohortMixError, parse_mix_by_release


def test_a_variant_draws_from_its_own_mix_and_the_rest_from_the_runs():
    s = settings.from_env({settings.MIX: json.dumps({"network_type": {"wifi": 1}}),
                           settings.MIX_BY_RELEASE: json.dumps({"canary": {"network_type": {"3g": 1}}})})
    rng = random.Random(1)
    canary = Counter(settings.mix_for(s, "canary").draw(rng).network_type for _ in range(200))
    stable = Counter(settings.mix_for(s, "stable").draw(rng).network_type for _ in range(200))
    unknown = Counter(settings.mix_for(s, None).draw(rng).network_type for _ in range(200))
    assert canary == {"3g": 200} and stable == {"wifi": 200} and unknown == {"wifi": 200}
    # Dimensions the variant does not name keep the run's weights.
    assert s.mix_by_release["canary"].weights["region"] == s.mix.weights["region"]


def test_unset_means_one_mix_for_everyone():
    s = settings.from_env({})
    assert s.mix_by_release == {} and settings.mix_for(s, "canary") is s.mix


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON"),
    ('{"beta": {"network_type": {"3g": 1}}}', "unknown release variant 'beta'"),
    ('{"canary": {"network_type": {"2g": 1}}}', "canary: unknown network_type value"),
    ('{"canary": {"network_type": {"3g": "x"}}}', "canary: cohort weights must be numbers"),
    ('{"canary": []}', "canary: expected"),
])
def test_bad_mix_by_release_names_what_is_wrong(text, message):
    with pytest.raises(CohortMixError, match=message):
        parse_mix_by_release(text, CohortMix())
    with pytest.raises(settings.SettingsError, match=settings.MIX_BY_RELEASE):
        settings.from_env({settings.MIX_BY_RELEASE: text})
