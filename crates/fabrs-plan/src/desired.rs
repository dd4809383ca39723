//! The desired state: what the account should hold for an environment.

use std::collections::BTreeMap;

use fabrs_config::network::{role_groups, security_groups};
use fabrs_config::revision::or_none;
use fabrs_config::{Environment, Launch, Protocol, Revision, RoleKind, Scaling, Source};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::addr::{self, TAG_DB_ROLE, TAG_GROUP, TAG_INDEX, TAG_NAME, TAG_REVISION};
use crate::resource::*;

/// What the caller knows about each role's user-data: its fingerprint (None
/// while it depends on addresses that do not exist yet) and the revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleLaunch {
    pub user_data_sha256: Option<String>,
    pub revision: Option<Revision>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub resources: BTreeMap<Address, Spec>,
}

impl Desired {
    /// Every resource's cloud name (to find look-alikes that are in the way).
    pub fn names(&self) -> BTreeMap<Address, String> {
        self.resources
            .iter()
            .filter_map(|(a, s)| name_of(s).map(|n| (a.clone(), n)))
            .collect()
    }
}

pub fn name_of(spec: &Spec) -> Option<String> {
    spec.as_kind().aws_name()
}

/// SSE-S3 default encryption (no key to manage; `aws:kms` is a later choice).
pub const BUCKET_ENCRYPTION: &str = "AES256";
/// ACLs disabled: every object is the bucket owner's.
pub const BUCKET_OWNERSHIP: &str = "BucketOwnerEnforced";

pub fn base(env: &Environment) -> String {
    format!("{}-{}", env.project, env.name)
}

/// Classic ELB names: at most 32 characters, letters, digits and hyphens.
pub fn load_balancer_name(env: &Environment) -> String {
    let mut n = base(env);
    n.truncate(32);
    n.trim_end_matches('-').to_string()
}

pub fn launch_configuration_prefix(env: &Environment) -> String {
    format!("{}-", base(env))
}

/// `<project>-<env>-<role>-<revision>-<hash8>`: the revision readable, the same
/// content always the same name. Empty while the content is not fully known.
pub fn launch_configuration_name(env: &Environment, launch: &LaunchSpec) -> Option<String> {
    launch.user_data_sha256.as_ref()?;
    let digest = Sha256::digest(serde_json::to_vec(launch).expect("specs serialize"));
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{hash}",
        base(env),
        launch.role,
        or_none(launch.revision.as_ref())
    ))
}

fn tags(env: &Environment, role: Option<&str>, name: &str, extra: &[(&str, String)]) -> Tags {
    let mut t: Tags = addr::ownership_tags(env);
    if let Some(r) = role {
        t.insert(addr::TAG_ROLE.into(), r.into());
    }
    t.insert(TAG_NAME.into(), name.into());
    for (k, v) in extra {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn vpc(env: &Environment) -> VpcRef {
    match &env.network.vpc {
        fabrs_config::Vpc::Default => VpcRef::Default,
        fabrs_config::Vpc::Id(id) => VpcRef::Id(id.clone()),
    }
}

pub fn desired_state(env: &Environment, launches: &BTreeMap<RoleKind, RoleLaunch>) -> Desired {
    let mut r: BTreeMap<Address, Spec> = BTreeMap::new();
    let b = base(env);

    for g in security_groups(env) {
        let key = g.group.as_str().to_string();
        let ingress = g
            .ingress
            .iter()
            .map(|i| IngressRule {
                protocol: i.protocol.as_str().into(),
                from_port: i.from_port,
                to_port: i.to_port,
                source: match &i.source {
                    Source::Cidr(c) => RuleSource::Cidr(c.to_string()),
                    Source::Group(g) => RuleSource::Group(g.as_str().into()),
                },
            })
            .collect();
        r.insert(
            addr::security_group(&key),
            Spec::SecurityGroup(SecurityGroupSpec {
                tags: tags(env, None, &g.name, &[(TAG_GROUP, key.clone())]),
                key,
                name: g.name,
                description: g.description,
                vpc: vpc(env),
                ingress,
            }),
        );
    }

    let lb_name = load_balancer_name(env);
    let lb = &env.load_balancer;
    r.insert(
        addr::load_balancer(),
        Spec::LoadBalancer(LoadBalancerSpec {
            name: lb_name.clone(),
            listeners: lb
                .listeners
                .iter()
                .map(|l| ListenerSpec {
                    port: l.port,
                    protocol: l.protocol.as_str().into(),
                    instance_port: l.instance_port,
                    instance_protocol: l.instance_protocol.as_str().into(),
                    certificate_arn: l.certificate_arn.clone(),
                })
                .collect(),
            health_check: HealthCheckSpec {
                target: lb.health_check.target.clone(),
                interval_secs: lb.health_check.interval.as_secs() as u32,
                timeout_secs: lb.health_check.timeout.as_secs() as u32,
                healthy_threshold: lb.health_check.healthy_threshold,
                unhealthy_threshold: lb.health_check.unhealthy_threshold,
            },
            security_groups: vec!["lb".into()],
            subnets: env.network.subnets.clone(),
            cross_zone: lb.cross_zone,
            idle_timeout_secs: lb.idle_timeout.as_secs() as u32,
            connection_draining_secs: Some(lb.draining_timeout.as_secs() as u32),
            tls_policies: lb
                .listeners
                .iter()
                .filter(|l| matches!(l.protocol, Protocol::Https | Protocol::Ssl))
                .map(|l| (l.port, TLS_SECURITY_POLICY.to_string()))
                .collect(),
            tags: tags(env, None, &lb_name, &[]),
        }),
    );

    let db = &env.database;
    let major = db.engine_version.split('.').next().unwrap_or("16");
    let subnet_group = format!("{b}-db");
    let param_group = format!("{b}-postgres{major}");
    r.insert(
        addr::db_subnet_group(),
        Spec::DbSubnetGroup(DbSubnetGroupSpec {
            name: subnet_group.clone(),
            description: format!("{} {} database", env.project, env.name),
            subnets: env.network.subnets.clone(),
            tags: tags(env, None, &subnet_group, &[]),
        }),
    );
    r.insert(
        addr::db_parameter_group(),
        Spec::DbParameterGroup(DbParameterGroupSpec {
            name: param_group.clone(),
            family: format!("postgres{major}"),
            description: format!("{} {} database parameters", env.project, env.name),
            parameters: db.parameters.clone(),
            tags: tags(env, None, &param_group, &[]),
        }),
    );
    let master_id = format!("{b}-db");
    let db_spec = |identifier: String, replica_of: Option<String>, class: &str, tag: String| DbInstanceSpec {
        tags: tags(env, None, &identifier, &[(TAG_DB_ROLE, tag)]),
        identifier,
        replica_of,
        instance_class: class.into(),
        engine: db.engine.clone(),
        engine_version: db.engine_version.clone(),
        storage_gb: db.storage_gb,
        db_name: db.name.clone(),
        username: db.username.clone(),
        password_secret: db.password_secret.clone(),
        multi_az: db.multi_az,
        publicly_accessible: db.publicly_accessible.value,
        backup_retention_days: db.backup_retention_days,
        security_groups: vec!["db".into()],
        subnet_group: subnet_group.clone(),
        parameter_group: param_group.clone(),
        deletion_protection: db.deletion_protection,
    };
    r.insert(
        addr::db_master(),
        Spec::DbInstance(db_spec(master_id.clone(), None, &db.instance_class, "master".into())),
    );
    for n in 0..db.replicas {
        let mut spec = db_spec(
            format!("{b}-db-replica-{n}"),
            Some(master_id.clone()),
            &db.replica_instance_class,
            format!("replica-{n}"),
        );
        // Replicas take their storage, backups and multi-AZ from the master.
        spec.backup_retention_days = 0;
        spec.multi_az = false;
        // Protection guards the data, which is the master's.
        spec.deletion_protection = false;
        r.insert(addr::db_replica(n), Spec::DbInstance(spec));
    }

    // The photo bucket: the app's data, private; destroy-env refuses it
    // while it holds data.
    let photos = fabrs_config::names::photos_bucket(env);
    r.insert(
        addr::photos_bucket(),
        Spec::Bucket(BucketSpec {
            tags: tags(env, None, &photos, &[]),
            name: photos,
            block_public_access: true,
            encryption: BUCKET_ENCRYPTION.into(),
            object_ownership: BUCKET_OWNERSHIP.into(),
            // The app deletes photos; a deleted photo must be gone.
            versioned: false,
        }),
    );

    // The artifact bucket: releases (kept as they were pushed: versioned),
    // the deploy lock and history. The project's, so every environment that
    // names it wants the same bucket.
    r.insert(
        addr::artifacts_bucket(),
        Spec::Bucket(BucketSpec {
            tags: addr::project_tags(&env.project, &env.artifacts.bucket),
            name: env.artifacts.bucket.clone(),
            block_public_access: true,
            encryption: BUCKET_ENCRYPTION.into(),
            object_ownership: BUCKET_OWNERSHIP.into(),
            versioned: true,
        }),
    );

    for kind in env.roles.keys() {
        let name = fabrs_config::names::iam_role(env, *kind);
        r.insert(
            addr::instance_role(*kind),
            Spec::InstanceRole(InstanceRoleSpec {
                role: *kind,
                tags: tags(env, Some(kind.as_str()), &name, &[]),
                path: fabrs_config::names::iam_path(&env.project, &env.name),
                policy: crate::iam::role_policy(env, *kind),
                profile: fabrs_config::names::instance_profile(env, *kind),
                name,
            }),
        );
    }

    // Every declared secret, as a SecureString under the environment's path;
    // the fingerprints come from the values (`ssm::fill_fingerprints`).
    for secret in env.secrets.keys() {
        let name = fabrs_config::names::ssm_parameter(&env.project, &env.name, secret);
        r.insert(
            addr::ssm_parameter(secret),
            Spec::SsmParameter(SsmParameterSpec {
                secret: secret.clone(),
                tags: tags(env, None, &name, &[]),
                parameter_type: "SecureString".into(),
                fingerprint: None,
                name,
            }),
        );
    }

    for (kind, role) in &env.roles {
        let name = kind.as_str();
        let launch_info = launches.get(kind).cloned().unwrap_or(RoleLaunch {
            user_data_sha256: None,
            revision: None,
        });
        let launch = LaunchSpec {
            role: *kind,
            image_id: role.ami.to_string(),
            instance_type: role.instance_type.clone(),
            security_groups: role_groups(env, *kind).iter().map(|g| g.as_str().to_string()).collect(),
            key_name: env.ssh.key_name.clone(),
            volume_gb: role.volume_gb,
            instance_profile: Some(fabrs_config::names::instance_profile(env, *kind)),
            volume_type: ROOT_VOLUME_TYPE.into(),
            volume_encrypted: true,
            metadata_http_tokens: IMDS_HTTP_TOKENS.into(),
            metadata_hop_limit: IMDS_HOP_LIMIT,
            user_data_sha256: launch_info.user_data_sha256.clone(),
            revision: launch_info.revision.clone(),
        };
        let on_lb = *kind == RoleKind::Web;
        match role.scaling {
            Scaling::Auto {
                min,
                max,
                desired,
                launch: how,
            } => {
                let group_name = format!("{b}-{name}");
                let launch_ref = match how {
                    Launch::Configuration => {
                        let lc_name = launch_configuration_name(env, &launch);
                        r.insert(
                            addr::launch_configuration(*kind),
                            Spec::LaunchConfiguration(LaunchConfigurationSpec {
                                name: lc_name.clone(),
                                launch: launch.clone(),
                            }),
                        );
                        LaunchRef::Configuration(lc_name)
                    }
                    Launch::Template => {
                        r.insert(
                            addr::launch_template(*kind),
                            Spec::LaunchTemplate(LaunchTemplateSpec {
                                name: group_name.clone(),
                                launch: launch.clone(),
                                tags: tags(env, Some(name), &group_name, &[]),
                            }),
                        );
                        LaunchRef::Template {
                            name: group_name.clone(),
                            version: None,
                        }
                    }
                };
                r.insert(
                    addr::autoscaling_group(*kind),
                    Spec::AutoScalingGroup(AutoScalingGroupSpec {
                        name: group_name.clone(),
                        role: *kind,
                        min,
                        max,
                        desired,
                        launch: launch_ref,
                        load_balancers: if on_lb { vec![lb_name.clone()] } else { vec![] },
                        subnets: env.network.subnets.clone(),
                        health_check_type: health_check_type(on_lb, launch.revision.as_ref()).into(),
                        health_check_grace_secs: 300,
                        tags: tags(
                            env,
                            Some(name),
                            &format!("{b}-{name}"),
                            &[(TAG_REVISION, or_none(launch.revision.as_ref()).to_string())],
                        ),
                    }),
                );
            }
            Scaling::Fixed { count } => {
                for i in 0..count {
                    let inst_name = format!("{b}-{name}-{i}");
                    let subnet = (!env.network.subnets.is_empty())
                        .then(|| env.network.subnets[i as usize % env.network.subnets.len()].clone());
                    r.insert(
                        addr::instance(*kind, i),
                        Spec::Instance(InstanceSpec {
                            role: *kind,
                            index: i,
                            launch: launch.clone(),
                            load_balancer: on_lb.then(|| lb_name.clone()),
                            subnet,
                            tags: tags(
                                env,
                                Some(name),
                                &inst_name,
                                &[
                                    (TAG_INDEX, i.to_string()),
                                    (TAG_REVISION, or_none(launch.revision.as_ref()).to_string()),
                                ],
                            ),
                        }),
                    );
                }
            }
        }
    }
    Desired { resources: r }
}

/// How a group judges its instances' health: by the load balancer's check
/// (`ELB`) once it is behind one and its launch installs a release; by EC2
/// status until then. A first create-env without `--revision` gives web
/// servers with no app, which fail the load balancer's check: with `ELB`
/// the group would replace them forever. The deploy that installs the first
/// release switches the group to `ELB` (`Fleet::switch_launch`).
pub fn health_check_type(behind_load_balancer: bool, revision: Option<&Revision>) -> &'static str {
    if behind_load_balancer && revision.is_some() {
        "ELB"
    } else {
        "EC2"
    }
}

/// Whether every attribute of a spec is known (user-data fingerprints depend
/// on addresses of resources that may not exist yet).
pub fn is_known(spec: &Spec) -> bool {
    spec.as_kind().is_known()
}

/// SHA-256 of a text, hex.
pub fn sha256_hex(text: &[u8]) -> String {
    Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect()
}
