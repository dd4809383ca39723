//! One file per resource kind: how each is read, created, updated, deleted
//! and waited for on AWS ([`AwsKind`]), beside its discovery helpers. The
//! dispatch over kinds is generated from fabrs-plan's one list of kinds
//! (`for_each_kind!`): a kind added there does not compile until its file
//! here implements `AwsKind`. Shared per-service helpers (tags, filters) stay
//! in `ec2.rs` and `rds.rs`; the rounds of discovery in `discover.rs`.

use std::time::Duration;

use fabrs_cloud::{ApplyCtx, CloudError, Scope};
use fabrs_plan::kinds::ResourceKind;
#[allow(clippy::wildcard_imports)]
use fabrs_plan::resource::*;

use crate::util::{self, GroupMap};
use crate::{AwsCloud, err};

/// A kind on AWS. Every method is required: a kind says how it is waited
/// for even when there is nothing to wait for.
pub(crate) trait AwsKind: ResourceKind {
    /// The longest pause between two looks of a wait: the first look is at
    /// once after the action, then 1 s, doubling up to this.
    const BACKOFF_CAP: Duration;

    /// This kind's resources in the account, found by discovery's first
    /// round: the owned ones and the look-alikes in the way (the split:
    /// `util::Claims`). Kinds whose discovery needs another's answers (a
    /// security group's id → key map, the load balancer's health, the
    /// groups' launch configurations) are found together in `discover.rs`'s
    /// rounds: their `list` says so and finds nothing itself.
    async fn list(c: &AwsCloud, scope: &Scope) -> Result<Listing, CloudError>;

    /// Read one back as it is now (`None`: gone).
    async fn read(
        c: &AwsCloud,
        address: &Address,
        id: &str,
        spec: &Self,
        gmap: &GroupMap,
    ) -> Result<Option<Observed>, CloudError>;

    /// Make it, and answer what was made: the spec it was made from (no
    /// read-back), its id and the status AWS gave it.
    async fn create(
        c: &AwsCloud,
        address: &Address,
        spec: &Self,
        ctx: &ApplyCtx,
        gmap: &GroupMap,
    ) -> Result<Observed, CloudError>;

    /// Change it in place to `desired`, and answer what it is now.
    async fn update(
        c: &AwsCloud,
        current: &Observed,
        was: &Self,
        desired: &Self,
        ctx: &ApplyCtx,
        gmap: &GroupMap,
    ) -> Result<Observed, CloudError>;

    /// Delete it (a resource already gone is not an error: the caller maps
    /// NotFound to done).
    async fn delete(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<(), CloudError>;

    /// One look for a wait: its status now (`None`: gone).
    async fn status(c: &AwsCloud, current: &Observed, spec: &Self) -> Result<Option<Status>, CloudError>;

    /// Whether a status means ready to be used by what needs it.
    fn ready(spec: &Self, status: &Status) -> bool;
}

/// What a kind's `list` found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub owned: Vec<Observed>,
    pub foreign: Vec<Foreign>,
}

impl From<(Vec<Observed>, Vec<Foreign>)> for Listing {
    fn from((owned, foreign): (Vec<Observed>, Vec<Foreign>)) -> Self {
        Listing { owned, foreign }
    }
}

/// What a create answers when the call's success says it all.
pub(crate) fn made(address: &Address, id: String, spec: impl Into<Spec>) -> Observed {
    Observed {
        address: address.clone(),
        id,
        spec: spec.into(),
        status: Status::default(),
    }
}

/// What an update answers when the call's success says it all.
pub(crate) fn updated(current: &Observed, desired: impl Into<Spec>) -> Observed {
    Observed {
        address: current.address.clone(),
        id: current.id.clone(),
        spec: desired.into(),
        status: current.status.clone(),
    }
}

/// A wait's look for kinds without a state of their own: read it back.
pub(crate) async fn status_by_read<K: AwsKind>(
    c: &AwsCloud,
    current: &Observed,
    spec: &K,
) -> Result<Option<Status>, CloudError> {
    let found = K::read(c, &current.address, &current.id, spec, &GroupMap::default()).await?;
    Ok(found.map(|o| Status {
        state: if o.status.state.is_empty() {
            "exists".into()
        } else {
            o.status.state
        },
        ..o.status
    }))
}

macro_rules! aws_kinds {
    ($($variant:ident($spec:ident) in $module:ident),* $(,)?) => {
        $(pub(crate) mod $module;)*

        impl AwsCloud {
            /// Every kind's `list`, at once.
            pub(crate) async fn list_all(&self, scope: &Scope) -> Result<Listing, CloudError> {
                let all = futures::future::try_join_all([
                    // A scope that leaves a kind out (a deploy's) lists none of it.
                    $(Box::pin(async move {
                        if scope.wants(Kind::$variant) {
                            <$spec as AwsKind>::list(self, scope).await
                        } else {
                            Ok(Listing::default())
                        }
                    })
                        as std::pin::Pin<Box<dyn std::future::Future<Output = Result<Listing, CloudError>> + Send + '_>>,)*
                ])
                .await?;
                let mut out = Listing::default();
                for l in all {
                    out.owned.extend(l.owned);
                    out.foreign.extend(l.foreign);
                }
                Ok(out)
            }

            pub(crate) async fn create_kind(
                &self,
                address: &Address,
                spec: &Spec,
                ctx: &ApplyCtx,
                gmap: &GroupMap,
            ) -> Result<Observed, CloudError> {
                match spec {
                    $(Spec::$variant(s) => Box::pin(<$spec as AwsKind>::create(self, address, s, ctx, gmap)).await,)*
                }
            }

            pub(crate) async fn update_kind(
                &self,
                current: &Observed,
                desired: &Spec,
                ctx: &ApplyCtx,
                gmap: &GroupMap,
            ) -> Result<Observed, CloudError> {
                match (&current.spec, desired) {
                    $((Spec::$variant(c), Spec::$variant(d)) => {
                        Box::pin(<$spec as AwsKind>::update(self, current, c, d, ctx, gmap)).await
                    })*
                    _ => Err(err::other(
                        "update",
                        &util::describe(&current.address, desired),
                        "the desired spec is of another kind than the resource",
                    )),
                }
            }

            pub(crate) async fn delete_kind(&self, current: &Observed) -> Result<(), CloudError> {
                match &current.spec {
                    $(Spec::$variant(s) => Box::pin(<$spec as AwsKind>::delete(self, current, s)).await,)*
                }
            }

            /// One look for wait(): (ready, status; `None`: gone).
            pub(crate) async fn look(&self, current: &Observed) -> Result<(bool, Option<Status>), CloudError> {
                match &current.spec {
                    $(Spec::$variant(s) => {
                        let st = Box::pin(<$spec as AwsKind>::status(self, current, s)).await?;
                        Ok((st.as_ref().is_some_and(|st| <$spec as AwsKind>::ready(s, st)), st))
                    })*
                }
            }
        }

        /// `AwsKind::BACKOFF_CAP`.
        pub(crate) fn backoff_cap(kind: Kind) -> Duration {
            match kind {
                $(Kind::$variant => <$spec as AwsKind>::BACKOFF_CAP,)*
            }
        }
    };
}

fabrs_plan::for_each_kind!(aws_kinds);
