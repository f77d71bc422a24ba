//! The IAM documents in `policies/` against the code that needs them.
//!
//! Least privilege rots in two directions: someone adds an AWS call and
//! the policy no longer lets it run, or someone removes one and the policy
//! keeps granting it. This test reads every AWS SDK operation the source
//! calls (operation names come from the SDK crates themselves), maps each
//! to the IAM actions it needs and to the actor that runs it (`src/agent/`
//! runs on the instance, shared modules on both sides, everything else in
//! the controller), and requires the matching policy to grant exactly
//! that set — no more, no less — on the resources the code touches, and
//! not on the ones it must not touch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use backup_cloud::config::{DEFAULT_AMI_PARAMETER, DEFAULT_STATUS_PREFIX};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Controller,
    Instance,
    Restore,
}

impl Role {
    fn policy_file(self) -> &'static str {
        match self {
            Role::Controller => "policies/controller.json",
            Role::Instance => "policies/instance.json",
            Role::Restore => "policies/restore.json",
        }
    }
}

/// Who runs the code in `path` (relative to `src/`).
fn roles_for(path: &str) -> Vec<Role> {
    if path.starts_with("agent/") {
        vec![Role::Instance]
    } else if path.starts_with("restore/") {
        // verify, restore and export run wherever the backups are read
        vec![Role::Restore]
    } else if path == "status_store.rs" || path == "aws.rs" {
        // the status document is read and written by both sides
        vec![Role::Controller, Role::Instance]
    } else {
        vec![Role::Controller]
    }
}

const SERVICES: [(&str, &str); 3] = [
    ("aws-sdk-s3", "s3"),
    ("aws-sdk-ssm", "ssm"),
    ("aws-sdk-ec2", "ec2"),
];

/// Where cargo unpacked `crate_name` at the version Cargo.lock pins.
fn sdk_source_dir(crate_name: &str) -> PathBuf {
    let lock = std::fs::read_to_string(Path::new(ROOT).join("Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains(&format!("name = \"{crate_name}\"\n")))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{crate_name} is not in Cargo.lock"));
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let registry = cargo_home.join("registry/src");
    std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("{}: {e}", registry.display()))
        .map(|index| {
            index
                .unwrap()
                .path()
                .join(format!("{crate_name}-{version}"))
        })
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "{crate_name} {version} is not unpacked under {}",
                registry.display()
            )
        })
}

/// Operation names (snake_case, as the fluent client spells them) of each
/// SDK crate, read from its `src/operation/` directory.
fn sdk_operations() -> BTreeMap<String, Vec<&'static str>> {
    let mut operations: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for (crate_name, service) in SERVICES {
        let dir = sdk_source_dir(crate_name).join("src/operation");
        let mut found = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                operations.entry(name).or_default().push(service);
                found += 1;
            }
        }
        assert!(
            found > 10,
            "{crate_name}: only {found} operations found in {}",
            dir.display()
        );
    }
    operations
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source text without `//` comments, so documentation naming an
/// operation does not count as calling it.
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.name()` call in `code` whose name is an SDK operation.
fn called_operations<'a>(
    code: &str,
    operations: &'a BTreeMap<String, Vec<&'static str>>,
) -> Vec<(&'a str, &'static str)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = code[i..].find("()") {
        let end = i + offset;
        let mut start = end;
        while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            start -= 1;
        }
        if start > 0 && bytes[start - 1] == b'.' {
            if let Some((name, services)) = operations.get_key_value(&code[start..end]) {
                assert_eq!(
                    services.len(),
                    1,
                    "`.{name}()` exists in several SDKs ({services:?}); teach this test which one is meant"
                );
                found.push((name.as_str(), services[0]));
            }
        }
        i = end + 2;
    }
    found
}

/// The IAM actions an SDK operation needs, by the service authorization
/// reference (multipart parts are PutObject, HeadObject is GetObject, ...).
fn iam_actions(service: &str, operation: &str) -> Vec<String> {
    let special: &[&str] = match (service, operation) {
        ("s3", "head_object") => &["s3:GetObject"],
        ("s3", "list_objects_v2" | "list_objects") => &["s3:ListBucket"],
        ("s3", "create_multipart_upload" | "upload_part" | "complete_multipart_upload") => {
            &["s3:PutObject"]
        }
        ("s3", "list_multipart_uploads") => &["s3:ListBucketMultipartUploads"],
        ("s3", "list_parts") => &["s3:ListMultipartUploadParts"],
        ("s3", "delete_objects") => &["s3:DeleteObject"],
        _ => &[],
    };
    if !special.is_empty() {
        return special.iter().map(|s| s.to_string()).collect();
    }
    let pascal: String = operation
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    vec![format!("{service}:{pascal}")]
}

/// Actions a call needs because of how it is made, not what it is called.
fn implied_actions(code: &str) -> Vec<&'static str> {
    let mut implied = Vec::new();
    if code.contains(".run_instances()") {
        if code.contains(".tag_specifications(") {
            implied.push("ec2:CreateTags");
        }
        if code.contains(".iam_instance_profile(") {
            implied.push("iam:PassRole");
        }
    }
    if code.contains(".with_decryption(true)") {
        implied.push("kms:Decrypt");
    }
    // `.object_lock_mode(x)` or `.set_object_lock_mode(Some(x))`
    if code.contains("object_lock_mode(") || code.contains("object_lock_retain_until_date(") {
        implied.push("s3:PutObjectRetention");
    }
    implied
}

/// The one S3 client every actor goes through (relative to `src/`).
const S3_MODULE: &str = "s3.rs";

/// The functions of the S3 module that make AWS calls, with the IAM
/// actions each needs, its calls of its own functions followed.
fn s3_module_methods(
    code: &str,
    operations: &BTreeMap<String, Vec<&'static str>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let starts: Vec<usize> = code.match_indices("fn ").map(|(i, _)| i).collect();
    let mut bodies: BTreeMap<String, &str> = BTreeMap::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(code.len());
        let name: String = code[start + 3..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        bodies.insert(name, &code[start..end]);
    }
    let direct = |body: &str| -> BTreeSet<String> {
        let mut needs: BTreeSet<String> = called_operations(body, operations)
            .into_iter()
            .flat_map(|(op, service)| iam_actions(service, op))
            .collect();
        needs.extend(implied_actions(body).into_iter().map(str::to_owned));
        needs
    };
    let mut methods: BTreeMap<String, BTreeSet<String>> = bodies
        .iter()
        .map(|(name, body)| (name.clone(), direct(body)))
        .collect();
    // follow calls inside the module until nothing changes
    loop {
        let mut changed = false;
        for (name, body) in &bodies {
            for (callee, _) in bodies.iter().filter(|(callee, _)| *callee != name) {
                if body.contains(&format!(".{callee}(")) || body.contains(&format!("::{callee}(")) {
                    let needs = methods[callee].clone();
                    let entry = methods.get_mut(name).unwrap();
                    let before = entry.len();
                    entry.extend(needs);
                    changed |= entry.len() != before;
                }
            }
        }
        if !changed {
            break;
        }
    }
    methods.retain(|_, needs| !needs.is_empty());
    assert!(
        methods.contains_key("put") && methods.contains_key("get"),
        "the S3 module's methods were not found: {methods:?}"
    );
    methods
}

/// Object Lock: needed only by callers that hand the S3 module a lock.
const RETENTION: &str = "s3:PutObjectRetention";

/// Whether `code` calls the S3 module's `method`. A multipart upload's
/// methods have names many types share (`create`, `abort`, `complete`):
/// they count only in code that names `MultipartUpload`.
fn calls_s3_method(code: &str, method: &str) -> bool {
    let called = code.contains(&format!(".{method}(")) || code.contains(&format!("::{method}("));
    let multipart = matches!(
        method,
        "create" | "abort" | "complete" | "upload_part" | "upload_parts"
    );
    called && (!multipart || code.contains("MultipartUpload"))
}

/// What each role needs, with where the need comes from.
fn required_actions() -> BTreeMap<Role, BTreeMap<String, BTreeSet<String>>> {
    let operations = sdk_operations();
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let s3_methods = s3_module_methods(&code_of(&src.join(S3_MODULE)), &operations);
    let mut required: BTreeMap<Role, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if relative == S3_MODULE {
            // its operations count for the actors that call its methods
            continue;
        }
        let code = code_of(&file);
        let mut actions: Vec<(String, String)> = Vec::new();
        for (op, service) in called_operations(&code, &operations) {
            for action in iam_actions(service, op) {
                actions.push((action, format!("{relative}: .{op}()")));
            }
        }
        actions.extend(
            implied_actions(&code)
                .into_iter()
                .map(|a| (a.to_owned(), format!("{relative}: implied"))),
        );
        for (method, needs) in &s3_methods {
            if calls_s3_method(&code, method) {
                actions.extend(
                    needs
                        .iter()
                        .filter(|a| *a != RETENTION || code.contains("ObjectLock"))
                        .map(|a| (a.clone(), format!("{relative}: {S3_MODULE} {method}"))),
                );
            }
        }
        for role in roles_for(&relative) {
            for (action, why) in &actions {
                required
                    .entry(role)
                    .or_default()
                    .entry(action.clone())
                    .or_default()
                    .insert(why.clone());
            }
        }
    }
    required
}

// ---- a small IAM evaluator ------------------------------------------------

fn policy(file: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// IAM wildcard match: `*` any run, `?` any one character.
fn glob(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn statements(document: &Value) -> Vec<&Value> {
    match &document["Statement"] {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    }
}

/// The statements with `effect` that apply to `action` on `resource`
/// (conditions aside).
fn applying<'a>(document: &'a Value, effect: &str, action: &str, resource: &str) -> Vec<&'a Value> {
    statements(document)
        .into_iter()
        .filter(|s| s["Effect"] == effect)
        .filter(|s| strings(&s["Action"]).iter().any(|a| glob(a, action, true)))
        .filter(|s| {
            strings(&s["Resource"])
                .iter()
                .any(|r| glob(r, resource, false))
        })
        .collect()
}

/// The Allow statements granting `action` on `resource` (conditions aside).
fn granting<'a>(document: &'a Value, action: &str, resource: &str) -> Vec<&'a Value> {
    applying(document, "Allow", action, resource)
}

fn granted_actions(document: &Value) -> BTreeSet<String> {
    statements(document)
        .into_iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| strings(&s["Action"]))
        .collect()
}

// ---- the resources the code touches ------------------------------------------

const BUCKET: &str = "arn:aws:s3:::BUCKET";

fn object(key: &str) -> String {
    format!("{BUCKET}/PREFIX/{key}")
}

fn parameter(name: &str) -> String {
    let account = if name.starts_with("/aws/service/") {
        ""
    } else {
        "ACCOUNT"
    };
    format!("arn:aws:ssm:us-east-1:{account}:parameter{name}")
}

fn status_parameter() -> String {
    parameter(&format!("{DEFAULT_STATUS_PREFIX}/orders"))
}

/// For each role and action the code needs: resources it must be granted
/// on, and resources it must not be.
fn resources(role: Role, action: &str) -> Option<(Vec<String>, Vec<String>)> {
    let backup = object("backup/orders/20261127T210000Z/pg_dump.custom.gpg");
    let manifest = object("backup/orders/20261127T210000Z/manifest.json");
    let spec = object("jobs/orders/orders-1/spec.json");
    let agent = object("agent/0123abcd/backup-cloud");
    let public_key = object("config/public-keys/holder.asc");
    let secret = parameter("/backup-cloud/secrets/orders");
    let instance = "arn:aws:ec2:us-east-1:ACCOUNT:instance/i-0123abcd".to_owned();
    let some_role = "arn:aws:iam::ACCOUNT:role/admin".to_owned();
    let v = |items: &[&String]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Some(match (role, action) {
        (Role::Controller, "ssm:GetParameter") => (
            v(&[&parameter(DEFAULT_AMI_PARAMETER), &status_parameter()]),
            v(&[&secret]),
        ),
        (Role::Controller, "ssm:PutParameter") => (v(&[&status_parameter()]), v(&[&secret])),
        (Role::Controller, "s3:PutObject") => {
            (v(&[&agent, &spec]), v(&[&backup, &manifest, &public_key]))
        }
        (Role::Controller, "s3:AbortMultipartUpload") => {
            (v(&[&backup]), v(&[&spec, &agent, &public_key]))
        }
        (Role::Controller, "s3:ListBucket") => (vec![BUCKET.into()], vec![]),
        (Role::Controller, "s3:ListBucketMultipartUploads") => (vec![BUCKET.into()], vec![]),
        (Role::Controller, "s3:GetObject") => (v(&[&agent, &manifest]), v(&[&public_key])),
        (Role::Controller, "ec2:RunInstances") => (
            v(&[
                &instance,
                &"arn:aws:ec2:us-east-1::image/ami-0123abcd".to_owned(),
            ]),
            vec![],
        ),
        (Role::Controller, "ec2:CreateTags" | "ec2:TerminateInstances") => {
            (v(&[&instance]), vec![])
        }
        (Role::Controller, "ec2:DescribeInstances") => (vec!["*".into()], vec![]),
        (Role::Controller, "iam:PassRole") => (
            vec!["arn:aws:iam::ACCOUNT:role/backup-cloud-agent".into()],
            v(&[&some_role]),
        ),
        (Role::Instance, "s3:GetObject") => (v(&[&spec, &public_key, &backup]), v(&[&agent])),
        (Role::Instance, "s3:ListBucket") => (vec![BUCKET.into()], vec![]),
        (Role::Instance, "s3:PutObject" | "s3:AbortMultipartUpload" | "s3:PutObjectRetention") => {
            (v(&[&backup, &manifest]), v(&[&spec, &agent, &public_key]))
        }
        (Role::Instance, "ssm:GetParameter") => (
            v(&[&status_parameter(), &secret]),
            v(&[&parameter("/other-team/secret")]),
        ),
        (Role::Instance, "ssm:PutParameter") => (v(&[&status_parameter()]), v(&[&secret])),
        (Role::Restore, "s3:GetObject") => (v(&[&backup, &manifest]), v(&[&spec, &agent])),
        (Role::Restore, "s3:ListBucket") => (vec![BUCKET.into()], vec![]),
        (Role::Instance, "kms:Decrypt") => (
            vec!["arn:aws:kms:us-east-1:ACCOUNT:key/KMS_KEY_ID".into()],
            vec![],
        ),
        _ => return None,
    })
}

#[test]
fn the_scan_finds_the_calls_we_know_about() {
    // a guard against the scanner silently finding nothing
    let required = required_actions();
    let controller = &required[&Role::Controller];
    let instance = &required[&Role::Instance];
    for action in [
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "s3:PutObject",
        "iam:PassRole",
    ] {
        assert!(
            controller.contains_key(action),
            "controller: {action} not found: {controller:?}"
        );
    }
    for action in [
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "kms:Decrypt",
    ] {
        assert!(
            instance.contains_key(action),
            "instance: {action} not found: {instance:?}"
        );
    }
    assert!(!instance.contains_key("ec2:RunInstances"), "{instance:?}");
}

#[test]
fn each_policy_grants_exactly_what_its_actor_calls() {
    let required = required_actions();
    let mut problems = Vec::new();
    let mut roles = vec![Role::Controller, Role::Instance];
    if Path::new(ROOT).join("src/restore").is_dir() {
        roles.push(Role::Restore);
    }
    for role in roles {
        let file = role.policy_file();
        let document = policy(file);
        assert_eq!(document["Version"], "2012-10-17", "{file}");
        let needed = required.get(&role).cloned().unwrap_or_default();
        for (action, why) in &needed {
            let Some((allowed, denied)) = resources(role, action) else {
                problems.push(format!(
                    "{file}: {action} is needed ({why:?}) but this test has no resource sample for it; add one to `resources`"
                ));
                continue;
            };
            for resource in &allowed {
                if granting(&document, action, resource).is_empty() {
                    problems.push(format!(
                        "{file}: {action} on {resource} is needed ({why:?}) but not granted"
                    ));
                }
            }
            for resource in &denied {
                if !granting(&document, action, resource).is_empty() {
                    problems.push(format!(
                        "{file}: {action} is granted on {resource}, which the code must not touch"
                    ));
                }
            }
        }
        for action in granted_actions(&document) {
            if action.contains('*') {
                problems.push(format!("{file}: wildcard action {action}"));
            } else if !needed.contains_key(&action) {
                problems.push(format!(
                    "{file}: grants {action}, which no code of this actor calls"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "policy problems:\n  {}",
        problems.join("\n  ")
    );
}

/// The value of a condition operator/key pair in a statement.
fn condition<'a>(statement: &'a Value, operator: &str, key: &str) -> Option<&'a Value> {
    statement["Condition"]
        .get(operator)
        .and_then(|c| c.get(key))
}

#[test]
fn the_controller_launches_tags_and_terminates_only_managed_instances() {
    let document = policy("policies/controller.json");
    let instance = "arn:aws:ec2:us-east-1:ACCOUNT:instance/i-0123abcd";
    for statement in granting(&document, "ec2:RunInstances", instance) {
        assert_eq!(
            condition(
                statement,
                "StringEquals",
                "aws:RequestTag/backup-cloud:managed"
            ),
            Some(&Value::from("true")),
            "RunInstances on instances must require the managed tag: {statement}"
        );
    }
    // CreateTags without this condition would let the controller tag any
    // instance as managed and then terminate it.
    for statement in granting(&document, "ec2:CreateTags", instance) {
        assert_eq!(
            condition(statement, "StringEquals", "ec2:CreateAction"),
            Some(&Value::from("RunInstances")),
            "CreateTags only at launch: {statement}"
        );
    }
    for statement in granting(&document, "ec2:TerminateInstances", instance) {
        assert_eq!(
            condition(
                statement,
                "StringEquals",
                "aws:ResourceTag/backup-cloud:managed"
            ),
            Some(&Value::from("true")),
            "{statement}"
        );
    }
    for statement in granting(
        &document,
        "iam:PassRole",
        "arn:aws:iam::ACCOUNT:role/backup-cloud-agent",
    ) {
        assert_eq!(
            condition(statement, "StringEquals", "iam:PassedToService"),
            Some(&Value::from("ec2.amazonaws.com")),
            "{statement}"
        );
    }
}

#[test]
fn only_ec2_may_assume_the_agent_role() {
    let document = policy("policies/ec2-trust.json");
    let all = statements(&document);
    assert_eq!(all.len(), 1, "{document}");
    assert_eq!(all[0]["Effect"], "Allow");
    assert_eq!(strings(&all[0]["Action"]), ["sts:AssumeRole"]);
    assert_eq!(
        all[0]["Principal"],
        serde_json::json!({ "Service": "ec2.amazonaws.com" })
    );
}

/// The Deny statements of the bucket policy that apply to `action` on `resource`.
fn denying<'a>(document: &'a Value, action: &str, resource: &str) -> Vec<&'a Value> {
    applying(document, "Deny", action, resource)
}

#[test]
fn the_bucket_policy_requires_tls_and_protects_backups() {
    let document = policy("policies/bucket.json");
    let backup = object("backup/orders/20261127T210000Z/pg_dump.custom.gpg");
    let tls: Vec<_> = denying(&document, "s3:GetObject", &backup)
        .into_iter()
        .filter(|s| condition(s, "Bool", "aws:SecureTransport") == Some(&Value::from("false")))
        .collect();
    assert_eq!(tls.len(), 1, "one statement refuses plain HTTP: {document}");
    assert!(
        strings(&tls[0]["Action"]) == ["s3:*"]
            && !denying(&document, "s3:ListBucket", BUCKET).is_empty(),
        "TLS is required for every request, on the bucket and its objects: {}",
        tls[0]
    );
    for action in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutLifecycleConfiguration",
    ] {
        let resource =
            if action.starts_with("s3:PutBucket") || action == "s3:PutLifecycleConfiguration" {
                BUCKET.to_owned()
            } else {
                backup.clone()
            };
        let deny = denying(&document, action, &resource);
        assert!(
            !deny.is_empty(),
            "bucket policy must deny {action} on {resource}"
        );
        // the writers (the agent role) are never exempt
        for statement in deny {
            let exempt = strings(
                condition(statement, "ArnNotLike", "aws:PrincipalArn").unwrap_or(&Value::Null),
            );
            assert!(
                exempt.iter().all(|arn| !glob(
                    arn,
                    "arn:aws:iam::ACCOUNT:role/backup-cloud-agent",
                    false
                )),
                "the agent role must not be exempt from denying {action}: {statement}"
            );
        }
    }
    let lock = policy("policies/object-lock.json");
    assert_eq!(lock["ObjectLockEnabled"], "Enabled");
    assert_eq!(lock["Rule"]["DefaultRetention"]["Mode"], "COMPLIANCE");
}

#[test]
fn the_glob_matcher_behaves_like_iam() {
    assert!(glob(
        "arn:aws:s3:::B/P/backup/*",
        "arn:aws:s3:::B/P/backup/x/y",
        false
    ));
    assert!(!glob(
        "arn:aws:s3:::B/P/backup/*",
        "arn:aws:s3:::B/P/jobs/x",
        false
    ));
    assert!(glob("s3:Get*", "s3:getobject", true));
    assert!(glob("a?c", "abc", false) && !glob("a?c", "ac", false));
}
