# Shared helpers for the instance-simulator shims. Sourced, not executed.
# The shims stand in for commands that must never act on the host when a
# simulated instance's user-data runs here (see localstack/simulator.py).

SIM_SHIM_NAME="${SIM_SHIM_NAME:-${0##*/}}"

sim_log() {
    local msg="simulator-shim[$SIM_SHIM_NAME]: $*"
    echo "$msg" >&2
    if [[ -n "${BACKUP_CLOUD_SIM_INSTANCE_DIR:-}" && -d "${BACKUP_CLOUD_SIM_INSTANCE_DIR}" ]]; then
        printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$msg" >>"$BACKUP_CLOUD_SIM_INSTANCE_DIR/shims.log" 2>/dev/null || true
    fi
}

# Every shim calls this first: outside a simulated instance, do nothing at all.
sim_require_instance() {
    if [[ -z "${BACKUP_CLOUD_SIM_INSTANCE_DIR:-}" || ! -d "${BACKUP_CLOUD_SIM_INSTANCE_DIR}" ]]; then
        echo "simulator: refusing to $SIM_SHIM_NAME on the host (BACKUP_CLOUD_SIM_INSTANCE_DIR is not set: not inside a simulated instance)" >&2
        exit 1
    fi
}

sim_refuse() {
    sim_require_instance
    sim_log "simulator: refusing to $SIM_SHIM_NAME on the host (args: $*)"
    exit 1
}

sim_minute_seconds() {
    local m="${BACKUP_CLOUD_SIM_MINUTE_SECONDS:-60}"
    [[ "$m" =~ ^[0-9]+([.][0-9]+)?$ ]] || m=60
    echo "$m"
}

# sim_request_shutdown EPOCH ACTION  (ACTION: poweroff|halt|reboot)
# Writes the request atomically; a newer request replaces an older one (as systemd does).
sim_request_shutdown() {
    local at="$1" action="$2" d="$BACKUP_CLOUD_SIM_INSTANCE_DIR"
    printf '%s\n' "$action" >"$d/.shutdown-action.$$" && mv -f "$d/.shutdown-action.$$" "$d/shutdown-action"
    printf '%s\n' "$at" >"$d/.shutdown-at.$$" && mv -f "$d/.shutdown-at.$$" "$d/shutdown-at"
    sim_log "$action requested at epoch $at (now $(date +%s))"
}

sim_cancel_shutdown() {
    rm -f "$BACKUP_CLOUD_SIM_INSTANCE_DIR/shutdown-at" "$BACKUP_CLOUD_SIM_INSTANCE_DIR/shutdown-action"
    sim_log "pending shutdown cancelled"
}
