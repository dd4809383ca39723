//! Preflight (issue 10 item 9): before `create-env` writes anything, whether
//! the account has what the environment file names but fabrs does not make,
//! with read-only calls only, one per thing, all at once: each AMI
//! (EC2 DescribeImages), the key pair (DescribeKeyPairs), each listener
//! certificate (IAM GetServerCertificate by name, ACM DescribeCertificate).
//!
//! Not checked: whether the account may create launch configurations
//! (accounts created since 2024-10-01 may not). No read-only call says so
//! (DescribeAccountLimits and DescribeLaunchConfigurations answer the same
//! either way); the create call's refusal is mapped to `LC_UNSUPPORTED`.

use aws_sdk_ec2::types::ImageState;
use fabrs_cloud::preflight::{DOES_NOT_EXIST, acm_region, is_acm, server_certificate_name};
use fabrs_cloud::{CloudError, ErrorKind, Missing, Precondition, Preconditions};
use futures::future::try_join_all;

use crate::{AwsCloud, err};

pub(crate) async fn preflight(c: &AwsCloud, p: &Preconditions) -> Result<Vec<Missing>, CloudError> {
    let (images, keys, certs) = futures::try_join!(
        try_join_all(p.images.keys().map(|id| image(c, id))),
        try_join_all(p.key_pair.iter().map(|k| key_pair(c, k))),
        try_join_all(p.certificates.keys().map(|arn| certificate(c, &p.region, arn))),
    )?;
    Ok(images.into_iter().chain(keys).chain(certs).flatten().collect())
}

/// A service's "no such thing" (`InvalidAMIID.NotFound`, `NoSuchEntity`,
/// `ResourceNotFoundException`…) is a missing precondition; any other
/// error means the check could not be made.
fn absent(e: CloudError, what: Precondition, codes: &[&str]) -> Result<Option<Missing>, CloudError> {
    if e.kind == ErrorKind::NotFound || codes.iter().any(|c| e.message.starts_with(c)) {
        Ok(Some(Missing::new(what, DOES_NOT_EXIST)))
    } else {
        Err(e)
    }
}

async fn image(c: &AwsCloud, id: &str) -> Result<Option<Missing>, CloudError> {
    let what = Precondition::Image(id.to_string());
    // One id per call: AWS fails the whole call when one of several ids is
    // unknown (InvalidAMIID.NotFound), moto leaves it out.
    match c.ec2.describe_images().image_ids(id).send().await {
        Ok(o) => Ok(match o.images().iter().find(|i| i.image_id() == Some(id)) {
            // Not visible to this account: not there, or not shared with it.
            None => Some(Missing::new(what, DOES_NOT_EXIST)),
            Some(i) => match i.state() {
                None | Some(ImageState::Available) => {
                    // The launches need its root device: no second look.
                    if let Some(dev) = i.root_device_name() {
                        c.root_devices.lock().unwrap().insert(id.to_string(), dev.to_string());
                    }
                    None
                }
                Some(s) => Some(Missing::new(what, format!("is {}, not available", s.as_str()))),
            },
        }),
        Err(e) => absent(
            err::sdk("DescribeImages", &format!("AMI {id}"), e),
            what,
            &["InvalidAMIID"],
        ),
    }
}

async fn key_pair(c: &AwsCloud, name: &str) -> Result<Option<Missing>, CloudError> {
    let what = Precondition::KeyPair(name.to_string());
    match c.ec2.describe_key_pairs().key_names(name).send().await {
        Ok(o) if o.key_pairs().iter().any(|k| k.key_name() == Some(name)) => Ok(None),
        Ok(_) => Ok(Some(Missing::new(what, DOES_NOT_EXIST))),
        Err(e) => absent(
            err::sdk("DescribeKeyPairs", &format!("key pair {name}"), e),
            what,
            &["InvalidKeyPair"],
        ),
    }
}

async fn certificate(c: &AwsCloud, region: &str, arn: &str) -> Result<Option<Missing>, CloudError> {
    let what = Precondition::Certificate(arn.to_string());
    if is_acm(arn) {
        if let Some(r) = acm_region(arn).filter(|r| *r != region) {
            return Ok(Some(Missing::new(
                what,
                format!("is in {r}: a load balancer in {region} uses ACM certificates of its own region"),
            )));
        }
        return match c.acm.describe_certificate().certificate_arn(arn).send().await {
            Ok(o) => Ok(match o.certificate().and_then(|d| d.status()).map(|s| s.as_str()) {
                None | Some("ISSUED") => None,
                Some(s) => Some(Missing::new(what, format!("is {s}, not ISSUED"))),
            }),
            Err(e) => absent(err::sdk("DescribeCertificate", arn, e), what, &[]),
        };
    }
    let Some(name) = server_certificate_name(arn) else {
        return Ok(Some(Missing::new(what, "is not a certificate ARN")));
    };
    match c
        .iam
        .get_server_certificate()
        .server_certificate_name(name)
        .send()
        .await
    {
        Ok(o) => {
            let found = o
                .server_certificate()
                .and_then(|s| s.server_certificate_metadata())
                .map(|m| m.arn().to_string());
            Ok(match found {
                Some(a) if a == arn => None,
                // Same name, another path or account: not the one the file names.
                Some(a) => Some(Missing::new(
                    what,
                    format!("does not exist (this account's server certificate {name} is {a})"),
                )),
                None => Some(Missing::new(what, DOES_NOT_EXIST)),
            })
        }
        Err(e) => absent(
            err::sdk("GetServerCertificate", &format!("server certificate {name}"), e),
            what,
            &[],
        ),
    }
}
