//! What a role's servers may do on AWS: the inline policy of their instance
//! role. Least privilege, from the environment file alone:
//!
//! - app servers (web, worker) read the project's releases
//!   (`s3://<artifacts.bucket>/<artifacts.prefix>/<project>/*`, what
//!   `fabrs-install-release` fetches) and read, write and delete the photos
//!   prefix of the photo bucket (what refapp's storage does);
//! - every role reads the environment's SSM parameters
//!   (`/<project>/<environment>/…`: its secrets), nothing else of SSM.
//!
//! Nothing else: no `s3:ListBucket`, no wildcard actions, no other bucket.
//! The trust policy (only EC2 may assume the role) is fixed and lives with
//! the cloud code.

use std::collections::BTreeSet;

use fabrs_config::names::{PHOTOS_PREFIX, photos_bucket};
use fabrs_config::{Environment, RoleKind};

use crate::resource::PolicyStatement;

/// The name of the one inline policy fabrs puts on each role.
pub const POLICY_NAME: &str = "fabrs";

/// The ARN partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn statement(sid: &str, actions: &[&str], resources: impl IntoIterator<Item = String>) -> PolicyStatement {
    PolicyStatement {
        sid: sid.into(),
        actions: actions.iter().map(|a| (*a).to_string()).collect(),
        resources: resources.into_iter().collect::<BTreeSet<_>>(),
    }
}

/// The statements of a role's inline policy, sorted by `sid`.
pub fn role_policy(env: &Environment, role: RoleKind) -> Vec<PolicyStatement> {
    let part = partition(&env.region);
    let mut out = Vec::new();
    if role != RoleKind::Cache {
        out.push(statement(
            "ReadReleases",
            &["s3:GetObject"],
            [format!(
                "arn:{part}:s3:::{}/{}/{}/*",
                env.artifacts.bucket,
                env.artifacts.prefix.trim_matches('/'),
                env.project
            )],
        ));
        out.push(statement(
            "ReadWritePhotos",
            &["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            [format!("arn:{part}:s3:::{}/{PHOTOS_PREFIX}*", photos_bucket(env))],
        ));
    }
    // The account is the role's own (a role cannot read another account's
    // parameters without that account's consent), so it is left as `*`:
    // the plan needs no account id.
    let params = format!("arn:{part}:ssm:{}:*:parameter/{}/{}", env.region, env.project, env.name);
    out.push(statement(
        "ReadSecrets",
        &["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
        [params.clone(), format!("{params}/*")],
    ));
    out.sort();
    out
}

/// The policy document AWS takes (`Version` 2012-10-17, one `Allow` per statement).
pub fn policy_document(statements: &[PolicyStatement]) -> String {
    let st: Vec<serde_json::Value> = statements
        .iter()
        .map(|s| {
            serde_json::json!({
                "Sid": s.sid,
                "Effect": "Allow",
                "Action": s.actions,
                "Resource": s.resources,
            })
        })
        .collect();
    serde_json::json!({ "Version": "2012-10-17", "Statement": st }).to_string()
}

/// A policy document as read back (IAM returns it URL-encoded; decode
/// first). Single strings and lists are both accepted for `Action` and
/// `Resource`, as IAM does. `None`: not a document fabrs could have written
/// (a `Deny`, conditions, principals…): the plan then shows it as a change.
pub fn parse_policy_document(doc: &str) -> Option<Vec<PolicyStatement>> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let list = match v.get("Statement")? {
        serde_json::Value::Array(a) => a.clone(),
        o @ serde_json::Value::Object(_) => vec![o.clone()],
        _ => return None,
    };
    let strings = |v: Option<&serde_json::Value>| -> Option<BTreeSet<String>> {
        match v? {
            serde_json::Value::String(s) => Some([s.clone()].into()),
            serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for s in list {
        let obj = s.as_object()?;
        if obj.get("Effect")?.as_str()? != "Allow"
            || obj
                .keys()
                .any(|k| !matches!(k.as_str(), "Sid" | "Effect" | "Action" | "Resource"))
        {
            return None;
        }
        out.push(PolicyStatement {
            sid: obj.get("Sid").and_then(|s| s.as_str()).unwrap_or_default().to_string(),
            actions: strings(obj.get("Action"))?,
            resources: strings(obj.get("Resource"))?,
        });
    }
    out.sort();
    Some(out)
}

/// The trust policy of every instance role: only EC2 may assume it.
pub const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_foreign_shapes_are_refused() {
        let st = vec![
            statement("A", &["s3:GetObject"], ["arn:aws:s3:::b/p/*".to_string()]),
            statement(
                "B",
                &["ssm:GetParameter", "ssm:GetParameters"],
                ["x".into(), "y".into()],
            ),
        ];
        assert_eq!(parse_policy_document(&policy_document(&st)), Some(st));
        // IAM may hand back single strings where fabrs wrote lists.
        let single = r#"{"Version":"2012-10-17","Statement":{"Sid":"A","Effect":"Allow","Action":"s3:GetObject","Resource":"r"}}"#;
        let got = parse_policy_document(single).unwrap();
        assert_eq!(got[0].actions, BTreeSet::from(["s3:GetObject".to_string()]));
        // Anything fabrs would not write is not read as fabrs's policy.
        let deny = r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
        assert_eq!(parse_policy_document(deny), None);
        let cond = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{}}]}"#;
        assert_eq!(parse_policy_document(cond), None);
    }

    #[test]
    fn partitions() {
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }
}
