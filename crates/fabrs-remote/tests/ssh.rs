//! run_all against real sshds on 127.0.0.2-4 (tests/peers/sshd-up).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use fabrs_remote::{Outcome, Target, parse_endpoints, prefixed_lines, run_all};
use fabrs_test_support::sshd::*;

/// Each server says which address it was reached on (the third field of
/// $SSH_CONNECTION); 127.0.0.3 exits 3.
const COMMAND: &str =
    r#"set -- $SSH_CONNECTION; echo "hello from $3:$4"; echo "err from $3" >&2; case $3 in 127.0.0.3) exit 3;; esac"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_has_its_own_output_and_status() {
    let sshd = Sshd::start(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let targets = [
        sshd.target(1, "i-0aaa"),
        sshd.target(2, "i-0bbb"),
        sshd.target(3, "i-0ccc"),
    ];
    let started = Instant::now();
    let results = run_all(&targets, COMMAND, &sshd.options(Duration::from_secs(30))).await;
    let took = started.elapsed();

    assert_eq!(results.len(), 3);
    for (r, t) in results.iter().zip(&targets) {
        assert_eq!(&r.target, t, "results come in the order of the targets");
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            format!("hello from {}:{}\n", t.host, t.port)
        );
        assert_eq!(String::from_utf8_lossy(&r.stderr), format!("err from {}\n", t.host));
    }
    assert_eq!(results[0].outcome, Outcome::Exited(0));
    assert_eq!(results[1].outcome, Outcome::Exited(3));
    assert_eq!(results[2].outcome, Outcome::Exited(0));
    assert!(results[0].success() && !results[1].success() && results[2].success());

    let p = |n: usize| targets[n].port;
    assert_eq!(
        prefixed_lines(&results),
        [
            format!("i-0aaa | hello from 127.0.0.2:{}", p(0)),
            "i-0aaa ! err from 127.0.0.2".to_string(),
            "i-0aaa = exit 0".to_string(),
            format!("i-0bbb | hello from 127.0.0.3:{}", p(1)),
            "i-0bbb ! err from 127.0.0.3".to_string(),
            "i-0bbb = exit 3".to_string(),
            format!("i-0ccc | hello from 127.0.0.4:{}", p(2)),
            "i-0ccc ! err from 127.0.0.4".to_string(),
            "i-0ccc = exit 0".to_string(),
        ]
    );
    eprintln!("three hosts in {took:?}");
    sshd.assert_no_ssh_clients_left(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_fails_that_host_only() {
    let sshd = Sshd::start(&["127.0.0.2", "127.0.0.3"]);
    let closed_port = {
        let l = TcpListener::bind("127.0.0.5:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = Target {
        label: "i-0dead".into(),
        host: "127.0.0.5".into(),
        port: closed_port,
        user: current_user(),
    };
    let targets = [sshd.target(1, "i-0aaa"), closed.clone(), sshd.target(2, "i-0bbb")];
    let results = run_all(&targets, "echo ok", &sshd.options(Duration::from_secs(30))).await;

    assert_eq!(results[0].outcome, Outcome::Exited(0));
    assert_eq!(results[0].stdout, b"ok\n");
    assert_eq!(results[2].outcome, Outcome::Exited(0));
    assert_eq!(results[2].stdout, b"ok\n");
    let Outcome::Failed(why) = &results[1].outcome else {
        panic!("expected a connect error, got {:?}", results[1].outcome)
    };
    let dest = format!("{}@127.0.0.5:{closed_port}", current_user());
    assert!(why.starts_with(&format!("cannot connect to {dest}: ")), "{why}");
    assert!(why.contains("Connection refused"), "{why}");
    assert!(!why.contains('\n'));
    assert!(results[1].stdout.is_empty() && results[1].stderr.is_empty());
    eprintln!("{why}");
    let lines = prefixed_lines(&results);
    assert!(lines.contains(&format!("i-0dead = error: {why}")), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_key_is_a_connect_error() {
    let sshd = Sshd::start(&["127.0.0.2"]);
    let d = sshd.dir.path();
    // The script's config without its key, and a key the server does not know.
    let config = std::fs::read_to_string(d.join("ssh_config")).unwrap();
    let config: String = config
        .lines()
        .filter(|l| !l.contains("IdentityFile"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d.join("other_config"), config).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("other_key"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut opts = sshd.options(Duration::from_secs(30));
    opts.config_file = Some(d.join("other_config"));
    opts.identity = Some(d.join("other_key"));
    let t = sshd.target(1, "srv");
    let r = run_all(std::slice::from_ref(&t), "echo never", &opts).await;
    let Outcome::Failed(why) = &r[0].outcome else {
        panic!("expected an authentication error, got {:?}", r[0].outcome)
    };
    assert!(
        why.starts_with(&format!("cannot connect to {}: ", t.destination())),
        "{why}"
    );
    assert!(why.contains("Permission denied (publickey)"), "{why}");
    assert!(r[0].stdout.is_empty());
    eprintln!("{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_timeout_is_cut_off() {
    let sshd = Sshd::start(&["127.0.0.2", "127.0.0.3"]);
    let targets = [sshd.target(1, "slow"), sshd.target(2, "slow-too")];
    let started = Instant::now();
    let results = run_all(&targets, "sleep 30", &sshd.options(Duration::from_secs(1))).await;
    let took = started.elapsed();
    for r in &results {
        assert_eq!(r.outcome, Outcome::Failed("timed out after 1s".into()));
        assert!(!r.success());
    }
    // The timeout counts from the command's start; connecting takes ~0.5-2 s
    // here depending on load.
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    eprintln!("timed out in {took:?}");
    assert_eq!(
        prefixed_lines(&results),
        [
            "slow     = error: timed out after 1s",
            "slow-too = error: timed out after 1s"
        ]
    );
    // The ControlMasters went with the timed-out sessions.
    sshd.assert_no_ssh_clients_left(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_before_a_timeout_is_kept() {
    let sshd = Sshd::start(&["127.0.0.2"]);
    // 4 s: "started" reaches us well within it (~0.5 s) even on a busy machine.
    let results = run_all(
        &[sshd.target(1, "srv")],
        "echo started; echo to stderr >&2; sleep 30; echo never",
        &sshd.options(Duration::from_secs(4)),
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Failed("timed out after 4s".into()));
    assert_eq!(String::from_utf8_lossy(&results[0].stdout), "started\n");
    assert_eq!(String::from_utf8_lossy(&results[0].stderr), "to stderr\n");
    sshd.assert_no_ssh_clients_left(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_shell_exit_codes_and_quoting_pass_through() {
    let sshd = Sshd::start(&["127.0.0.2"]);
    let t = [sshd.target(1, "srv")];
    let opts = sshd.options(Duration::from_secs(30));
    // 127 is "command not found" (openssh reports it as an error; we keep the status).
    let r = run_all(&t, "no-such-command-here", &opts).await;
    assert_eq!(r[0].outcome, Outcome::Exited(127));
    assert!(String::from_utf8_lossy(&r[0].stderr).contains("not found"));
    // The command line reaches the remote shell as written.
    let word = "it's a $(test) `x` ; *";
    let cmd = format!("printf '%s\\n' {}", fabrs_remote::shell_quote(word));
    let r = run_all(&t, &cmd, &opts).await;
    assert_eq!(r[0].outcome, Outcome::Exited(0));
    assert_eq!(String::from_utf8_lossy(&r[0].stdout), format!("{word}\n"));
    // No targets, no work.
    assert!(run_all(&[], "true", &opts).await.is_empty());
}

#[test]
fn endpoint_file_errors_name_path_line_and_column() {
    let path = std::path::Path::new("/tmp/fabrs-endpoints");
    let e = parse_endpoints(path, "i-0123abcd  127.0.0.2:2222\ni-0456  127.0.0.3:99999 # too big\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/tmp/fabrs-endpoints:2:19: bad port '99999': a number from 1 to 65535"
    );
    assert_eq!((e.line, e.col), (2, 19));
    let e = parse_endpoints(path, "# x\ni-1 127.0.0.2:22\n\n   i-1 127.0.0.3:22\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/tmp/fabrs-endpoints:4:4: duplicate id 'i-1' (first on line 2)"
    );
}
