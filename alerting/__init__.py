"""wsmon's alerting: thresholds.yaml -> Jsonnet -> Prometheus rules and Alertmanager email.

The admin's list of thresholds (thresholds.yaml) is validated here in Python, then handed to the
Jsonnet mixin beside this file (config, rules, alerts, alertmanager), which writes the PromQL.
`wsmon rules build` regenerates generated/; `wsmon alerts` acknowledges alerts in Alertmanager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).parent
DEFAULT_THRESHOLDS: Final = HERE / "thresholds.yaml"
