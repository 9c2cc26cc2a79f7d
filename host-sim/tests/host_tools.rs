//! The host client as a user meets it: a client configured for another site is stopped before
//! it registers, and a second process on a state directory in use is told who holds it.

use mpagent_sim::client::{self, site_check::SiteMismatch, ClientOptions};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use mpagent_sim::state_lock::StateLockError;

async fn mp(dir: &std::path::Path) -> MpServer {
    let config = MpConfig {
        site_code: "PS1".into(),
        db_path: dir.join("site.db"),
        approval: Approval::Auto,
        limits: Limits::default(),
        mp_host: "mp.tools.test".into(),
        strict: false,
    };
    MpServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_site_is_stopped_before_registering() {
    let dir = tempfile::tempdir().unwrap();
    let server = mp(dir.path()).await;
    let opts = ClientOptions::mixed(&server.url(), "ps2", dir.path().join("st"), "WRONG-SITE");
    let err = client::register(&opts, &mut |_| {}).await.unwrap_err();
    let mismatch = err.downcast_ref::<SiteMismatch>().expect("a SiteMismatch");
    assert_eq!(mismatch.configured, "PS2");
    assert_eq!(mismatch.served, "PS1");
    let text = err.to_string();
    assert!(
        text.contains("--site-code PS2") && text.contains("serves site PS1"),
        "{text}"
    );
    // The right site code registers.
    let opts = ClientOptions::mixed(&server.url(), "PS1", dir.path().join("st"), "WRONG-SITE");
    client::register(&opts, &mut |_| {}).await.unwrap();
    server.shutdown().await;
    let clients = SiteDb::open(dir.path().join("site.db"))
        .unwrap()
        .clients()
        .unwrap();
    assert_eq!(
        clients.len(),
        1,
        "only the right-site registration reached the MP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_in_use_is_refused_with_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let server = mp(dir.path()).await;
    let state = dir.path().join("st");
    std::fs::create_dir_all(&state).unwrap();
    let held = mpagent_sim::client::state::StateDir::open_locked(&state).unwrap();
    let opts = ClientOptions::mixed(&server.url(), "PS1", state.clone(), "TWIN");
    let err = client::register(&opts, &mut |_| {}).await.unwrap_err();
    match err.downcast_ref::<StateLockError>() {
        Some(StateLockError::InUse { pid, .. }) => assert_eq!(*pid, Some(std::process::id())),
        other => panic!("expected InUse, got {other:?}: {err:#}"),
    }
    assert!(!state.join("key.pk8").exists(), "nothing made while in use");
    drop(held);
    client::register(&opts, &mut |_| {}).await.unwrap();
    server.shutdown().await;
}

/// `mpagent-sim` itself, for what only a process shows (exit codes, signals).
fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_mpagent-sim"))
}

#[test]
fn admin_listing_into_a_closed_pipe_ends_by_sigpipe_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("site.db");
    SiteDb::open(&db).unwrap();
    for _ in 0..3 {
        let mut child = bin()
            .args(["mp", "rejections", "--db"])
            .arg(&db)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the listing is written (`| head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_ne!(out.status.code(), Some(101), "{stderr}");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{stderr}");
    }
}

#[test]
fn exit_codes_tell_usage_and_missing_database_apart() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["mp", "clients", "--db"])
        .arg(dir.path().join("typo.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no site database there"));
    assert!(!dir.path().join("typo.db").exists());
    let out = bin()
        .args([
            "client",
            "register",
            "--mp",
            "http://127.0.0.1:9",
            "--site-code",
            "PS12",
        ])
        .arg("--state")
        .arg(dir.path().join("st"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--site-code \"PS12\""), "{stderr}");
    let help = bin().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("5    state directory in use"));
}

#[test]
fn fleet_json_keeps_stdout_for_the_summary_and_shows_progress_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["fleet", "--clients", "4", "--concurrency", "2", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is the JSON summary alone ({e}): {stderr}"));
    assert_eq!(summary["registered"], 4, "{summary}");
    // stderr is not a terminal here: progress comes as plain lines, the last one final.
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("fleet: "))
        .unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert!(last.contains("4 registered"), "{last}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no terminal control codes: {stderr}"
    );
}
