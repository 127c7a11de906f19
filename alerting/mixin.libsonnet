// The wsmon alerting mixin. `catalogue` (indicators.py) and `thresholds` (thresholds.yaml, already
// validated) are set by main.jsonnet.
(import 'config.libsonnet') +
(import 'rules.libsonnet') +
(import 'alerts.libsonnet') +
(import 'alertmanager.libsonnet') +
{
  catalogue:: error 'catalogue must be set (alerting/indicators.py)',
  thresholds:: error 'thresholds must be set (alerting/thresholds.yaml)',
}
