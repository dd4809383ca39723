//! Every SDK error becomes one line: a kind the executor can act on, the
//! operation, the resource, and the service's own code and message.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use fabrs_cloud::{CloudError, ErrorKind};

pub const LC_UNSUPPORTED: &str = "this account cannot create launch configurations (AWS stopped allowing them for accounts created after 2024-10-01): set `launch: template` for this role in the environment file";

/// The kind of a service error code (and message, for the codes that mean
/// several things).
pub(crate) fn kind_of(code: &str, message: &str) -> ErrorKind {
    let msg = message.to_ascii_lowercase();
    match code {
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "SlowDown"
        | "PriorRequestNotComplete"
        | "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "InternalServerError"
        // S3: a concurrent conditional write of the same key (409), a
        // conflicting operation on the bucket, an upload read too slowly.
        | "ConditionalRequestConflict"
        | "OperationAborted"
        | "RequestTimeout" => ErrorKind::Transient,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "MissingAuthenticationToken"
        | "OptInRequired"
        | "InvalidAccessKeyId"
        | "ExpiredToken"
        | "AllAccessDisabled" => ErrorKind::AccessDenied,
        "DependencyViolation" | "ResourceInUse" | "ResourceInUseFault" => ErrorKind::DependencyViolation,
        "AlreadyExists" | "AlreadyExistsFault" => ErrorKind::AlreadyExists,
        c if c.contains("AlreadyExists") || c.contains("Duplicate") => ErrorKind::AlreadyExists,
        c if c.contains("NotFound") => ErrorKind::NotFound,
        // S3: NoSuchKey, NoSuchBucket, NoSuchUpload…
        c if c.starts_with("NoSuch") => ErrorKind::NotFound,
        c if c.contains("InUse") => ErrorKind::DependencyViolation,
        // Auto Scaling says "not found" with a generic ValidationError.
        "ValidationError" if msg.contains("not found") => ErrorKind::NotFound,
        _ => ErrorKind::Other,
    }
}

fn between(s: &str, open: &str, close: &str) -> Option<String> {
    let start = s.find(open)? + open.len();
    let end = start + s[start..].find(close)?;
    let v = s[start..end].trim();
    (!v.is_empty()).then(|| {
        v.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "Describe one; NotFound is None", written once: a call's answer, or
/// `None` when AWS says the resource is not there (each service has its
/// codes: `InvalidGroup.NotFound`, `DBInstanceNotFound`, `NoSuchEntity`…;
/// `kind_of` knows them), or the call's one-line error.
pub(crate) fn found<T, E>(
    operation: &str,
    resource: &str,
    r: Result<T, SdkError<E, HttpResponse>>,
) -> Result<Option<T>, CloudError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    none_if_not_found(r.map_err(|e| sdk(operation, resource, e)))
}

/// An error saying the resource is not there, as `None`.
pub(crate) fn none_if_not_found<T>(r: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Map an SDK error of any of the AWS clients.
pub(crate) fn sdk<E>(operation: &str, resource: &str, e: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match err.code() {
                Some(code) => {
                    let msg = err.message().unwrap_or("");
                    (
                        kind_of(code, msg),
                        if msg.is_empty() {
                            code.to_string()
                        } else {
                            format!("{code}: {}", one_line(msg))
                        },
                    )
                }
                // No AWS error the SDK could parse: an error document of
                // another shape (moto wraps Auto Scaling errors in EC2's
                // `<Errors>`), else an HTML page or a proxy's: the HTTP status.
                None => {
                    let status = se.raw().status().as_u16();
                    let body = se.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                    match (
                        between(&body, "<Code>", "</Code>"),
                        between(&body, "<Message>", "</Message>"),
                    ) {
                        (Some(code), msg) => {
                            let msg = msg.unwrap_or_default();
                            (
                                kind_of(&code, &msg),
                                if msg.is_empty() {
                                    code
                                } else {
                                    format!("{code}: {}", one_line(&msg))
                                },
                            )
                        }
                        (None, _) => {
                            let kind = match status {
                                500..=599 | 429 => ErrorKind::Transient,
                                401 | 403 => ErrorKind::AccessDenied,
                                404 => ErrorKind::NotFound,
                                _ => ErrorKind::Other,
                            };
                            (kind, format!("HTTP {status} without an AWS error code in the response"))
                        }
                    }
                }
            }
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "timed out (after retries)".to_string()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (ErrorKind::Transient, one_line(&DisplayErrorContext(&e).to_string()))
        }
        _ => (ErrorKind::Other, one_line(&DisplayErrorContext(&e).to_string())),
    };
    CloudError::new(kind, operation, resource, message)
}

pub(crate) fn other(operation: &str, resource: &str, message: impl Into<String>) -> CloudError {
    CloudError::new(ErrorKind::Other, operation, resource, message)
}

pub(crate) fn not_found(operation: &str, resource: &str, message: impl Into<String>) -> CloudError {
    CloudError::new(ErrorKind::NotFound, operation, resource, message)
}

pub(crate) fn exists_foreign(operation: &str, resource: &str) -> CloudError {
    CloudError::new(
        ErrorKind::AlreadyExists,
        operation,
        resource,
        "a resource of that name exists but is not this environment's (its fabrs ownership tags do not match): fabrs will not adopt or change it",
    )
}

/// CreateLaunchConfiguration refused because the account may not use them.
pub(crate) fn lc_refused(e: CloudError) -> CloudError {
    let lower = e.message.to_ascii_lowercase();
    if e.kind == ErrorKind::AccessDenied
        || e.message.starts_with("UnsupportedOperation")
        || lower.contains("not supported")
        || lower.contains("no longer supported")
    {
        CloudError::new(
            ErrorKind::LaunchConfigurationsUnsupported,
            e.operation,
            e.resource,
            format!("{LC_UNSUPPORTED} ({})", e.message),
        )
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind_of("InvalidGroup.NotFound", ""), ErrorKind::NotFound);
        assert_eq!(kind_of("InvalidGroup.Duplicate", ""), ErrorKind::AlreadyExists);
        assert_eq!(kind_of("DuplicateLoadBalancerName", ""), ErrorKind::AlreadyExists);
        assert_eq!(kind_of("DBInstanceAlreadyExists", ""), ErrorKind::AlreadyExists);
        assert_eq!(kind_of("LoadBalancerNotFound", ""), ErrorKind::NotFound);
        assert_eq!(kind_of("DBInstanceNotFound", ""), ErrorKind::NotFound);
        assert_eq!(
            kind_of("ValidationError", "AutoScalingGroup name not found - x"),
            ErrorKind::NotFound
        );
        assert_eq!(kind_of("ValidationError", "bad size"), ErrorKind::Other);
        assert_eq!(kind_of("RequestLimitExceeded", ""), ErrorKind::Transient);
        assert_eq!(kind_of("UnauthorizedOperation", ""), ErrorKind::AccessDenied);
        assert_eq!(kind_of("ResourceInUse", ""), ErrorKind::DependencyViolation);
        assert_eq!(kind_of("DependencyViolation", ""), ErrorKind::DependencyViolation);
        assert_eq!(kind_of("NoSuchBucket", ""), ErrorKind::NotFound);
        assert_eq!(kind_of("NoSuchKey", ""), ErrorKind::NotFound);
        assert_eq!(kind_of("ConditionalRequestConflict", ""), ErrorKind::Transient);
        assert_eq!(kind_of("SlowDown", ""), ErrorKind::Transient);
        assert_eq!(kind_of("InvalidAccessKeyId", ""), ErrorKind::AccessDenied);
    }

    #[test]
    fn error_documents_of_another_shape() {
        let body = "<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: u is not authorized</Message></Error></Errors></ErrorResponse>";
        assert_eq!(between(body, "<Code>", "</Code>").as_deref(), Some("AccessDenied"));
        assert_eq!(
            between(body, "<Message>", "</Message>").as_deref(),
            Some("User: u is not authorized")
        );
        assert_eq!(between("<html>oops</html>", "<Code>", "</Code>"), None);
    }

    #[test]
    fn lc_refusal_message() {
        let e = lc_refused(CloudError::new(
            ErrorKind::AccessDenied,
            "CreateLaunchConfiguration",
            "launch configuration x",
            "AccessDenied: no",
        ));
        assert_eq!(e.kind, ErrorKind::LaunchConfigurationsUnsupported);
        assert!(e.message.starts_with(LC_UNSUPPORTED));
        let e = lc_refused(CloudError::new(
            ErrorKind::Other,
            "CreateLaunchConfiguration",
            "x",
            "ValidationError: bad",
        ));
        assert_eq!(e.kind, ErrorKind::Other);
    }
}
