// docker-compose.yml and the files it mounts (issue 10; being written).
function(configure, c) {}
