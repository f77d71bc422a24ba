#!/usr/bin/env python3
"""Instance simulator: plays the hypervisor for EC2 instances launched in LocalStack.

LocalStack's EC2 is an API emulation: nothing boots. This process watches for
instances tagged ``backup-cloud:managed=true`` and, for each new one, fetches
its user-data unchanged and runs it on this machine with ``bash`` in its own
process group (and, when possible, its own mount namespace), with AWS pointed
at LocalStack. Shims (localstack/shims) stand in for shutdown/poweroff/
systemctl/mkfs/mount/apt-get...: shutdown requests are written to
``<instance dir>/shutdown-at`` and acted upon here:

* shutdown time reached  -> kill the script's process group, TerminateInstances
  (InstanceInitiatedShutdownBehavior=terminate: "shutdown -> terminate");
  a reboot request kills the processes and leaves the instance running.
* instance terminated/stopped from outside -> kill its process group.
* user-data exits without a shutdown request -> instance stays running (exit
  code in ``<instance dir>/exit-code``) until its dead-man fires.

Per-instance directory: .state/sim/<instance-id>/ with user-data, console.log,
shims.log, tmp/, exit-code, shutdown-at, shutdown-action, status.

Endpoint override (fault tests): an instance tagged
``backup-cloud-sim:endpoint=http://127.0.0.1:PORT`` gets that URL as its
``AWS_ENDPOINT_URL`` instead of LocalStack's, so a test can route the agent
through localstack/faultproxy.py while user-data and agent stay unchanged.
Only http://127.0.0.1:<port> is honoured: a tag cannot send a script elsewhere.
Likewise ``backup-cloud-sim:minute-seconds=N`` sets that instance's
BACKUP_CLOUD_SIM_MINUTE_SECONDS, for a fast dead-man without affecting other
tests' instances.

AMIs that are root filesystems: an image tagged ``backup-cloud-sim:rootfs=NAME``
boots its instances' user-data in a chroot on a private overlay of
``<state>/rootfs/NAME`` (built by tests/harness/rootfs-up), with that root
filesystem's real package manager; only shutdown/systemctl/mkfs/mount... are
shims there. The image's ``backup-cloud-sim:first-boot-apt-seconds=N`` has apt's
and dpkg's locks held for the first N seconds, as a fresh Ubuntu's apt-daily
and unattended-upgrades do; ``backup-cloud-sim:apt-sources=none`` boots it with
no package sources, as in a private subnet with no mirror. An instance whose
AMI names a root filesystem that is not built fails to boot: it is terminated.

Credentials as on EC2: the script gets no AWS keys. Each instance has its
own IMDSv2 endpoint (localstack/imds.py) on a loopback port, named by
``AWS_EC2_METADATA_SERVICE_ENDPOINT``; it serves the credentials of the role
in the instance's instance profile, minted by the gate as a role session.

Environment:
  BACKUP_CLOUD_SIM_ENDPOINT        default http://127.0.0.1:4566
  BACKUP_CLOUD_SIM_STATE_DIR       default <repo>/.state
  BACKUP_CLOUD_SIM_MINUTE_SECONDS  seconds per "minute" for shutdown +N (default 60);
                                   overridden per launch by the file
                                   <state>/sim/minute-seconds if it exists.
  BACKUP_CLOUD_SIM_POLL_SECONDS    default 0.5
  BACKUP_CLOUD_SIM_CREDENTIAL_SECONDS  lifetime of the role credentials IMDS hands out
                                   (default 900; refreshed with a third of it left)
  BACKUP_CLOUD_SIM_NAMESPACE       1 (default): run scripts under
                                   `unshare --mount` with shims bind-mounted over
                                   the real binaries; 0: PATH shims only.
"""

import base64
import fcntl
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import boto3
import botocore.config
import botocore.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import imds  # noqa: E402

REPO = os.path.dirname(HERE)
SHIM_DIR = os.path.join(HERE, "shims")
SANDBOX = os.path.join(HERE, "sim-sandbox")
ENDPOINT = os.environ.get("BACKUP_CLOUD_SIM_ENDPOINT", "http://127.0.0.1:4566")
STATE_DIR = os.environ.get("BACKUP_CLOUD_SIM_STATE_DIR", os.path.join(REPO, ".state"))
SIM_DIR = os.path.join(STATE_DIR, "sim")
REGION = "us-east-1"
ACCOUNT = "000000000000"
CREDENTIAL_SECONDS = int(os.environ.get("BACKUP_CLOUD_SIM_CREDENTIAL_SECONDS", "900"))
POLL = float(os.environ.get("BACKUP_CLOUD_SIM_POLL_SECONDS", "0.5"))
KILL_GRACE = 3.0
MANAGED_TAG = "backup-cloud:managed"
GONE_STATES = {"shutting-down", "terminated", "stopping", "stopped"}
ENDPOINT_TAG = "backup-cloud-sim:endpoint"
MINUTE_TAG = "backup-cloud-sim:minute-seconds"
LOOPBACK_URL = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}$")
ROOTFS_TAG = "backup-cloud-sim:rootfs"
FIRST_BOOT_APT_TAG = "backup-cloud-sim:first-boot-apt-seconds"
APT_SOURCES_TAG = "backup-cloud-sim:apt-sources"
ROOTFS_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
ROOTFS_DIR = os.path.join(STATE_DIR, "rootfs")
ROOTFS_STAMP = ".backup-cloud-rootfs"

stop_requested = threading.Event()


def log(msg):
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    print(f"{ts} {msg}", flush=True)


def minute_seconds():
    path = os.path.join(SIM_DIR, "minute-seconds")
    try:
        with open(path) as f:
            v = f.read().strip()
        if v:
            float(v)
            return v
    except (OSError, ValueError):
        pass
    v = os.environ.get("BACKUP_CLOUD_SIM_MINUTE_SECONDS", "60")
    try:
        float(v)
    except ValueError:
        v = "60"
    return v


def namespace_works():
    if os.environ.get("BACKUP_CLOUD_SIM_NAMESPACE", "1") != "1":
        return False
    try:
        r = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
        )
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def write_file(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def pg_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Instance:
    def __init__(self, iid):
        self.id = iid
        self.dir = os.path.join(SIM_DIR, iid)
        self.proc = None          # subprocess.Popen of the user-data (None if adopted/no user-data)
        self.pgid = None
        self.exit_code = None
        self.phase = "running"    # running | killing | terminating | done
        self.kill_started = 0.0
        self.after_kill = None    # "terminate" | "reboot" | None (gone from outside)
        self.last_terminate_try = 0.0
        self.imds = None          # its IMDS server while it runs

    def stop_imds(self):
        if self.imds is not None:
            self.imds.shutdown()
            self.imds.server_close()
            self.imds = None

    def set_status(self, status):
        try:
            write_file(os.path.join(self.dir, "status"), status + "\n")
        except OSError:
            pass

    def shutdown_request(self):
        try:
            with open(os.path.join(self.dir, "shutdown-at")) as f:
                at = float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        action = "poweroff"
        try:
            with open(os.path.join(self.dir, "shutdown-action")) as f:
                action = f.read().strip() or "poweroff"
        except OSError:
            pass
        return at, action

    def reap(self):
        if self.proc is not None and self.exit_code is None:
            rc = self.proc.poll()
            if rc is not None:
                rc = rc if rc >= 0 else 128 - rc  # killed by signal N -> 128+N, like a shell
                self.exit_code = rc
                write_file(os.path.join(self.dir, "exit-code"), f"{rc}\n")
                log(f"{self.id}: user-data exited with code {rc}")
                if self.phase == "running":
                    self.set_status("running (user-data exited)")

    def start_kill(self, why, after):
        self.phase = "killing"
        self.after_kill = after
        self.kill_started = time.monotonic()
        if self.pgid is not None and pg_alive(self.pgid):
            log(f"{self.id}: {why}: SIGTERM to process group {self.pgid}")
            try:
                os.killpg(self.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        else:
            log(f"{self.id}: {why}: no processes left")

    def step_kill(self):
        """Returns True when the process group is gone."""
        self.reap()
        if self.pgid is None or not pg_alive(self.pgid):
            return True
        if time.monotonic() - self.kill_started >= KILL_GRACE:
            log(f"{self.id}: SIGKILL to process group {self.pgid}")
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
            self.reap()
            return not pg_alive(self.pgid)
        return False


class Simulator:
    def __init__(self):
        cfg = botocore.config.Config(
            region_name=REGION,
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        admin = dict(endpoint_url=ENDPOINT, region_name=REGION,
                     aws_access_key_id="test", aws_secret_access_key="test", config=cfg)
        self.ec2 = boto3.client("ec2", **admin)
        self.iam = boto3.client("iam", **admin)
        self.instances = {}
        self.sim_tags = {}  # instance id -> {backup-cloud-sim:* tag: value}
        self.profiles = {}  # instance id -> instance profile ARN
        self.images = {}  # instance id -> AMI id
        self.image_env = {}  # AMI id -> extra environment for sim-sandbox, or an error
        self.use_ns = namespace_works()
        self.base_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
        # never hand our own venv to the scripts
        venv_bin = os.path.dirname(sys.executable)
        if os.path.exists(os.path.join(venv_bin, "activate")):
            self.base_path = ":".join(p for p in self.base_path.split(":") if p and p != venv_bin)
        os.makedirs(SIM_DIR, exist_ok=True)
        self.adopt_existing()

    def adopt_existing(self):
        """After a simulator restart: never re-run a script, but keep honouring
        shutdown requests (e.g. the dead-man) of instances started earlier."""
        for iid in sorted(os.listdir(SIM_DIR)):
            d = os.path.join(SIM_DIR, iid)
            if not iid.startswith("i-") or not os.path.isdir(d):
                continue
            inst = Instance(iid)
            try:
                with open(os.path.join(d, "status")) as f:
                    st = f.read().strip()
            except OSError:
                st = ""
            if st.startswith("terminated") or st.startswith("gone") or st.startswith("skipped"):
                inst.phase = "done"
            self.instances[iid] = inst
        live = sum(1 for i in self.instances.values() if i.phase != "done")
        if self.instances:
            log(f"adopted {len(self.instances)} instance dirs from earlier runs ({live} not finished); they are never re-run")

    # --- LocalStack -------------------------------------------------------
    def describe_managed(self):
        """Returns {instance_id: state} for all managed instances (any state),
        and remembers each one's backup-cloud-sim:* tags in self.sim_tags."""
        states = {}
        pager = self.ec2.get_paginator("describe_instances")
        for page in pager.paginate(Filters=[{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]):
            for res in page.get("Reservations", []):
                for i in res.get("Instances", []):
                    states[i["InstanceId"]] = i.get("State", {}).get("Name", "unknown")
                    self.profiles[i["InstanceId"]] = (i.get("IamInstanceProfile") or {}).get("Arn")
                    self.images[i["InstanceId"]] = i.get("ImageId")
                    self.sim_tags[i["InstanceId"]] = {
                        t.get("Key"): t.get("Value", "") for t in i.get("Tags", [])
                        if t.get("Key") in (ENDPOINT_TAG, MINUTE_TAG)
                    }
        return states

    def fetch_user_data(self, iid):
        r = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        v = (r.get("UserData") or {}).get("Value")
        if not v:
            return None
        data = base64.b64decode(v)
        if data[:2] == b"\x1f\x8b":  # cloud-init accepts gzip'd user-data
            data = gzip.decompress(data)
        return data

    def role_of_profile(self, profile_arn):
        """The role name in an instance profile (None: no such profile, or no role in it)."""
        try:
            profile = self.iam.get_instance_profile(InstanceProfileName=profile_arn.rsplit("/", 1)[-1])
        except botocore.exceptions.ClientError as e:
            log(f"instance profile {profile_arn}: {e}")
            return None
        roles = profile["InstanceProfile"].get("Roles", [])
        return roles[0]["RoleName"] if roles else None

    def boot_environment(self, ami):
        """What an AMI means to sim-sandbox: {} for this machine, the rootfs
        variables for an image tagged backup-cloud-sim:rootfs, or a string
        saying why it cannot boot."""
        if ami in self.image_env:
            return self.image_env[ami]
        try:
            images = self.ec2.describe_images(ImageIds=[ami]).get("Images", []) if ami else []
        except botocore.exceptions.ClientError as e:
            # LocalStack launches instances of AMIs it does not list (EC2
            # would refuse them): those boot on this machine, as before
            if not e.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
                raise
            images = []
        tags = {t.get("Key"): t.get("Value", "") for im in images for t in im.get("Tags", [])}
        name = tags.get(ROOTFS_TAG)
        if name is None:
            env = {}
        elif not ROOTFS_NAME.match(name):
            env = f"AMI {ami}: tag {ROOTFS_TAG}={name!r} is not a root filesystem name"
        elif not os.path.exists(os.path.join(ROOTFS_DIR, name, ROOTFS_STAMP)):
            env = f"AMI {ami}: root filesystem {name} is not built (tests/harness/rootfs-up {name})"
        elif not self.use_ns:
            env = f"AMI {ami}: a root filesystem needs a private mount namespace (unshare)"
        else:
            env = {"BACKUP_CLOUD_SIM_ROOTFS": os.path.join(ROOTFS_DIR, name)}
            seconds = tags.get(FIRST_BOOT_APT_TAG, "0")
            if re.fullmatch(r"[0-9]{1,4}", seconds):
                env["BACKUP_CLOUD_SIM_FIRST_BOOT_APT_SECONDS"] = seconds
            if tags.get(APT_SOURCES_TAG) == "none":
                env["BACKUP_CLOUD_SIM_APT_SOURCES"] = "none"
        if not isinstance(env, str):  # a root filesystem may be built later
            self.image_env[ami] = env
        return env

    def start_imds(self, inst):
        inst.imds = imds.start(imds.Metadata(
            inst.id, REGION, ACCOUNT, self.profiles.get(inst.id), self.role_of_profile, ENDPOINT,
            CREDENTIAL_SECONDS))
        return f"http://127.0.0.1:{inst.imds.server_address[1]}"

    # --- launching ----------------------------------------------------------
    def launch(self, iid):
        inst = Instance(iid)
        self.instances[iid] = inst  # before anything can fail: never run twice
        os.makedirs(inst.dir, exist_ok=True)
        try:
            data = self.fetch_user_data(iid)
        except Exception as e:  # noqa: BLE001
            # keep it unseen so that the next loop retries the fetch
            del self.instances[iid]
            log(f"{iid}: could not fetch user-data ({e}); will retry")
            return
        if data is None:
            log(f"{iid}: no user-data; nothing to run (instance stays running)")
            inst.set_status("running (no user-data)")
            return
        ud_path = os.path.join(inst.dir, "user-data")
        with open(ud_path, "wb") as f:
            f.write(data)
        os.chmod(ud_path, 0o700)
        head = data[:200].lstrip()
        if not head.startswith(b"#!"):
            log(f"{iid}: WARNING: user-data does not start with '#!' (first bytes {head[:40]!r}); "
                "running it with bash anyway")
        tmp = os.path.join(inst.dir, "tmp")
        os.makedirs(tmp, exist_ok=True)
        tags = self.sim_tags.get(iid, {})
        mins = minute_seconds()
        if MINUTE_TAG in tags:
            try:
                if float(tags[MINUTE_TAG]) > 0:
                    mins = tags[MINUTE_TAG]
            except ValueError:
                log(f"{iid}: ignoring tag {MINUTE_TAG}={tags[MINUTE_TAG]!r}: not a number")
        endpoint = ENDPOINT
        override = tags.get(ENDPOINT_TAG)
        if override is not None:
            if LOOPBACK_URL.match(override):
                endpoint = override
                log(f"{iid}: AWS endpoint overridden by tag {ENDPOINT_TAG}: {endpoint}")
            else:
                log(f"{iid}: ignoring tag {ENDPOINT_TAG}={override!r}: only http://127.0.0.1:PORT is allowed")
        try:
            boot = self.boot_environment(self.images.get(iid))
        except Exception as e:  # noqa: BLE001
            del self.instances[iid]
            log(f"{iid}: could not describe its AMI ({e}); will retry")
            return
        if isinstance(boot, str):
            log(f"{iid}: does not boot: {boot}")
            with open(os.path.join(inst.dir, "console.log"), "a") as console:
                console.write(f"simulator: the instance does not boot: {boot}\n")
            inst.set_status("not booted")
            inst.phase = "terminating"
            return
        imds_url = self.start_imds(inst)
        env = {
            "PATH": f"{SHIM_DIR}:{self.base_path}",
            "HOME": inst.dir,
            "TMPDIR": tmp,
            "USER": "root",
            "LOGNAME": "root",
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": endpoint,
            # no keys: the credential chain finds the role's through IMDS, as on EC2
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_url,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv4",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "BACKUP_CLOUD_SIM_INSTANCE_DIR": inst.dir,
            "BACKUP_CLOUD_SIM_INSTANCE_ID": iid,
            "BACKUP_CLOUD_SIM_MINUTE_SECONDS": mins,
            "BACKUP_CLOUD_SIM_SHIM_DIR": SHIM_DIR,
        }
        if os.environ.get("PYENV_ROOT"):
            env["PYENV_ROOT"] = os.environ["PYENV_ROOT"]  # keeps pyenv shims (aws CLI) working with HOME changed
        env.update(boot)
        if self.use_ns:
            if not boot:
                env["BACKUP_CLOUD_SIM_BIND_SHIMS"] = "1"
            cmd = ["unshare", "--mount", "--propagation", "private", "--", "bash", SANDBOX, ud_path]
        else:
            cmd = ["bash", SANDBOX, ud_path]
        console = open(os.path.join(inst.dir, "console.log"), "ab")
        try:
            inst.proc = subprocess.Popen(
                cmd, cwd=inst.dir, env=env, stdin=subprocess.DEVNULL,
                stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as e:
            log(f"{iid}: could not start user-data: {e}")
            inst.set_status("skipped (could not start)")
            inst.phase = "done"
            inst.stop_imds()
            return
        finally:
            console.close()
        inst.pgid = inst.proc.pid
        inst.set_status("running")
        log(f"{iid}: started user-data ({len(data)} bytes) pid/pgid {inst.pgid}, "
            f"minute={mins}s, namespace={'yes' if self.use_ns else 'no'}, "
            f"root {boot.get('BACKUP_CLOUD_SIM_ROOTFS', 'this machine')}, dir {inst.dir}, IMDS {imds_url}")

    # --- main loop ----------------------------------------------------------
    def terminate_in_localstack(self, inst):
        inst.last_terminate_try = time.monotonic()
        try:
            self.ec2.terminate_instances(InstanceIds=[inst.id])
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code.startswith("InvalidInstanceID"):
                log(f"{inst.id}: TerminateInstances: instance unknown to LocalStack ({code}); done")
            else:
                log(f"{inst.id}: TerminateInstances failed ({e}); will retry")
                return False
        except Exception as e:  # noqa: BLE001
            log(f"{inst.id}: TerminateInstances failed ({e}); will retry")
            return False
        log(f"{inst.id}: TerminateInstances called (shutdown -> terminate)")
        inst.set_status("terminated (shutdown)")
        return True

    def step(self, states):
        now = time.time()
        for iid, st in states.items():
            if iid not in self.instances and st in ("pending", "running"):
                self.launch(iid)
        for inst in list(self.instances.values()):
            if inst.phase == "done":
                continue
            inst.reap()
            st = states.get(inst.id)
            if inst.phase == "running":
                gone = st in GONE_STATES or inst.id not in states
                if gone:
                    why = f"instance is {st or 'gone from LocalStack'} (from outside)"
                    inst.start_kill(why, None)
                    inst.set_status(f"gone ({st or 'unknown to LocalStack'})")
                else:
                    req = inst.shutdown_request()
                    if req is not None and now >= req[0]:
                        action = req[1]
                        after = "reboot" if action == "reboot" else "terminate"
                        inst.start_kill(f"{action} requested for {req[0]:.0f} is due", after)
            if inst.phase == "killing" and inst.step_kill():
                if inst.after_kill == "terminate":
                    inst.phase = "terminating"
                elif inst.after_kill == "reboot":
                    log(f"{inst.id}: rebooted: processes killed, instance stays running "
                        "(user-data runs only on first boot)")
                    for f in ("shutdown-at", "shutdown-action"):
                        try:
                            os.unlink(os.path.join(inst.dir, f))
                        except OSError:
                            pass
                    inst.set_status("running (rebooted)")
                    inst.phase = "running"
                    inst.pgid = None
                else:
                    log(f"{inst.id}: processes gone")
                    inst.phase = "done"
            if inst.phase == "terminating":
                if st in ("terminated", "shutting-down"):
                    inst.phase = "done"
                    inst.set_status("terminated (shutdown)")
                elif time.monotonic() - inst.last_terminate_try >= 2.0:
                    if self.terminate_in_localstack(inst):
                        inst.phase = "done"
            if inst.phase == "done":
                inst.stop_imds()
                # the instance's disk goes with it (the agent binary alone is
                # tens of MB per instance; a full test run launches hundreds)
                # (on a thread: a root filesystem's overlay holds thousands of
                # files, and this loop must keep noticing other instances)
                for disk in ("tmp", "root"):
                    threading.Thread(
                        target=shutil.rmtree, args=(os.path.join(inst.dir, disk),),
                        kwargs={"ignore_errors": True}, daemon=True).start()

    def run(self):
        log(f"simulator started: endpoint {ENDPOINT}, state {SIM_DIR}, shims {SHIM_DIR}, "
            f"namespace isolation {'on' if self.use_ns else 'off'}, "
            f"minute={minute_seconds()}s, poll={POLL}s")
        errors = 0
        while not stop_requested.is_set():
            try:
                states = self.describe_managed()
                if errors:
                    log(f"LocalStack reachable again after {errors} failed polls")
                errors = 0
            except Exception as e:  # noqa: BLE001
                errors += 1
                if errors == 1 or errors % 20 == 0:
                    log(f"DescribeInstances failed ({type(e).__name__}: {e}); retrying")
                states = None
            try:
                if states is None:
                    self.step_local_only()
                else:
                    self.step(states)
            except Exception as e:  # noqa: BLE001
                log(f"loop error: {type(e).__name__}: {e}")
            stop_requested.wait(POLL)
        self.shutdown_all()

    def step_local_only(self):
        """LocalStack unreachable: still reap, finish kills and honour shutdown requests."""
        now = time.time()
        for inst in self.instances.values():
            if inst.phase == "done":
                continue
            inst.reap()
            if inst.phase == "running":
                req = inst.shutdown_request()
                if req is not None and now >= req[0]:
                    inst.start_kill(f"{req[1]} requested for {req[0]:.0f} is due",
                                    "reboot" if req[1] == "reboot" else "terminate")
            if inst.phase == "killing" and inst.step_kill():
                inst.phase = "terminating" if inst.after_kill == "terminate" else "done"

    def shutdown_all(self):
        log("SIGTERM: killing all running user-data scripts")
        live = [i for i in self.instances.values() if i.pgid is not None and pg_alive(i.pgid)]
        for i in live:
            try:
                os.killpg(i.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline:
            for i in live:
                i.reap()
            if not any(pg_alive(i.pgid) for i in live):
                break
            time.sleep(0.1)
        for i in live:
            if pg_alive(i.pgid):
                try:
                    os.killpg(i.pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            i.reap()
            i.set_status("killed (simulator stopped)")
            i.stop_imds()
        log("simulator stopped")


def main():
    os.makedirs(SIM_DIR, exist_ok=True)
    # One simulator per LocalStack endpoint on this machine: two would run every
    # instance twice.
    port = ENDPOINT.rsplit(":", 1)[-1].strip("/")
    lock_path = f"/tmp/backup-cloud-simulator-{port}.lock"
    lock = open(lock_path, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        log(f"another simulator already serves {ENDPOINT} ({lock.read().strip()}); exiting")
        sys.exit(3)
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} state {STATE_DIR}\n")
    lock.flush()

    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())
    Simulator().run()


if __name__ == "__main__":
    main()
