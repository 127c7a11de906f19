"""The wsmon Grafana dashboards: Jsonnet built on the alerting mixin's config (`wsmon dashboards`).

One dashboard per tab of the monitoring guide; `make dashboards` renders them into generated/.
"""
