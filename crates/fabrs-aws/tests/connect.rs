//! connect(): the default credential chain and AWS_ENDPOINT_URL from the
//! environment, and an explicit endpoint that wins over it. One test in its
//! own binary, because it sets process environment variables.

use fabrs_aws::{AwsCloud, ConnectOptions};
use fabrs_cloud::{Cloud, Scope};
use fabrs_plan::resource::VpcRef;
use fabrs_test_support::{Moto, free_port};

#[test]
fn connect_uses_the_environment_and_an_explicit_endpoint_wins() {
    let moto = Moto::start();
    let port = moto.port;
    let dead = free_port();
    // SAFETY: the only test of this binary, before any other thread exists.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scope = Scope {
        project: "p".into(),
        environment: "connect".into(),
        region: "us-east-1".into(),
        vpc: VpcRef::Default,
        names: Default::default(),
        launch_configuration_prefix: "p-connect-".into(),
        image_parameters: Vec::new(),
        db_identifiers: Vec::new(),
        kinds: None,
    };
    let result = rt.block_on(async {
        // From the environment: credentials and endpoint.
        let c = AwsCloud::connect(ConnectOptions {
            region: "us-east-1".into(),
            endpoint_url: None,
            profile: None,
        })
        .await?;
        let inv = c.discover(&scope).await?;
        assert!(inv.resources.is_empty());
        let (ops, attempts) = c.api_calls();
        assert!(
            ops >= 10 && attempts >= ops,
            "discover counted {ops} operations, {attempts} attempts"
        );
        // The environment points at a dead port; the explicit endpoint wins.
        unsafe { std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{dead}")) };
        let c = AwsCloud::connect(ConnectOptions {
            region: "us-east-1".into(),
            endpoint_url: Some(format!("http://127.0.0.1:{port}")),
            profile: None,
        })
        .await?;
        c.discover(&scope).await?;
        Ok::<_, fabrs_cloud::CloudError>(())
    });
    drop(moto);
    result.expect("connect and discover");
}
