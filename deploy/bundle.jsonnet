// Entry point of `wsmon deploy build`: the deploy bundle's own files, by path under deploy/ (the
// build adds the copies of the rules, the Alertmanager config and the dashboards). It reads the
// same configured mixin as the rules and the dashboards, so a job name, a port or a datasource
// uid is written once, in alerting/config.libsonnet. Objects become YAML, strings are written as
// they are. `dashboards` is the dashboards build's output (file name -> JSON text), for the
// flavours that carry the dashboards in their own objects (Kubernetes' ConfigMaps).
function(catalogue, thresholds, overrides={}, dashboards={})
  // The mixin configured with more overrides (Compose's mail catcher as the SMTP relay).
  local configure(more) = (import 'configured.libsonnet')(
    catalogue, thresholds, std.mergePatch(overrides, more)
  );
  local mixin = configure({});
  local c = mixin._config;
  assert (import 'common.libsonnet')(c).job(c.wsmonSelector) == c.dashboardJob
         : 'the dashboards start on another job than the rules select';
  (import 'host.libsonnet')(c)
  + (import 'compose.libsonnet')(configure, c)
  + (import 'kubernetes.libsonnet')(mixin, dashboards)
