"""The deploy bundle: Prometheus, Alertmanager, Grafana provisioning and systemd units for wsmon.

`wsmon deploy build` (make deploy) renders bundle.jsonnet, from the alerting mixin's config, into
the checked-in files of this folder beside copies of the rules, the Alertmanager config and the
dashboards. Nothing imports this package.
"""
