//! Maintenance on/off over SSH against a real nginx running fabrs's rendered
//! nginx.conf. Only ports and the log/pid/temp paths are moved
//! (fabrs_render::Layout); the flag stays at its production path,
//! /srv/<project>/maintenance.on, with a project name of this test's own.

use std::path::Path;
use std::time::Duration;

use fabrs_remote::{Outcome, maintenance_command, run_all};
use fabrs_test_support::nginx::*;
use fabrs_test_support::root;
use fabrs_test_support::sshd::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_on_and_off_over_ssh_with_real_nginx() {
    // staging, as a project of this test's own.
    let mut env = fabrs_config::load_file(&root().join("environments/staging.yaml")).unwrap();
    env.project = format!("maint{}", std::process::id());
    let stack = WebStack::start(env, &root());
    let (https, flag) = (stack.https, stack.flag.clone());
    // Staging has an HTTPS listener: port 80 sends everything to HTTPS (its
    // health check is HTTPS:443, so that path too); 443 serves.
    let location = format!("https://{HOST}/some/page?q=1");
    assert_eq!(get_plain(stack.http, "/some/page?q=1"), (301, Some(location)));
    assert_eq!(get_plain(stack.http, "/healthcheck.html").0, 301);
    let get = get_tls;
    assert_eq!(get(https, "/"), (200, "page".into()));
    assert_eq!(get(https, "/healthcheck.html"), (200, "page".into()));

    let sshd = Sshd::start(&["127.0.0.2"]);
    let web1 = [sshd.target(1, "i-0web1")];
    let ssh = sshd.options(Duration::from_secs(30));

    // On.
    let r = run_all(&web1, &maintenance_command(&flag, true, false), &ssh).await;
    assert_eq!(
        r[0].outcome,
        Outcome::Exited(0),
        "{:?}",
        String::from_utf8_lossy(&r[0].stderr)
    );
    assert!(Path::new(&flag).is_file());
    let (status, body) = get(https, "/");
    assert_eq!(status, 503);
    assert!(body.contains("down for maintenance"), "{body}");
    assert_eq!(get(https, "/healthcheck.html"), (200, "ok (maintenance)\n".into()));
    assert_eq!(get(https, "/static/maintenance.html").0, 503);
    // Again: still on, still fine.
    let r = run_all(&web1, &maintenance_command(&flag, true, false), &ssh).await;
    assert_eq!(r[0].outcome, Outcome::Exited(0));

    // Off (twice: idempotent too).
    for _ in 0..2 {
        let r = run_all(&web1, &maintenance_command(&flag, false, false), &ssh).await;
        assert_eq!(
            r[0].outcome,
            Outcome::Exited(0),
            "{:?}",
            String::from_utf8_lossy(&r[0].stderr)
        );
    }
    assert!(!Path::new(&flag).exists());
    assert_eq!(get(https, "/"), (200, "page".into()));
    assert_eq!(get(https, "/healthcheck.html"), (200, "page".into()));
}
