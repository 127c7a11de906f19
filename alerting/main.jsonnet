// Entry point of `wsmon rules build`: every generated file, by name. The arguments are those of
// configured.libsonnet.
function(catalogue, thresholds, overrides={})
  local mixin = (import 'configured.libsonnet')(catalogue, thresholds, overrides);
  local known = std.set(std.objectFields(mixin.indicatorRules));
  local wanted = std.set([i.key for i in catalogue.indicators]);
  assert known == wanted : 'rules.libsonnet and indicators.py disagree: %s vs %s' % [known, wanted];
  {
    'rules.yaml': { groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups },
    'alertmanager.yml': mixin.alertmanagerConfig,
  } + mixin.alertmanagerTemplates
