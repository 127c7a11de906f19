// The Kubernetes manifests (issue 10; being written).
function(mixin, dashboards) {}
