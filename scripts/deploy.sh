#!/usr/bin/env bash
# AlphaPlus deployment with docker-compose.kafka.yml (docs/DEPLOYMENT.md).
#
#   scripts/deploy.sh up [--scale worker=4 ...]   build the image, start or update the stack
#   scripts/deploy.sh stop                         stop every container (volumes are kept)
#   scripts/deploy.sh logs [SERVICE...]            follow the logs
#   scripts/deploy.sh status                       containers, their health, and the URLs
#   scripts/deploy.sh scale SERVICE=N [...]        e.g. scale worker=4 stream=3 api=2
#   scripts/deploy.sh rollout SERVICE              replace every replica of api, worker or
#                                                  stream with the current image, one at a time
#   scripts/deploy.sh run ARGS...                  a one-off `alphaplus ARGS` in the stack
#
# Works with `docker compose` (v2) and `docker-compose` (v1). COMPOSE_FILE and ENV_FILE may be
# overridden in the environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="${COMPOSE_FILE:-$ROOT/docker-compose.kafka.yml}"
ENV_FILE="${ENV_FILE:-$ROOT/.env}"

die() {
  echo "deploy: $*" >&2
  exit 1
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$COMPOSE_FILE" --env-file "$ENV_FILE" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f "$COMPOSE_FILE" --env-file "$ENV_FILE" "$@"
  else
    die "neither 'docker compose' nor 'docker-compose' is installed"
  fi
}

env_value() {
  # The value of $1 in the env file, or $2 when it is not set there.
  local line
  line="$(grep -E "^$1=" "$ENV_FILE" | tail -n 1 || true)"
  if [[ -n "$line" ]]; then echo "${line#*=}"; else echo "$2"; fi
}

check_env() {
  [[ -f "$ENV_FILE" ]] || die "$ENV_FILE not found: cp .env.example .env, then set its passwords"
  local left
  left="$(grep -E '^[A-Z_]+=change-me$' "$ENV_FILE" | cut -d= -f1 | tr '\n' ' ' || true)"
  [[ -z "$left" ]] || die "set these in $ENV_FILE first (still change-me): $left"
}

urls() {
  local bind
  bind="$(env_value BIND_ADDRESS 127.0.0.1)"
  [[ "$bind" == "0.0.0.0" ]] && bind="$(hostname)"
  cat <<EOF
API and dashboard  http://$bind:$(env_value API_PORT 8000)/   (OpenAPI /docs, WebSocket /ws)
Grafana            http://$bind:$(env_value GRAFANA_PORT 3000)/
Prometheus         http://$bind:$(env_value PROMETHEUS_PORT 9090)/targets
Flower             http://$bind:$(env_value FLOWER_PORT 5555)/
Redis Commander    http://$bind:$(env_value REDIS_COMMANDER_PORT 8081)/
EOF
}

# Container ids of a service's replicas, one per line.
replicas() {
  compose ps -q "$1" | sed '/^$/d'
}

health() {
  docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1"
}

wait_healthy() {
  # Every container id given becomes healthy within 5 minutes, or the rollout stops.
  local id state
  for id in "$@"; do
    for _ in $(seq 1 150); do
      state="$(health "$id")"
      [[ "$state" == "healthy" ]] && break
      [[ "$state" == "exited" || "$state" == "dead" || "$state" == "unhealthy" ]] &&
        die "replica ${id:0:12} is $state; the old replicas keep running (see: deploy.sh logs)"
      sleep 2
    done
    [[ "$(health "$id")" == "healthy" ]] || die "replica ${id:0:12} not healthy after 5 minutes"
  done
}

rollout() {
  # Start as many new replicas as there are old ones, wait until they are healthy, then stop
  # the old ones one at a time (SIGTERM: Celery's warm shutdown, uvicorn's graceful close, the
  # stream member leaving its group), so capacity never drops below the usual count.
  local service="$1" old new id count grace
  case "$service" in
    api | worker | stream) ;;
    *) die "rollout: api, worker or stream (the others run one replica: use up)" ;;
  esac
  mapfile -t old < <(replicas "$service")
  count="${#old[@]}"
  [[ "$count" -gt 0 ]] || die "rollout: $service has no running replica; use up"
  compose build "$service"
  compose up -d --no-deps --no-recreate --scale "$service=$((count * 2))" "$service"
  mapfile -t new < <(replicas "$service" | grep -vxF -f <(printf '%s\n' "${old[@]}") || true)
  [[ "${#new[@]}" -gt 0 ]] || die "rollout: no new $service replica started"
  echo "deploy: $service: ${#new[@]} new replica(s), waiting until healthy"
  wait_healthy "${new[@]}"
  for id in "${old[@]}"; do
    echo "deploy: $service: stopping old replica ${id:0:12}"
    # The service's stop_grace_period (a worker finishing its running tasks), not docker's 10 s.
    grace="$(docker inspect --format '{{if .Config.StopTimeout}}{{.Config.StopTimeout}}{{end}}' "$id")"
    docker stop -t "${grace:-120}" "$id" >/dev/null
    docker rm "$id" >/dev/null
  done
  echo "deploy: $service: $count replica(s) on the new image"
}

cmd="${1:-}"
[[ -n "$cmd" ]] || { sed -n '2,15p' "$0"; exit 2; }
shift

case "$cmd" in
  up)
    check_env
    compose build
    compose up -d --remove-orphans "$@"
    urls
    ;;
  stop)
    compose stop "$@"
    ;;
  logs)
    compose logs -f --tail=200 "$@"
    ;;
  status)
    compose ps
    echo
    urls
    ;;
  scale)
    [[ $# -gt 0 ]] || die "scale SERVICE=N [SERVICE=N...]"
    args=()
    services=()
    for pair in "$@"; do
      [[ "$pair" =~ ^(api|worker|stream)=[0-9]+$ ]] || die "scale: api=N, worker=N or stream=N, not '$pair'"
      args+=(--scale "$pair")
      services+=("${pair%%=*}")
    done
    compose up -d --no-deps --no-recreate "${args[@]}" "${services[@]}"
    ;;
  rollout)
    [[ $# -eq 1 ]] || die "rollout SERVICE"
    rollout "$1"
    ;;
  run)
    compose run --rm --no-deps --entrypoint alphaplus migrate "$@"
    ;;
  *)
    die "unknown command '$cmd' (up, stop, logs, status, scale, rollout, run)"
    ;;
esac
