#!/bin/bash
# backup-cloud instance user-data. Rendered by the controller; every
# interpolated value is single-quoted by the shell escaper, and values are
# only ever interpolated on assignment lines, never inside comments.
set -euo pipefail
umask 077

readonly JOB_ID={{ job_id }}
readonly STATUS_PARAMETER={{ status_parameter }}
readonly SPEC_BUCKET={{ spec_bucket }}
readonly SPEC_KEY={{ spec_key }}
readonly AGENT_URL={{ agent_url }}
readonly AGENT_SHA256={{ agent_sha256 }}
readonly MAX_LIFETIME_MINUTES={{ max_lifetime_minutes }}
readonly AGENT_DOWNLOAD_SECS={{ agent_download_secs }}
export AWS_REGION={{ region }}
readonly DUMP_MODE={{ dump_mode }}
export AWS_DEFAULT_REGION="$AWS_REGION"

# The agent reports its own failures and exits with this code; any other
# non-zero exit means it died before it could.
readonly AGENT_REPORTED_FAILURE=4

stage="arming the dead-man shutdown"
agent_started=0

log() { printf '%s backup-cloud: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

# Writes a failed status so the controller learns at once, when the aws CLI
# is there to do it; without it the shutdown below tells the controller.
report_failure() {
  local reason=$1 now
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  log "failed: $reason"
  command -v aws >/dev/null 2>&1 || return 0
  aws ssm put-parameter --overwrite --type String --name "$STATUS_PARAMETER" \
    --value "$(printf '{"schema_version":1,"job_id":"%s","phase":"failed","started_at":"%s","updated_at":"%s","message":"%s"}' \
      "$JOB_ID" "$now" "$now" "$reason")" >/dev/null || log "could not write the failed status"
}

on_exit() {
  local rc=$1
  if [ "$rc" -ne 0 ] && [ "$agent_started" -eq 0 ]; then
    report_failure "instance set-up failed while $stage (exit $rc)"
  fi
  log "job finished (exit $rc); shutting down"
  shutdown -h now "backup-cloud: job $JOB_ID finished" || true
}
trap 'on_exit $?' EXIT

# Dead-man first: whatever happens next, this machine goes away.
shutdown -h "+$MAX_LIFETIME_MINUTES" "backup-cloud: maximum lifetime reached"

# Only the client tools the job's dump mode needs.
case "$DUMP_MODE" in
  mydumper) tools="mydumper mysql"; apt_packages="mydumper default-mysql-client"; dnf_packages="mariadb105" ;;
  mysqldump) tools="mysqldump mysql"; apt_packages="default-mysql-client"; dnf_packages="mariadb105" ;;
  *) tools="pg_dump psql pg_restore"; apt_packages="postgresql-client"; dnf_packages="postgresql16" ;;
esac
stage="installing the database client tools ($tools), gpg and GPGME"
has_gpgme() { ldconfig -p 2>/dev/null | grep -q 'libgpgme\.so\.11'; }
missing=0
for tool in $tools gpg curl; do
  command -v "$tool" >/dev/null || missing=1
done
has_gpgme || missing=1
if [ "$missing" -eq 1 ]; then
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    # A fresh Ubuntu runs apt-daily and unattended-upgrades at first boot,
    # holding dpkg's lock for minutes; this throwaway machine needs neither.
    systemctl stop apt-daily.timer apt-daily-upgrade.timer apt-daily.service \
      apt-daily-upgrade.service unattended-upgrades.service >/dev/null 2>&1 || true
    # wait for a lock still held (apt >= 1.9.11); retry mirrors that fail
    apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=5 "$@"; }
    for attempt in 1 2 3 4 5; do
      apt_get update -q && break
      [ "$attempt" -eq 5 ] && exit 1
      log "apt-get update failed (attempt $attempt); retrying"
      sleep 10
    done
    # shellcheck disable=SC2086 # word splitting intended: a package list
    apt_get install -y -q $apt_packages gnupg curl ca-certificates
    apt_get install -y -q libgpgme11t64 || apt_get install -y -q libgpgme11
  elif command -v dnf >/dev/null; then
    if [ "$DUMP_MODE" = mydumper ] && ! command -v mydumper >/dev/null; then
      stage="installing mydumper, which Amazon Linux 2023 does not package (use an AMI with it installed, an Ubuntu AMI, or mode mysqldump)"
      exit 1
    fi
    # gpg comes with AL2023's gnupg2-minimal; asking for gnupg2 conflicts
    # with it and fails the whole transaction
    # shellcheck disable=SC2086 # word splitting intended: a package list
    dnf install -y -q --setopt=retries=5 $dnf_packages gpgme ca-certificates
  else
    echo "no supported package manager (apt-get or dnf)" >&2
    exit 1
  fi
fi

stage="fetching the agent"
workdir=$(mktemp -d -t backup-cloud.XXXXXXXX)
agent="$workdir/backup-cloud"
curl -fsS --retry 5 --retry-delay 2 --connect-timeout 10 --max-time "$AGENT_DOWNLOAD_SECS" \
  -o "$agent" "$AGENT_URL"
stage="checking the agent's SHA-256"
printf '%s  %s\n' "$AGENT_SHA256" "$agent" | sha256sum --check --status
chmod 0700 "$agent"

stage="running the agent"
agent_started=1
log "starting the agent for job $JOB_ID"
set +e
"$agent" agent --spec-bucket "$SPEC_BUCKET" --spec-key "$SPEC_KEY"
agent_rc=$?
set -e
if [ "$agent_rc" -ne 0 ] && [ "$agent_rc" -ne "$AGENT_REPORTED_FAILURE" ]; then
  report_failure "the agent exited with code $agent_rc before reporting"
fi
exit "$agent_rc"
