"""wsmon's alerting: thresholds.yaml -> Jsonnet -> Prometheus rules and Alertmanager email.

The admin's list of thresholds (thresholds.yaml, beside this file) is validated by the core
(wsmon.thresholds), then handed to the Jsonnet mixin beside this file (config, rules, alerts,
alertmanager), which writes the PromQL. `wsmon rules build` regenerates generated/; `wsmon alerts`
acknowledges alerts in Alertmanager.
"""
