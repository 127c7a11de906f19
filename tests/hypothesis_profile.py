"""Hypothesis profiles for the property suites (tests/unit/test_properties_*.py).

Imported by those modules rather than by a conftest, so a run that collects neither is untouched.

- `ci` (chosen when the CI variable is true, as CI sets it): the same examples on every run
  (derandomize seeds each test from its own source) and no example database, so a red build is
  reproducible from its log and a green one is not green by luck of the draw.
- `dev` (the default elsewhere): fresh random examples every run, so local runs keep searching;
  a failure is remembered in .pytest_cache/hypothesis/ and replayed first next time.
- `thorough`: `WSMON_HYPOTHESIS_PROFILE=thorough` for a long search before a release.

No deadline in any: a 2-core CI machine's scheduling jitter must not fail a property. Each suite
sizes its costly properties with `examples()`, so the whole unit run grows by a few seconds only.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps its example database and caches in ./.hypothesis/, which .gitignore does not
# list (it would show in everyone's `git status`); .pytest_cache/ is ignored and already pytest's.
set_hypothesis_home_dir(Path(__file__).resolve().parent.parent / ".pytest_cache" / "hypothesis")

# Examples of a cheap (pure, sans-I/O) property; a costly one runs a fraction of it.
BASE_EXAMPLES = 30

settings.register_profile(
    "ci",
    max_examples=BASE_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
)
settings.register_profile("dev", max_examples=BASE_EXAMPLES, deadline=None)
settings.register_profile("thorough", max_examples=50 * BASE_EXAMPLES, deadline=None)


def _chosen() -> str:
    explicit = os.environ.get("WSMON_HYPOTHESIS_PROFILE")
    if explicit:
        return explicit
    return "ci" if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes") else "dev"


PROFILE = _chosen()
settings.load_profile(PROFILE)


def examples(fraction: float) -> int:
    """A costly property's example count: `fraction` of the loaded profile's, at least 3."""
    loaded = settings.default
    assert loaded is not None  # load_profile above
    return max(3, round(loaded.max_examples * fraction))
