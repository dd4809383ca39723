//! An in-memory cloud for fast scenario tests of the drivers. It is stricter
//! than moto where moto is lax (test-peers.md): it refuses to delete a group
//! another resource still uses, a master with replicas, a launch
//! configuration in use; it requires referenced groups to exist at create.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use fabrs_plan::addr;
use fabrs_plan::resource::*;

use fabrs_cloud::preflight::DOES_NOT_EXIST;
use fabrs_cloud::{
    ApplyCtx, Cloud, CloudError, DbDelete, ErrorKind, Missing, Precondition, Preconditions, Progress, Scope,
};

#[derive(Default)]
pub struct FakeCloud {
    state: Mutex<FakeState>,
    /// Kinds whose creates wait until released (`hold` / `release`): how a
    /// test shows what the apply driver starts while one kind is slow.
    gates: Mutex<BTreeMap<Kind, std::sync::Arc<tokio::sync::Semaphore>>>,
    /// The same for deletes (`hold_deletes` / `release`).
    delete_gates: Mutex<BTreeMap<Kind, std::sync::Arc<tokio::sync::Semaphore>>>,
}

#[derive(Default)]
struct FakeState {
    resources: BTreeMap<Address, Observed>,
    next_id: u64,
    /// Every mutating call, in order: (operation, address).
    pub calls: Vec<(String, String)>,
    /// The database versions offered (`engine_versions`); `None`: not known.
    engine_versions: Option<Vec<String>>,
    /// Final snapshots taken when deleting databases.
    snapshots: Vec<String>,
    /// SSM parameters' values by parameter name.
    ssm_values: BTreeMap<String, String>,
    /// Every user-data sent (launches created or updated), in order.
    user_data_sent: Vec<String>,
    /// What the account has that fabrs does not make (`preflight`): AMIs,
    /// key pairs, certificate ARNs. A new fake account has none of them.
    preexisting: BTreeSet<Precondition>,
    /// How many times `discover` was called.
    discoveries: usize,
    /// SSM parameters naming AMIs beyond [`PUBLIC_IMAGE_PARAMETERS`], or
    /// moving one of those to a new image (`publish_image`).
    image_parameters: BTreeMap<String, String>,
}

/// The public parameters every region has (here with made-up ids), as
/// Debian and Canonical publish them; their images exist in every account.
pub const PUBLIC_IMAGE_PARAMETERS: &[(&str, &str)] = &[
    ("/aws/service/debian/release/12/latest/amd64", "ami-0deb12a0b1c2d3e4f"),
    (
        "/aws/service/debian/release/bookworm/latest/amd64",
        "ami-0deb12a0b1c2d3e4f",
    ),
    ("/aws/service/debian/release/13/latest/amd64", "ami-0deb13a0b1c2d3e4f"),
    (
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
        "ami-0c7217cdde317cfec",
    ),
    (
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
        "ami-0e2c8caa4b6378d8c",
    ),
];

impl FakeCloud {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn calls(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().calls.clone()
    }
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().resources.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The addresses of what exists, in order.
    pub fn addresses(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .resources
            .keys()
            .map(|a| a.to_string())
            .collect()
    }
    /// The database engine versions this cloud offers (every engine).
    pub fn offer_engine_versions(&self, versions: &[&str]) {
        self.state.lock().unwrap().engine_versions = Some(versions.iter().map(|v| v.to_string()).collect());
    }
    /// The account has these AMIs, key pairs and certificates (ARNs), as a
    /// user makes them before `create-env`; `preflight` finds nothing else.
    pub fn account_has(&self, images: &[&str], key_pairs: &[&str], certificates: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.preexisting
            .extend(images.iter().map(|i| Precondition::Image(i.to_string())));
        s.preexisting
            .extend(key_pairs.iter().map(|k| Precondition::KeyPair(k.to_string())));
        s.preexisting
            .extend(certificates.iter().map(|c| Precondition::Certificate(c.to_string())));
    }
    /// Everything `p` names exists in the account.
    pub fn account_has_all(&self, p: &Preconditions) {
        let images: Vec<&str> = p.images.keys().map(String::as_str).collect();
        let keys: Vec<&str> = p.key_pair.iter().map(String::as_str).collect();
        let certs: Vec<&str> = p.certificates.keys().map(String::as_str).collect();
        self.account_has(&images, &keys, &certs);
    }
    /// How many times the account was discovered so far.
    pub fn discoveries(&self) -> usize {
        self.state.lock().unwrap().discoveries
    }
    /// Every create of `kind` waits, from now until [`FakeCloud::release`].
    pub fn hold(&self, kind: Kind) {
        self.gates
            .lock()
            .unwrap()
            .insert(kind, std::sync::Arc::new(tokio::sync::Semaphore::new(0)));
    }
    /// Every delete of `kind` waits, from now until [`FakeCloud::release`].
    pub fn hold_deletes(&self, kind: Kind) {
        self.delete_gates
            .lock()
            .unwrap()
            .insert(kind, std::sync::Arc::new(tokio::sync::Semaphore::new(0)));
    }
    /// Creates and deletes of `kind` go ahead (those waiting, and every
    /// later one).
    pub fn release(&self, kind: Kind) {
        for gates in [&self.gates, &self.delete_gates] {
            if let Some(gate) = gates.lock().unwrap().get(&kind)
                && gate.available_permits() == 0
            {
                // Each call holds a permit only while it passes the gate.
                gate.add_permits(1 << 16);
            }
        }
    }
    async fn pass_delete_gate(&self, kind: Kind) {
        let gate = self.delete_gates.lock().unwrap().get(&kind).cloned();
        if let Some(gate) = gate {
            drop(gate.acquire().await.expect("gates are never closed"));
        }
    }
    /// The SSM parameter `name` now names `ami` (a new image published),
    /// and the image exists.
    pub fn publish_image(&self, name: &str, ami: &str) {
        let mut s = self.state.lock().unwrap();
        s.image_parameters.insert(name.to_string(), ami.to_string());
        s.preexisting.insert(Precondition::Image(ami.to_string()));
    }
    /// The final snapshots taken so far.
    pub fn snapshots(&self) -> Vec<String> {
        self.state.lock().unwrap().snapshots.clone()
    }
    /// Every user-data a create or update carried, in order.
    pub fn user_data_sent(&self) -> Vec<String> {
        self.state.lock().unwrap().user_data_sent.clone()
    }
    /// The value last written to an SSM parameter (by its full name).
    pub fn ssm_value(&self, name: &str) -> Option<String> {
        self.state.lock().unwrap().ssm_values.get(name).cloned()
    }
    /// Remove a resource behind fabrs's back (or as if it was never made).
    pub fn remove(&self, address: &Address) {
        self.state.lock().unwrap().resources.remove(address);
    }
    /// Change a resource behind fabrs's back (drift).
    /// A bucket now holds objects (as the app's uploads would leave it).
    pub fn put_data(&self, address: &Address) {
        if let Some(o) = self.state.lock().unwrap().resources.get_mut(address) {
            o.status.holds_data = true;
        }
    }

    pub fn tamper(&self, address: &Address, f: impl FnOnce(&mut Spec)) {
        let mut s = self.state.lock().unwrap();
        if let Some(o) = s.resources.get_mut(address) {
            f(&mut o.spec);
        }
    }
}

fn err(kind: ErrorKind, op: &str, a: &Address, msg: &str) -> CloudError {
    CloudError::new(kind, op, a.to_string(), msg)
}

/// As strict as a real write needs: a value, and the spec's fingerprint
/// must be that value's (the fingerprint tag is how a later plan sees it).
fn check_parameter_value(
    a: &Address,
    p: &fabrs_plan::resource::SsmParameterSpec,
    ctx: &ApplyCtx,
    op: &str,
) -> Result<(), CloudError> {
    let Some(v) = &ctx.secret_value else {
        return Err(err(ErrorKind::Other, op, a, "no value for the parameter"));
    };
    if p.fingerprint.as_deref() != Some(fabrs_plan::ssm::fingerprint(&p.name, v.expose()).as_str()) {
        return Err(err(ErrorKind::Other, op, a, "the fingerprint is not the value's"));
    }
    Ok(())
}

fn groups_used(spec: &Spec) -> Vec<String> {
    spec.as_kind().security_groups()
}

impl FakeCloud {
    fn delete_inner(&self, current: &Observed) -> Result<(), CloudError> {
        let mut s = self.state.lock().unwrap();
        let key = match &current.spec {
            Spec::LaunchConfiguration(lc) => {
                Address::new(Kind::LaunchConfiguration, lc.name.clone().unwrap_or_default())
            }
            _ => current.address.clone(),
        };
        if let Spec::SecurityGroup(sg) = &current.spec {
            let users: Vec<String> = s
                .resources
                .iter()
                .filter(|(a, o)| **a != key && groups_used(&o.spec).contains(&sg.key))
                .map(|(a, _)| a.to_string())
                .collect();
            if !users.is_empty() {
                return Err(err(
                    ErrorKind::DependencyViolation,
                    "DeleteSecurityGroup",
                    &key,
                    &format!("still used by {}", users.join(", ")),
                ));
            }
        }
        if let Spec::DbInstance(db) = &current.spec {
            if s.resources.values().any(
                |o| matches!(&o.spec, Spec::DbInstance(r) if r.replica_of.as_deref() == Some(db.identifier.as_str())),
            ) {
                return Err(err(
                    ErrorKind::DependencyViolation,
                    "DeleteDBInstance",
                    &key,
                    "it still has read replicas",
                ));
            }
        }
        if let Spec::LaunchConfiguration(lc) = &current.spec {
            if s.resources.values().any(|o| matches!(&o.spec, Spec::AutoScalingGroup(a) if a.launch == LaunchRef::Configuration(lc.name.clone()))) {
                return Err(err(ErrorKind::DependencyViolation, "DeleteLaunchConfiguration", &key, "in use by a group"));
            }
        }
        if let Spec::Bucket(b) = &current.spec {
            if s.resources.get(&key).is_some_and(|o| o.status.holds_data) {
                return Err(err(
                    ErrorKind::DependencyViolation,
                    "DeleteBucket",
                    &key,
                    &format!("BucketNotEmpty: the bucket {} is not empty", b.name),
                ));
            }
        }
        if let Spec::SsmParameter(p) = &current.spec {
            s.ssm_values.remove(&p.name);
        }
        s.calls.push(("delete".into(), key.to_string()));
        s.resources.remove(&key);
        Ok(())
    }
}

impl Cloud for FakeCloud {
    async fn discover(&self, scope: &Scope) -> Result<Inventory, CloudError> {
        let mut s = self.state.lock().unwrap();
        s.discoveries += 1;
        let mut inv = Inventory::default();
        for name in &scope.image_parameters {
            let public = PUBLIC_IMAGE_PARAMETERS
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| (*id).to_string());
            if let Some(id) = s.image_parameters.get(name).cloned().or(public) {
                inv.image_parameters.insert(name.clone(), id);
            }
        }
        for (a, o) in &s.resources {
            if let Spec::LaunchConfiguration(lc) = &o.spec
                && let Some(name) = &lc.name
            {
                inv.launch_configurations.insert(name.clone(), lc.clone());
                // Only the configuration a group uses has the role's address.
                let used = s.resources.values().any(|g| matches!(&g.spec, Spec::AutoScalingGroup(asg) if asg.launch == LaunchRef::Configuration(lc.name.clone())));
                if used {
                    inv.resources.insert(
                        addr::launch_configuration(lc.launch.role),
                        Observed {
                            address: addr::launch_configuration(lc.launch.role),
                            ..o.clone()
                        },
                    );
                }
                continue;
            }
            inv.resources.insert(a.clone(), o.clone());
        }
        // What the scope leaves out is not looked for.
        inv.resources.retain(|a, _| scope.wants(a.kind));
        if !scope.wants(Kind::LaunchConfiguration) {
            inv.launch_configurations.clear();
        }
        Ok(inv)
    }

    async fn create(&self, address: &Address, spec: &Spec, ctx: &ApplyCtx) -> Result<Observed, CloudError> {
        let gate = self.gates.lock().unwrap().get(&address.kind).cloned();
        if let Some(gate) = gate {
            drop(gate.acquire().await.expect("gates are never closed"));
        }
        let mut s = self.state.lock().unwrap();
        for g in groups_used(spec) {
            let needed = addr::security_group(&g);
            let in_ctx = ctx.ids.contains_key(&needed);
            // Group-to-group rules may name groups made later (added by update).
            if !in_ctx && !matches!(spec, Spec::SecurityGroup(_)) {
                return Err(err(
                    ErrorKind::NotFound,
                    "Create",
                    address,
                    &format!("security group {g} does not exist yet"),
                ));
            }
        }
        if let Spec::DbInstance(db) = spec {
            if let Some(master) = &db.replica_of {
                let ok = s
                    .resources
                    .values()
                    .any(|o| matches!(&o.spec, Spec::DbInstance(m) if &m.identifier == master));
                if !ok {
                    return Err(err(
                        ErrorKind::NotFound,
                        "CreateDBInstanceReadReplica",
                        address,
                        "source instance not found",
                    ));
                }
            } else if ctx.db_password.is_none() {
                return Err(err(ErrorKind::Other, "CreateDBInstance", address, "no master password"));
            }
        }
        if let Spec::SsmParameter(p) = spec {
            check_parameter_value(address, p, ctx, "PutParameter")?;
            s.ssm_values.insert(
                p.name.clone(),
                ctx.secret_value.as_ref().expect("checked").expose().to_string(),
            );
        }
        if matches!(
            spec,
            Spec::Instance(_) | Spec::LaunchConfiguration(_) | Spec::LaunchTemplate(_)
        ) && ctx.user_data.is_none()
        {
            return Err(err(ErrorKind::Other, "Create", address, "no user-data"));
        }
        if let Some(ud) = &ctx.user_data {
            s.user_data_sent.push(ud.clone());
        }
        // Launch configurations live under their own name (several per role).
        let key = match spec {
            Spec::LaunchConfiguration(LaunchConfigurationSpec { name: Some(n), .. }) => {
                Address::new(Kind::LaunchConfiguration, n.clone())
            }
            Spec::LaunchConfiguration(_) => {
                return Err(err(
                    ErrorKind::Other,
                    "CreateLaunchConfiguration",
                    address,
                    "no name yet (its launch spec is not fully known)",
                ));
            }
            _ => address.clone(),
        };
        if let Some(existing) = s.resources.get(&key) {
            return Ok(existing.clone());
        }
        s.next_id += 1;
        let n = s.next_id;
        let mut stored = spec.clone();
        if let Spec::SecurityGroup(sg) = &mut stored {
            sg.ingress.retain(|r| match &r.source {
                RuleSource::Group(g) => ctx.ids.contains_key(&addr::security_group(g)),
                _ => true,
            });
        }
        let status = match spec {
            Spec::Instance(_) => Status {
                state: "running".into(),
                private_ip: Some(format!("10.0.0.{n}")),
                ..Default::default()
            },
            Spec::DbInstance(db) => Status {
                state: "available".into(),
                endpoint: Some(format!("{}.fake.rds", db.identifier)),
                ..Default::default()
            },
            // As EC2: a new template is at version 1.
            Spec::LaunchTemplate(_) => Status {
                state: "version 1".into(),
                template_version: Some(1),
                ..Default::default()
            },
            // Other kinds have no runtime status.
            _ => Status::default(),
        };
        let o = Observed {
            address: key.clone(),
            id: format!("fake-{n}"),
            spec: stored,
            status,
        };
        s.calls.push(("create".into(), key.to_string()));
        s.resources.insert(key, o.clone());
        Ok(Observed {
            address: address.clone(),
            ..o
        })
    }

    async fn update(&self, current: &Observed, desired: &Spec, ctx: &ApplyCtx) -> Result<Observed, CloudError> {
        // As AWS: a rule can only name a group that exists.
        if let Spec::SecurityGroup(sg) = desired {
            for r in &sg.ingress {
                if let RuleSource::Group(g) = &r.source {
                    if !ctx.ids.contains_key(&addr::security_group(g)) {
                        return Err(err(
                            ErrorKind::NotFound,
                            "AuthorizeSecurityGroupIngress",
                            &current.address,
                            &format!("security group {g} does not exist yet"),
                        ));
                    }
                }
            }
        }
        let mut s = self.state.lock().unwrap();
        if let Spec::SsmParameter(p) = desired {
            check_parameter_value(&current.address, p, ctx, "PutParameter")?;
            s.ssm_values.insert(
                p.name.clone(),
                ctx.secret_value.as_ref().expect("checked").expose().to_string(),
            );
        }
        if let Some(ud) = &ctx.user_data {
            s.user_data_sent.push(ud.clone());
        }
        let key = match desired {
            Spec::LaunchConfiguration(lc) => {
                Address::new(Kind::LaunchConfiguration, lc.name.clone().unwrap_or_default())
            }
            _ => current.address.clone(),
        };
        let Some(o) = s.resources.get_mut(&key) else {
            return Err(err(ErrorKind::NotFound, "Update", &current.address, "not found"));
        };
        o.spec = desired.clone();
        // As EC2: a template's update is a new version.
        if let Spec::LaunchTemplate(_) = desired {
            let v = o.status.template_version.unwrap_or(0) + 1;
            o.status.template_version = Some(v);
            o.status.state = format!("version {v}");
        }
        let out = o.clone();
        s.calls.push(("update".into(), key.to_string()));
        Ok(Observed {
            address: current.address.clone(),
            ..out
        })
    }

    async fn delete(&self, current: &Observed) -> Result<(), CloudError> {
        self.pass_delete_gate(current.address.kind).await;
        if matches!(current.spec, Spec::DbInstance(_)) {
            return self.delete_database(current, &DbDelete::default()).await;
        }
        self.delete_inner(current)
    }

    async fn empty_bucket(&self, current: &Observed) -> Result<u64, CloudError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(("empty".into(), current.address.to_string()));
        Ok(match s.resources.get_mut(&current.address) {
            Some(o) if o.status.holds_data => {
                o.status.holds_data = false;
                1
            }
            _ => 0,
        })
    }

    async fn delete_database(&self, current: &Observed, how: &DbDelete) -> Result<(), CloudError> {
        self.pass_delete_gate(current.address.kind).await;
        let Spec::DbInstance(db) = &current.spec else {
            return Err(err(
                ErrorKind::Other,
                "DeleteDBInstance",
                &current.address,
                "not a database",
            ));
        };
        {
            let mut s = self.state.lock().unwrap();
            let protected = match s.resources.get(&current.address).map(|o| &o.spec) {
                Some(Spec::DbInstance(now)) => now.deletion_protection,
                _ => return Ok(()),
            };
            if protected {
                if !how.disable_deletion_protection {
                    return Err(err(
                        ErrorKind::Other,
                        "DeleteDBInstance",
                        &current.address,
                        "InvalidParameterCombination: Cannot delete protected DB Instance",
                    ));
                }
                s.calls.push(("update".into(), current.address.to_string()));
                if let Some(Observed {
                    spec: Spec::DbInstance(now),
                    ..
                }) = s.resources.get_mut(&current.address)
                {
                    now.deletion_protection = false;
                }
            }
        }
        self.delete_inner(current)?;
        if let (None, Some(snap)) = (&db.replica_of, &how.final_snapshot) {
            self.state.lock().unwrap().snapshots.push(snap.clone());
        }
        Ok(())
    }

    async fn engine_versions(&self, _engine: &str, major: &str) -> Result<Option<Vec<String>>, CloudError> {
        let s = self.state.lock().unwrap();
        Ok(s.engine_versions.as_ref().map(|all| {
            all.iter()
                .filter(|v| v.split('.').next() == Some(major))
                .cloned()
                .collect()
        }))
    }
    /// Read-only: records no call.
    async fn preflight(&self, p: &Preconditions) -> Result<Vec<Missing>, CloudError> {
        let s = self.state.lock().unwrap();
        let wanted = p
            .images
            .keys()
            .map(|i| Precondition::Image(i.clone()))
            .chain(p.key_pair.iter().map(|k| Precondition::KeyPair(k.clone())))
            .chain(p.certificates.keys().map(|c| Precondition::Certificate(c.clone())));
        Ok(wanted
            .filter(|w| !s.preexisting.contains(w))
            .filter(|w| !matches!(w, Precondition::Image(i) if PUBLIC_IMAGE_PARAMETERS.iter().any(|(_, id)| id == i)))
            .map(|w| Missing::new(w, DOES_NOT_EXIST))
            .collect())
    }
    async fn wait(
        &self,
        current: &Observed,
        gone: bool,
        _timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<Observed, CloudError> {
        progress("ready");
        let s = self.state.lock().unwrap();
        match (gone, s.resources.get(&current.address)) {
            (true, None) => Ok(current.clone()),
            (true, Some(_)) => Err(err(ErrorKind::Timeout, "Wait", &current.address, "still there")),
            (false, Some(o)) => Ok(o.clone()),
            (false, None) => Err(err(ErrorKind::NotFound, "Wait", &current.address, "not found")),
        }
    }
}

/// An in-memory object store with S3's `If-None-Match: *` semantics.
#[derive(Default)]
pub struct MemStore {
    bucket: String,
    objects: Mutex<BTreeMap<String, (Vec<u8>, BTreeMap<String, String>)>>,
}

impl MemStore {
    pub fn new(bucket: &str) -> Self {
        MemStore {
            bucket: bucket.into(),
            objects: Mutex::default(),
        }
    }
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

impl fabrs_cloud::Store for MemStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }
    async fn head(&self, key: &str) -> Result<Option<fabrs_cloud::ObjectMeta>, CloudError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|(b, m)| fabrs_cloud::ObjectMeta {
                size: b.len() as u64,
                metadata: m.clone(),
            }))
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        Ok(self.objects.lock().unwrap().get(key).map(|(b, _)| b.clone()))
    }
    async fn put_new(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
    ) -> Result<fabrs_cloud::PutOutcome, CloudError> {
        let mut o = self.objects.lock().unwrap();
        if o.contains_key(key) {
            return Ok(fabrs_cloud::PutOutcome::AlreadyExists);
        }
        o.insert(key.into(), (body, metadata));
        Ok(fabrs_cloud::PutOutcome::Created)
    }
    async fn put_file_new(
        &self,
        key: &str,
        path: &std::path::Path,
        metadata: BTreeMap<String, String>,
    ) -> Result<fabrs_cloud::PutOutcome, CloudError> {
        let body = std::fs::read(path)
            .map_err(|e| CloudError::new(ErrorKind::Other, "PutObject", path.display().to_string(), e.to_string()))?;
        self.put_new(key, body, metadata).await
    }
    async fn delete(&self, key: &str) -> Result<(), CloudError> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, CloudError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}
