"""Shared pytest configuration.

Hypothesis profiles for the property-based tests (tests/test_properties_*.py):

- ``ci`` (the default): few examples, derandomized so a red CI run is the same on a re-run, no
  example database written into the checkout. The long exploration is bench/fuzz.py's job.
- ``dev``: more examples, random, with the database (``.hypothesis/``), for working on a parser.
- ``fuzz``: what bench/fuzz.py loads, with the example count it sets.

Choose one with ``HYPOTHESIS_PROFILE=dev pytest ...``. No profile has a hypothesis deadline:
wall-clock deadlines fail at random on a shared, loaded machine; the properties bound the CPU
time of each parse themselves (tests/properties.py).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=1000, deadline=None)
settings.register_profile(
    "fuzz", deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
