//! Renders the instance's user-data: the bash script that arms the
//! dead-man shutdown, fetches and checks the agent, installs the tools and
//! runs the agent, which also reports a set-up that failed.
//!
//! Quoting is done once, by [`ShellQuote`], which `askama.toml` registers as
//! the escaper for `.sh` templates: every `{{ value }}` is single-quoted
//! whether or not the template author remembered. Values containing NUL are
//! refused (bash cannot hold them), and the result must fit EC2's 16 KB
//! user-data limit.

use askama::Template;

/// EC2's limit on raw user-data.
pub const USER_DATA_LIMIT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UserDataError {
    #[error("user-data value `{field}` contains a NUL byte, which a shell script cannot carry")]
    Nul { field: &'static str },
    #[error("rendering user-data failed: {0}")]
    Render(#[from] askama::Error),
    #[error("user-data is {size} bytes; EC2 accepts at most {USER_DATA_LIMIT}")]
    TooLarge { size: usize },
}

/// Everything the script needs. None of it is secret: the database
/// password is fetched on the instance by name.
#[derive(Debug, Clone, Template)]
#[template(path = "user-data.sh")]
pub struct UserData {
    pub job_id: String,
    pub spec_bucket: String,
    pub spec_key: String,
    pub agent_url: String,
    pub agent_sha256: String,
    pub max_lifetime_minutes: u64,
    /// `curl --max-time` for the agent's download.
    pub agent_download_secs: u64,
    /// Seconds from the script's start within which set-up (the agent's
    /// download and the package installs) must end, failure reported,
    /// before the controller's boot timeout gives up on the instance.
    pub set_up_secs: u64,
    pub region: String,
    /// The job's dump mode (`DumpMode::name`): which client tools to install.
    pub dump_mode: String,
}

impl UserData {
    /// Renders the script, refusing values a shell cannot hold and results
    /// EC2 would refuse.
    pub fn render_script(&self) -> Result<String, UserDataError> {
        let fields: [(&'static str, &str); 7] = [
            ("job_id", &self.job_id),
            ("spec_bucket", &self.spec_bucket),
            ("spec_key", &self.spec_key),
            ("agent_url", &self.agent_url),
            ("agent_sha256", &self.agent_sha256),
            ("region", &self.region),
            ("dump_mode", &self.dump_mode),
        ];
        if let Some((field, _)) = fields.iter().find(|(_, value)| value.contains('\0')) {
            return Err(UserDataError::Nul { field });
        }
        let script = self.render()?;
        if script.len() > USER_DATA_LIMIT {
            return Err(UserDataError::TooLarge { size: script.len() });
        }
        Ok(script)
    }
}

/// Quotes text for bash: wraps it in single quotes, writing each embedded
/// single quote as `'\''`. Inside single quotes bash interprets nothing, so
/// `$(...)`, backticks, `$VAR`, globs and newlines stay literal.
pub fn shell_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    ShellQuote
        .write_quoted(&mut quoted, text)
        .expect("writing to a String cannot fail");
    quoted
}

/// The askama escaper for `.sh` templates (registered in `askama.toml`).
#[derive(Debug, Clone, Copy)]
pub struct ShellQuote;

impl ShellQuote {
    fn write_quoted<W: std::fmt::Write>(&self, mut dest: W, text: &str) -> std::fmt::Result {
        dest.write_char('\'')?;
        for (i, piece) in text.split('\'').enumerate() {
            if i > 0 {
                dest.write_str("'\\''")?;
            }
            dest.write_str(piece)?;
        }
        dest.write_char('\'')
    }
}

impl askama::filters::Escaper for ShellQuote {
    fn write_escaped_str<W: std::fmt::Write>(&self, dest: W, string: &str) -> std::fmt::Result {
        self.write_quoted(dest, string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn sample() -> UserData {
        UserData {
            job_id: "orders-20261127T210000Z-ab12".into(),
            spec_bucket: "backups".into(),
            spec_key: "prod/jobs/orders/orders-20261127T210000Z-ab12/spec.json".into(),
            agent_url: "http://127.0.0.1:4566/backups/agent?X-Amz-Signature=abc&b=c".into(),
            agent_sha256: "0".repeat(64),
            max_lifetime_minutes: 120,
            agent_download_secs: 600,
            set_up_secs: 780,
            region: "us-east-1".into(),
            dump_mode: "pg_dump-custom".into(),
        }
    }

    fn bash_n(script: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user-data");
        std::fs::write(&path, script).unwrap();
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "bash -n failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `bash -c` on an assignment of the quoted value and echoes it back.
    fn round_trip(value: &str) -> String {
        let script = format!("v={}; printf '%s' \"$v\"", shell_quote(value));
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}");
        String::from_utf8(out.stdout).unwrap()
    }

    const HOSTILE: &[&str] = &[
        "",
        "plain",
        "it's",
        "'",
        "''",
        "$(touch /tmp/pwned)",
        "`touch /tmp/pwned`",
        "${HOME}",
        "a\nb; touch /tmp/pwned",
        "\\'; touch /tmp/pwned; echo '",
        "*",
        "-rf /",
        "ünïcödé ✓",
        "\"double\" and 'single'",
    ];

    #[test]
    fn quoting_round_trips_hostile_values_literally() {
        for value in HOSTILE {
            assert_eq!(&round_trip(value), value, "value {value:?}");
        }
        let long = "x'$(y)".repeat(4000);
        assert_eq!(round_trip(&long), long);
    }

    #[test]
    fn rendered_script_passes_bash_n_and_fits() {
        let script = sample().render_script().unwrap();
        bash_n(&script);
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(script.contains("readonly JOB_ID='orders-20261127T210000Z-ab12'"));
        assert!(script.len() < USER_DATA_LIMIT);
    }

    #[test]
    fn the_dead_man_is_armed_before_anything_can_fail() {
        let script = sample().render_script().unwrap();
        let dead_man = script
            .find("shutdown -h \"+$MAX_LIFETIME_MINUTES\"")
            .unwrap();
        let fetch = script.find("curl -fsS").unwrap();
        let first_install = script.find("apt_get update").unwrap();
        assert!(
            dead_man < fetch && fetch < first_install,
            "the dead-man, then the agent (which reports what fails later), then packages"
        );
    }

    #[test]
    fn hostile_values_stay_inert_when_the_script_runs() {
        let canary_dir = tempfile::tempdir().unwrap();
        let canary = canary_dir.path().join("pwned");
        let canary_str = canary.display().to_string();
        for template in HOSTILE {
            let value = template.replace("/tmp/pwned", &canary_str);
            let mut data = sample();
            data.job_id = value.clone();
            data.spec_key = value.clone();
            data.spec_bucket = value.clone();
            data.agent_url = value.clone();
            data.region = value.clone();
            data.dump_mode = value.clone();
            let script = data.render_script().unwrap();
            bash_n(&script);
            // Run the script's assignment block, then print the values back.
            let assignments = &script[..script
                .find("\n# The agent reports")
                .expect("the assignment block ends before this comment")];
            let probe = format!(
                "{assignments}\nprintf '%s\\0%s\\0%s\\0%s\\0%s' \"$JOB_ID\" \"$SPEC_KEY\" \"$SPEC_BUCKET\" \"$AGENT_URL\" \"$AWS_REGION\""
            );
            let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
            assert!(out.status.success(), "{probe}");
            let echoed = String::from_utf8(out.stdout).unwrap();
            let parts: Vec<&str> = echoed.split('\0').collect();
            assert_eq!(parts, vec![value.as_str(); 5], "value {value:?}");
            assert!(!canary.exists(), "injection ran for {value:?}");
        }
    }

    #[test]
    fn the_agent_download_is_bounded_in_time() {
        let mut data = sample();
        data.agent_download_secs = 42;
        let script = data.render_script().unwrap();
        assert!(
            script.contains("readonly AGENT_DOWNLOAD_SECS='42'\n")
                || script.contains("readonly AGENT_DOWNLOAD_SECS=42\n"),
            "{script}"
        );
        let curl = &script[script.find("curl -fsS").unwrap()..];
        let curl = &curl[..curl.find("\"$AGENT_URL\"").unwrap()];
        assert!(
            curl.contains("--max-time \"$AGENT_DOWNLOAD_SECS\"")
                && curl.contains("--retry-max-time \"$AGENT_DOWNLOAD_SECS\""),
            "{curl}"
        );
        let line_start = script[..script.find("curl -fsS").unwrap()]
            .rfind('\n')
            .unwrap();
        assert!(
            script[line_start..]
                .trim_start()
                .starts_with("timeout -k 10 \"$SET_UP_SECS\" curl"),
            "the whole download within the set-up deadline"
        );
    }

    #[test]
    fn only_the_tools_of_the_job_s_engine_are_installed() {
        let mut data = sample();
        data.dump_mode = "mydumper".into();
        let script = data.render_script().unwrap();
        bash_n(&script);
        assert!(script.contains("readonly DUMP_MODE='mydumper'"));
        // the package lists are chosen by the mode inside the script
        let choose = script.find("case \"$DUMP_MODE\" in").unwrap();
        let install = script.find("apt_get install -y -q $apt_packages").unwrap();
        assert!(choose < install);
    }

    /// Runs the rendered set-up (from the set-up's helpers to starting
    /// the agent) of a `mode` job on a machine where only `manager`
    /// (`apt-get` or `dnf`) is there: stand-ins record each call of it and
    /// of `systemctl`; `apt-get update` fails as told by `updates`, one
    /// letter per call until it runs out: `l` with apt's message for a
    /// held lock, `m` as a failing mirror does. The set-up deadline is
    /// `deadline_secs` away. Returns the record, the set-up log and the
    /// exit code.
    fn run_setup(
        mode: &str,
        manager: &str,
        updates: &str,
        deadline_secs: i64,
    ) -> (String, String, Option<i32>) {
        let script = UserData {
            dump_mode: mode.into(),
            ..sample()
        }
        .render_script()
        .unwrap();
        let start = script.find("# Seconds left until").unwrap();
        let end = script.find("stage=\"running the agent\"").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["tee", "tail", "grep", "date", "timeout"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
        }
        let record = dir.path().join("record");
        let set_up_log = dir.path().join("set-up.log");
        let plan = dir.path().join("updates");
        std::fs::write(&plan, updates).unwrap();
        let stub = |name: &str, body: &str| {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        let log = format!("echo \"${{0##*/}} $*\" >> '{}'", record.display());
        stub("systemctl", &log);
        stub("sleep", "");
        stub(
            manager,
            &format!(
                "{log}\ncase \" $* \" in *\" update \"*)\n\
                 p=$(< '{plan}'); printf '%s' \"${{p:1}}\" > '{plan}'\n\
                 case \"${{p:0:1}}\" in\n\
                 l) echo 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)'; exit 100 ;;\n\
                 m) echo 'E: Failed to fetch http://mirror/dists/noble/InRelease'; exit 100 ;;\n\
                 esac ;;\nesac",
                plan = plan.display()
            ),
        );
        let setup = format!(
            "set -euo pipefail\nreadonly DUMP_MODE='{mode}'\nset_up_log='{}'\n\
             set_up_deadline=$(($(date +%s) + {deadline_secs}))\nlog() {{ :; }}\n{}",
            set_up_log.display(),
            &script[start..end]
        );
        let out = Command::new("/bin/bash")
            .arg("-c")
            .arg(&setup)
            .env_clear()
            .env("PATH", &bin)
            .output()
            .unwrap();
        (
            std::fs::read_to_string(&record).unwrap_or_default(),
            std::fs::read_to_string(&set_up_log).unwrap_or_default(),
            out.status.code(),
        )
    }

    #[test]
    fn set_up_waits_for_a_first_boot_s_package_locks_and_retries_mirrors() {
        let (record, set_up_log, code) = run_setup("mydumper", "apt-get", "llm", 600);
        assert_eq!(code, Some(0), "{record}");
        let calls: Vec<&str> = record.lines().collect();
        assert!(
            calls[0]
                .starts_with("systemctl stop --no-block apt-daily.timer apt-daily-upgrade.timer"),
            "the first-boot jobs are stopped before apt runs: {record}"
        );
        let updates = calls.iter().filter(|c| c.ends_with("update -q")).count();
        assert_eq!(
            updates, 4,
            "two held locks, one mirror failure, then success: {record}"
        );
        for call in &calls[1..] {
            assert!(
                call.contains("-o DPkg::Lock::Timeout=600"),
                "every apt-get call waits for the lock: {call}"
            );
        }
        assert!(record.contains("install -y -q mydumper default-mysql-client gnupg"));
        assert!(
            set_up_log.contains("+ apt-get -o DPkg::Lock::Timeout=600")
                && set_up_log.contains("E: Could not get lock"),
            "each command and its output are in the set-up log: {set_up_log}"
        );
        let (record, _, code) = run_setup("pg_dump-custom", "apt-get", &"m".repeat(9), 600);
        assert_eq!(code, Some(1), "a mirror that never answers fails set-up");
        assert_eq!(record.matches("update -q").count(), 5, "{record}");
        // a lock is waited for (60 tries, 10 s apart) without using up the
        // mirror's tries
        let (record, _, code) = run_setup("pg_dump-custom", "apt-get", &"l".repeat(60), 600);
        assert_eq!(code, Some(0), "{record}");
        let (record, _, code) = run_setup("pg_dump-custom", "apt-get", &"l".repeat(70), 600);
        assert_eq!(code, Some(1), "a lock held for good fails set-up");
        assert_eq!(record.matches("update -q").count(), 61, "{record}");
        // nor past the set-up deadline, which the controller's boot
        // timeout leaves room for the report after
        let (record, _, code) = run_setup("pg_dump-custom", "apt-get", &"l".repeat(70), 5);
        assert_eq!(code, Some(1), "{record}");
        assert_eq!(record.matches("update -q").count(), 1, "{record}");
    }

    #[test]
    fn a_set_up_command_is_stopped_at_the_deadline_saying_why() {
        let script = sample().render_script().unwrap();
        let start = script.find("# Seconds left until").unwrap();
        let end = script.find("# Only the client tools").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("set-up.log");
        let probe = format!(
            "set -euo pipefail\nset_up_log='{}'\nset_up_deadline=$(($(date +%s) + 1))\n{}\n\
             logged sleep 30",
            log.display(),
            &script[start..end]
        );
        let started = std::time::Instant::now();
        let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
        assert_eq!(out.status.code(), Some(124));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.starts_with("+ sleep 30\n"), "{log}");
        assert!(log.contains("stopped after 1s"), "{log}");
    }

    #[test]
    fn amazon_linux_gets_only_packages_it_has_and_no_conflict() {
        let (record, _, code) = run_setup("mysqldump", "dnf", "", 600);
        assert_eq!(code, Some(0), "{record}");
        assert_eq!(
            record.trim(),
            "dnf install -y -q --setopt=retries=5 mariadb105"
        );
        // mydumper is not in AL2023's repositories: set-up stops, naming it,
        // rather than failing the whole transaction
        let (record, _, code) = run_setup("mydumper", "dnf", "", 600);
        assert_eq!(code, Some(1));
        assert_eq!(record, "", "no dnf transaction was tried");
    }

    #[test]
    fn nul_is_refused_with_the_field_name() {
        let mut data = sample();
        data.spec_key = "a\0b".into();
        let err = data.render_script().unwrap_err().to_string();
        assert!(err.contains("spec_key"), "{err}");
    }

    #[test]
    fn templates_interpolate_only_on_assignment_lines() {
        let template = include_str!("../userdata-templates/user-data.sh");
        for line in template.lines().filter(|l| l.contains("{{")) {
            let trimmed = line.trim_start();
            assert!(
                trimmed.starts_with("readonly ") || trimmed.starts_with("export "),
                "interpolation outside an assignment: {line}"
            );
            assert!(!line.contains("|safe"), "unquoted interpolation: {line}");
        }
    }
}
