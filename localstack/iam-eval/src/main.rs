//! IAM policy evaluation for the test world's AWS gate (localstack/gate.py).
//!
//! LocalStack enforces no IAM; the gate does, and it leaves the policy
//! semantics (explicit Deny wins, `NotAction`/`NotResource`, condition
//! operators with `...IfExists`, `ForAnyValue:`/`ForAllValues:`, `Null`,
//! policy variables) to the `iam-rs` crate rather than to code of its own.
//! This binary is that crate behind a pipe: the gate starts it once and
//! writes one JSON request per line on stdin; it answers one JSON line each.
//!
//! Request: `{"policies": [<policy document>, ...], "principal": "<ARN>",
//! "checks": [{"action": "s3:GetObject", "resource": "<ARN or *>",
//! "context": {"<key>": <string | bool | number | [string, ...]>}}]}`.
//! The policies are evaluated together, as AWS does for a principal and a
//! resource of the same account: allowed when some statement allows and no
//! statement denies. Resource policies carry a `Principal`, which must match
//! `principal`; identity policies carry none.
//!
//! Answer: `{"decisions": ["Allow" | "Deny" | "NotApplicable", ...]}` (one per
//! check, in order; `NotApplicable` is the implicit deny), or
//! `{"error": "<why>"}` for a request or policy it cannot evaluate.

use std::io::{BufRead, Write};

use iam_rs::{Arn, Context, IAMPolicy, IAMRequest, PolicyEvaluator, Principal, PrincipalId};
use serde::Deserialize;

/// The resource of an action that supports no resource-level permissions
/// (AWS documents `*` for those, e.g. `ec2:DescribeInstances`): a valid ARN
/// that only a statement's `"Resource": "*"` (or a `NotResource`) matches.
const NO_RESOURCE: &str = "arn:aws:no-resource-level-permissions:::*";

/// One line of input.
#[derive(Deserialize)]
struct Request {
    policies: Vec<serde_json::Value>,
    principal: String,
    checks: Vec<Check>,
}

/// One (action, resource, context) to decide.
#[derive(Deserialize)]
struct Check {
    action: String,
    resource: String,
    #[serde(default)]
    context: Context,
}

fn decide(line: &str) -> Result<Vec<String>, String> {
    let request: Request = serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))?;
    let policies = request
        .policies
        .iter()
        .map(|doc| IAMPolicy::from_json(&doc.to_string()).map_err(|e| format!("bad policy: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let evaluator = PolicyEvaluator::with_policies(policies);
    let principal = Principal::Aws(PrincipalId::String(request.principal));
    request
        .checks
        .into_iter()
        .map(|check| {
            let resource = if check.resource == "*" {
                NO_RESOURCE
            } else {
                &check.resource
            };
            let resource =
                Arn::parse(resource).map_err(|e| format!("bad resource {resource:?}: {e}"))?;
            let iam_request = IAMRequest::new_with_context(
                principal.clone(),
                check.action,
                resource,
                check.context,
            );
            evaluator
                .evaluate(&iam_request)
                .map(|result| result.decision.to_string())
                .map_err(|e| format!("cannot evaluate: {e}"))
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match decide(&line) {
            Ok(decisions) => serde_json::json!({ "decisions": decisions }),
            Err(error) => serde_json::json!({ "error": error }),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}
