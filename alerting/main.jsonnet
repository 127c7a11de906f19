// Entry point of `wsmon rules build`: every generated file, by name.
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
  // Merged once here: Jsonnet re-evaluates a field on every access, and the rules read _config
  // hundreds of times.
  local config = std.mergePatch(base._config, overrides);
  local mixin = base + { _config:: config };
  local known = std.set(std.objectFields(mixin.indicatorRules));
  local wanted = std.set([i.key for i in catalogue.indicators]);
  assert known == wanted : 'rules.libsonnet and indicators.py disagree: %s vs %s' % [known, wanted];
  {
    'rules.yaml': { groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups },
    'alertmanager.yml': mixin.alertmanagerConfig,
  } + mixin.alertmanagerTemplates
