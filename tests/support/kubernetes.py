"""What Kubernetes puts in the environment of every pod for a Service named `wsmon` with a port
named http (Kubernetes docs, "Discovering services": environment variables, the Docker-links
compatible ones included)."""

SERVICE_LINKS = {
    "WSMON_SERVICE_HOST": "10.96.0.12",
    "WSMON_SERVICE_PORT": "8080",
    "WSMON_SERVICE_PORT_HTTP": "8080",
    "WSMON_PORT": "tcp://10.96.0.12:8080",
    "WSMON_PORT_8080_TCP": "tcp://10.96.0.12:8080",
    "WSMON_PORT_8080_TCP_PROTO": "tcp",
    "WSMON_PORT_8080_TCP_PORT": "8080",
    "WSMON_PORT_8080_TCP_ADDR": "10.96.0.12",
}
