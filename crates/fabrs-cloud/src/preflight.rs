//! What must exist in the account before `create-env` writes anything, and
//! what the cloud reports missing. Pure data: `fabrs_exec::ops::preconditions`
//! computes a `Preconditions` from the environment, `Cloud::preflight` checks
//! it with read-only calls, `Preconditions::line` words each problem.

use std::collections::BTreeMap;

/// The things an environment file names but fabrs does not make.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The environment's region: AMIs and key pairs are regional, and a load
    /// balancer uses ACM certificates of its own region only.
    pub region: String,
    /// AMI id → the roles that launch from it (`web`, `worker`, `cache`).
    pub images: BTreeMap<String, Vec<String>>,
    /// `ssh.key_name`, when the file names one.
    pub key_pair: Option<String>,
    /// Certificate ARN (IAM server certificate or ACM) → the load balancer
    /// ports of the listeners that use it.
    pub certificates: BTreeMap<String, Vec<u16>>,
}

/// One precondition, by what the file calls it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precondition {
    Image(String),
    KeyPair(String),
    Certificate(String),
}

/// A precondition that does not hold, and why (`does not exist`, `is
/// PENDING_VALIDATION, not ISSUED`…), as the cloud found it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Missing {
    pub precondition: Precondition,
    pub problem: String,
}

impl Missing {
    pub fn new(precondition: Precondition, problem: impl Into<String>) -> Self {
        Missing {
            precondition,
            problem: problem.into(),
        }
    }
}

/// The problem every cloud reports for something it does not have.
pub const DOES_NOT_EXIST: &str = "does not exist";

impl Preconditions {
    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.key_pair.is_none() && self.certificates.is_empty()
    }

    /// One line for the user naming the precondition, where the file uses
    /// it, and what is wrong, e.g. `AMI ami-… does not exist in us-east-1
    /// (roles web, worker)`.
    pub fn line(&self, m: &Missing) -> String {
        let region = &self.region;
        let problem = &m.problem;
        match &m.precondition {
            Precondition::Image(id) => {
                let roles = self.images.get(id).map(|r| r.join(", ")).unwrap_or_default();
                let noun = if self.images.get(id).is_some_and(|r| r.len() == 1) {
                    "role"
                } else {
                    "roles"
                };
                format!("AMI {id} {problem} in {region} ({noun} {roles})")
            }
            Precondition::KeyPair(name) => format!("key pair {name} {problem} in {region} (ssh.key_name)"),
            Precondition::Certificate(arn) => {
                let ports: Vec<String> = self
                    .certificates
                    .get(arn)
                    .into_iter()
                    .flatten()
                    .map(u16::to_string)
                    .collect();
                let noun = if ports.len() == 1 { "listener" } else { "listeners" };
                let kind = if is_acm(arn) {
                    "ACM certificate"
                } else {
                    "IAM server certificate"
                };
                format!("{kind} {arn} {problem} (load balancer {noun} {})", ports.join(", "))
            }
        }
    }
}

/// `arn:<partition>:acm:…`.
pub fn is_acm(arn: &str) -> bool {
    arn.split(':').nth(2) == Some("acm")
}

/// The name of an IAM server certificate from its ARN
/// (`arn:aws:iam::<account>:server-certificate/<path…>/<name>`).
pub fn server_certificate_name(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let rest = resource.strip_prefix("server-certificate/")?;
    rest.rsplit('/').next().filter(|n| !n.is_empty())
}

/// The region of an ACM certificate ARN (`arn:aws:acm:<region>:…`).
pub fn acm_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_regions_from_arns() {
        assert_eq!(
            server_certificate_name("arn:aws:iam::123456789012:server-certificate/myproject-staging"),
            Some("myproject-staging")
        );
        assert_eq!(
            server_certificate_name("arn:aws:iam::123456789012:server-certificate/cloudfront/x/site"),
            Some("site")
        );
        assert_eq!(
            server_certificate_name("arn:aws:acm:us-east-1:123456789012:certificate/abc"),
            None
        );
        assert!(is_acm("arn:aws:acm:eu-west-1:123456789012:certificate/abc"));
        assert!(!is_acm("arn:aws:iam::123456789012:server-certificate/x"));
        assert_eq!(
            acm_region("arn:aws:acm:eu-west-1:123456789012:certificate/abc"),
            Some("eu-west-1")
        );
    }

    #[test]
    fn one_line_per_problem_naming_where_the_file_uses_it() {
        let p = Preconditions {
            region: "us-east-1".into(),
            images: BTreeMap::from([
                ("ami-0a".into(), vec!["web".into(), "worker".into()]),
                ("ami-0b".into(), vec!["cache".into()]),
            ]),
            key_pair: Some("ops".into()),
            certificates: BTreeMap::from([("arn:aws:iam::123456789012:server-certificate/s".into(), vec![443])]),
        };
        assert_eq!(
            p.line(&Missing::new(Precondition::Image("ami-0a".into()), DOES_NOT_EXIST)),
            "AMI ami-0a does not exist in us-east-1 (roles web, worker)"
        );
        assert_eq!(
            p.line(&Missing::new(Precondition::Image("ami-0b".into()), DOES_NOT_EXIST)),
            "AMI ami-0b does not exist in us-east-1 (role cache)"
        );
        assert_eq!(
            p.line(&Missing::new(Precondition::KeyPair("ops".into()), DOES_NOT_EXIST)),
            "key pair ops does not exist in us-east-1 (ssh.key_name)"
        );
        assert_eq!(
            p.line(&Missing::new(
                Precondition::Certificate("arn:aws:iam::123456789012:server-certificate/s".into()),
                DOES_NOT_EXIST
            )),
            "IAM server certificate arn:aws:iam::123456789012:server-certificate/s does not exist (load balancer listener 443)"
        );
    }
}
