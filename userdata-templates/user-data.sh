#!/bin/bash
# backup-cloud instance user-data. Rendered by the controller; every
# interpolated value is single-quoted by the shell escaper, and values are
# only ever interpolated on assignment lines, never inside comments.
set -euo pipefail
umask 077

readonly JOB_ID={{ job_id }}
readonly SPEC_BUCKET={{ spec_bucket }}
readonly SPEC_KEY={{ spec_key }}
readonly AGENT_URL={{ agent_url }}
readonly AGENT_SHA256={{ agent_sha256 }}
readonly MAX_LIFETIME_MINUTES={{ max_lifetime_minutes }}
readonly AGENT_DOWNLOAD_SECS={{ agent_download_secs }}
readonly SET_UP_SECS={{ set_up_secs }}
export AWS_REGION={{ region }}
readonly DUMP_MODE={{ dump_mode }}
export AWS_DEFAULT_REGION="$AWS_REGION"

# The agent reports its own failures and exits with this code; any other
# non-zero exit means it could not.
readonly AGENT_REPORTED_FAILURE=4

stage="arming the dead-man shutdown"
agent=""
agent_started=0
set_up_log=/dev/null

log() { printf '%s backup-cloud: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

# Puts a failure that happened before the backup started into the job's
# status. The agent does it (it needs nothing of the machine but glibc), so
# it can only once it is fetched; before that, the controller learns of the
# failure from the instance going away.
report_failure() {
  local what=$1 rc=0
  log "failed while $what"
  [ -n "$agent" ] || return 0
  "$agent" agent --spec-bucket "$SPEC_BUCKET" --spec-key "$SPEC_KEY" \
    --report-failure "$what" --set-up-log "$set_up_log" || rc=$?
  [ "$rc" -eq "$AGENT_REPORTED_FAILURE" ] || log "the agent could not report it (exit $rc)"
}

on_exit() {
  local rc=$1
  if [ "$rc" -ne 0 ] && [ "$agent_started" -eq 0 ]; then
    report_failure "$stage (exit $rc)"
  fi
  log "job finished (exit $rc); shutting down"
  shutdown -h now "backup-cloud: job $JOB_ID finished" || true
}
trap 'on_exit $?' EXIT

# Dead-man first: whatever happens next, this machine goes away.
shutdown -h "+$MAX_LIFETIME_MINUTES" "backup-cloud: maximum lifetime reached"

# Set-up ends, reported, before the controller's boot timeout gives up on
# this machine: no wait below outlasts this deadline.
set_up_deadline=$(($(date +%s) + SET_UP_SECS))

# The agent next (only curl is needed, which both supported AMIs have), so
# that every later failure is reported by it.
stage="fetching the agent"
workdir=$(mktemp -d -t backup-cloud.XXXXXXXX)
# each try within AGENT_DOWNLOAD_SECS, no retry begun after that, and the
# whole within the set-up deadline
timeout -k 10 "$SET_UP_SECS" curl -fsS --retry 5 --retry-delay 2 --connect-timeout 10 \
  --max-time "$AGENT_DOWNLOAD_SECS" --retry-max-time "$AGENT_DOWNLOAD_SECS" \
  -o "$workdir/backup-cloud" "$AGENT_URL"
stage="checking the agent's SHA-256"
printf '%s  %s\n' "$AGENT_SHA256" "$workdir/backup-cloud" | sha256sum --check --status
chmod 0700 "$workdir/backup-cloud"
agent="$workdir/backup-cloud"
set_up_log="$workdir/set-up.log"

# Seconds left until the set-up deadline.
left() { echo $((set_up_deadline - $(date +%s))); }
# Runs one set-up command, for no longer than the time left, its output
# to the console and to the set-up log, whose last lines the agent quotes
# if set-up fails.
logged() {
  local secs rc=0
  secs=$(left)
  [ "$secs" -gt 0 ] || secs=1
  (printf '+ %s\n' "$*"; timeout -k 10 "$secs" "$@" || rc=$?
    # 124: stopped; 137: killed, 10 s after it would not stop
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] ||
      echo "backup-cloud: stopped after ${secs}s: set-up must end within the boot timeout"
    exit "$rc") 2>&1 | tee -a "$set_up_log"
}

# Only the client tools the job's dump mode needs.
case "$DUMP_MODE" in
  mydumper) tools="mydumper mysql"; apt_packages="mydumper default-mysql-client"; dnf_packages="mariadb105" ;;
  mysqldump) tools="mysqldump mysql"; apt_packages="default-mysql-client"; dnf_packages="mariadb105" ;;
  *) tools="pg_dump psql pg_restore"; apt_packages="postgresql-client"; dnf_packages="postgresql16" ;;
esac
stage="installing the database client tools ($tools) and gpg"
missing=0
for tool in $tools gpg; do
  command -v "$tool" >/dev/null || missing=1
done
if [ "$missing" -eq 1 ]; then
  if command -v apt-get >/dev/null; then
    # apt's messages in English, for the lock test below and the report
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C
    # A fresh Ubuntu runs apt-daily and unattended-upgrades at first boot,
    # holding apt's and dpkg's locks for minutes; this throwaway machine
    # needs neither. --no-block: an upgrade under way may take minutes to
    # stop, and the lock waits below bound that wait.
    systemctl stop --no-block apt-daily.timer apt-daily-upgrade.timer apt-daily.service \
      apt-daily-upgrade.service unattended-upgrades.service >/dev/null 2>&1 || true
    # DPkg::Lock::Timeout waits for dpkg's lock (apt >= 1.9.11); mirrors
    # that fail are retried
    apt_get() { logged apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=5 "$@"; }
    # The lock of the package lists is not covered by that timeout: while
    # it is held, `update` fails at once, so wait for it as long (600 s,
    # and never past the deadline), apart from the five tries a failing
    # mirror gets.
    failures=0 lock_waits=0
    until apt_get update -q; do
      if tail -n 3 "$set_up_log" | grep -q 'Could not get lock'; then
        [ "$lock_waits" -lt 60 ] && [ "$(left)" -gt 10 ] || exit 1
        lock_waits=$((lock_waits + 1))
      else
        failures=$((failures + 1))
        [ "$failures" -lt 5 ] || exit 1
        log "apt-get update failed (attempt $failures); retrying"
      fi
      sleep 10
    done
    # shellcheck disable=SC2086 # word splitting intended: a package list
    apt_get install -y -q $apt_packages gnupg
  elif command -v dnf >/dev/null; then
    if [ "$DUMP_MODE" = mydumper ] && ! command -v mydumper >/dev/null; then
      stage="installing mydumper, which Amazon Linux 2023 does not package (use an AMI with it installed, an Ubuntu AMI, or mode mysqldump)"
      exit 1
    fi
    # gpg comes with AL2023's gnupg2-minimal; asking for gnupg2 conflicts
    # with it and fails the whole transaction
    # shellcheck disable=SC2086 # word splitting intended: a package list
    logged dnf install -y -q --setopt=retries=5 $dnf_packages
  else
    stage="finding a package manager: neither apt-get nor dnf is here"
    exit 1
  fi
fi

stage="running the agent"
agent_started=1
log "starting the agent for job $JOB_ID"
set +e
"$agent" agent --spec-bucket "$SPEC_BUCKET" --spec-key "$SPEC_KEY"
agent_rc=$?
set -e
if [ "$agent_rc" -ne 0 ] && [ "$agent_rc" -ne "$AGENT_REPORTED_FAILURE" ]; then
  set_up_log=/dev/null
  report_failure "running the agent, which exited with code $agent_rc before reporting"
fi
exit "$agent_rc"
