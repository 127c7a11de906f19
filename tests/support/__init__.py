"""Test infrastructure shared by the test folders: child processes, `wsmon serve`, /metrics, polls.

`pyproject.toml` puts tests/ on pytest's pythonpath, so every folder imports it the same way:
`from support.processes import Wsmon`, `from support.metrics import Metrics`,
`from support.polling import eventually`.
"""
