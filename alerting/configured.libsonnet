// The mixin with its inputs set and the overrides merged into _config: what main.jsonnet renders
// the alerting files from and what every dashboard reads (dashboards/), so a threshold line on a
// panel is the very value the alert fires at.
//   catalogue  {indicators: [...], imbalanceMinConnectionsPerWorker, slowConsumerMinCutoffs}
//              from wsmon/indicators.py
//   thresholds [...]  thresholds.yaml after validation (value as PromQL text, display as prose)
//   overrides  {...}  deep-merged into _config (the end-to-end test's short windows, SMTP settings)
function(catalogue, thresholds, overrides={})
  local base = (import 'mixin.libsonnet') + {
    catalogue:: catalogue.indicators,
    thresholds:: thresholds,
    _config+:: {
      imbalanceMinConnectionsPerWorker: catalogue.imbalanceMinConnectionsPerWorker,
      slowConsumerMinCutoffs: catalogue.slowConsumerMinCutoffs,
    },
  };
  // Merged once, into a local: Jsonnet re-evaluates a field's expression on every access, and the
  // rules and dashboards read _config hundreds of times.
  local config = std.mergePatch(base._config, overrides);
  base + { _config:: config }
