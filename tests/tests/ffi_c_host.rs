//! The C API end to end: `core/ffi/examples/c-host` (C over `libmpagent_ffi.a`, BSD sockets, a
//! file as its flash) against the MP emulator, with the site database as the witness.
//!
//! The program is built by `core/ffi/examples/c-host/build.sh` (tests/run-all.sh runs it before
//! the host tests) into `target/ffi/c-host`; `MPAGENT_C_HOST` names another build.

use std::path::{Path, PathBuf};

use mpagent_sim::mp::db::{NewPolicy, PolicyTarget, SiteDb};
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};

fn c_host() -> PathBuf {
    if let Some(path) = std::env::var_os("MPAGENT_C_HOST") {
        return PathBuf::from(path);
    }
    // target/debug/deps/ffi_c_host-… → target/ffi/c-host
    let exe = std::env::current_exe().expect("the test's own path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test runs from target/<profile>/deps");
    let path = target.join("ffi").join("c-host");
    assert!(
        path.exists(),
        "{} is missing: build it with core/ffi/examples/c-host/build.sh (or set MPAGENT_C_HOST)",
        path.display()
    );
    path
}

async fn start_mp(dir: &Path, approval: Approval) -> MpServer {
    MpServer::start(
        MpConfig {
            site_code: "PS1".into(),
            db_path: dir.join("site.db"),
            approval,
            limits: Limits::default(),
            mp_host: "mp.test.local".into(),
            strict: false,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("MP starts")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run_c_host(mp: &MpServer, state: &Path, name: &str) -> Run {
    run_c_host_with(mp, state, name, &[]).await
}

async fn run_c_host_with(mp: &MpServer, state: &Path, name: &str, extra: &[&str]) -> Run {
    let out = tokio::process::Command::new(c_host())
        .arg("--mp")
        .arg(format!("http://{}", mp.local_addr()))
        .args(["--site-code", "PS1", "--name", name, "--state"])
        .arg(state)
        .args(extra)
        .output()
        .await
        .expect("c-host runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn smsid_of(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("SMSID "))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("no SMSID line: {}\n{}", run.stdout, run.stderr))
}

#[tokio::test]
async fn the_c_host_registers_and_its_heartbeat_and_inventory_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let state = dir.path().join("chost");

    let first = run_c_host(&mp, &state, "CHOST-1").await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stderr.contains("identity made and saved"),
        "{}",
        first.stderr
    );
    let smsid = smsid_of(&first);
    assert!(smsid.starts_with("GUID:"), "{smsid}");

    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let row = format!("{:?}", clients[0]);
    assert!(row.contains(&smsid) && row.contains("CHOST-1"), "{row}");
    let messages = db.messages(Some(&smsid)).unwrap();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["ddr", "hinv-full", "status"], "{messages:?}");
    // The inventory is the one the C program streamed, instance by instance.
    let hinv = &messages[1].body;
    for needle in [
        "Win32_ComputerSystem",
        "Win32_OperatingSystem",
        "Win32_Processor",
        "<Model>c-host</Model>",
    ] {
        assert!(hinv.contains(needle), "{needle} not in {hinv}");
    }
    assert!(
        messages[0].body.contains("chost-1.mpagent.test"),
        "{}",
        messages[0].body
    );
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());

    // A restart loads the identity from the flash file and keeps the SMSID.
    let second = run_c_host(&mp, &state, "CHOST-1").await;
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("identity loaded"),
        "{}",
        second.stderr
    );
    assert_eq!(smsid_of(&second), smsid);
    assert_eq!(db.clients().unwrap().len(), 1);
    assert_eq!(db.messages(Some(&smsid)).unwrap().len(), 6);
    mp.shutdown().await;
}

#[tokio::test]
async fn the_pump_variant_registers_and_reports_with_the_caller_owning_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let state = dir.path().join("chost");
    let first = run_c_host_with(&mp, &state, "CHOST-P", &["--pump"]).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let smsid = smsid_of(&first);
    assert_eq!(
        db_messages(dir.path(), &smsid),
        ["ddr", "hinv-full", "status"]
    );
    // The identity the pump run stored is the one the blocking variant loads.
    let second = run_c_host(&mp, &state, "CHOST-P").await;
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("identity loaded"),
        "{}",
        second.stderr
    );
    assert_eq!(smsid_of(&second), smsid);
    assert!(SiteDb::open(dir.path().join("site.db"))
        .unwrap()
        .rejections()
        .unwrap()
        .is_empty());
    mp.shutdown().await;
}

#[tokio::test]
async fn policy_reaches_the_c_callbacks_is_kept_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let body = "<Policy><Setting Name=\"Duplex\" Value=\"on\"/></Policy>";
    db.add_policy(&NewPolicy {
        policy_id: "{11111111-2222-3333-4444-555555555555}",
        version: "2.00",
        target: PolicyTarget::All,
        category: None,
        flags: 0,
        body,
    })
    .unwrap();
    let state = dir.path().join("chost");
    let run = run_c_host_with(&mp, &state, "CHOST-4", &["--verbose"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("policy {11111111-2222-3333-4444-555555555555}.2.00 applied"),
        "{}",
        run.stderr
    );
    // policy_body streamed it into a file that policy_done kept under its ID and version.
    let kept = std::fs::read(state.join("policy-_11111111-2222-3333-4444-555555555555_.2.00.xml"))
        .unwrap();
    // The MP serves policy bodies as UTF-16LE with a byte order mark: kept byte for byte.
    assert_eq!(kept.get(..2), Some(&[0xFF, 0xFE][..]), "{kept:?}");
    let units: Vec<u16> = kept[2..]
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), body);
    let smsid = smsid_of(&run);
    let kinds = db_messages(dir.path(), &smsid);
    assert!(kinds.contains(&"state".to_owned()), "{kinds:?}");
    assert_eq!(db.policy_fetches().unwrap().len(), 1);

    // policy_applied answers yes from the file: the next run does not fetch it again.
    let again = run_c_host(&mp, &state, "CHOST-4").await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(db.policy_fetches().unwrap().len(), 1);
    mp.shutdown().await;
}

/// An MP that accepts connections and never answers: the pump's caller times the exchange out
/// (`MPAGENT_PUMP_TIMEOUT`), the agent counts it as a failed attempt and backs off.
#[tokio::test]
async fn a_pumped_exchange_the_mp_never_answers_is_given_up_and_backed_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            open.push(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(c_host())
        .arg("--mp")
        .arg(format!("http://{addr}"))
        .args([
            "--site-code",
            "PS1",
            "--name",
            "CHOST-T",
            "--pump",
            "--verbose",
        ])
        .args(["--io-timeout-ms", "300", "--state"])
        .arg(dir.path().join("chost"))
        .output()
        .await
        .unwrap();
    held.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sending a registration request"),
        "{stderr}"
    );
    assert!(stderr.contains("not registered"), "{stderr}");
    assert!(stderr.contains("registration: trying again at"), "{stderr}");
    // Backed off: the agent's next attempt lies in the future.
    let until: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("c-host: idle until "))
        .and_then(|l| l.split(';').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no idle line: {stderr}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(until > now, "idle until {until}, now {now}: {stderr}");
}

#[tokio::test]
async fn a_pending_c_host_says_so_and_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Pending).await;
    let run = run_c_host(&mp, &dir.path().join("chost"), "CHOST-2").await;
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("approval pending"), "{}", run.stdout);
    let smsid = smsid_of(&run);
    assert!(db_messages(dir.path(), &smsid).is_empty());
    mp.shutdown().await;
}

#[tokio::test]
async fn a_bad_site_code_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let out = tokio::process::Command::new(c_host())
        .arg("--mp")
        .arg(format!("http://{}", mp.local_addr()))
        .args(["--site-code", "P-1", "--name", "CHOST-3", "--state"])
        .arg(dir.path().join("chost"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mpagent_init"), "{stderr}");
    assert!(stderr.to_lowercase().contains("site code"), "{stderr}");
    assert!(SiteDb::open(dir.path().join("site.db"))
        .unwrap()
        .clients()
        .unwrap()
        .is_empty());
    mp.shutdown().await;
}

fn db_messages(dir: &Path, smsid: &str) -> Vec<String> {
    SiteDb::open(dir.join("site.db"))
        .unwrap()
        .messages(Some(smsid))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect()
}

#[tokio::test]
async fn a_state_message_from_c_is_delivered_under_the_smsid() {
    let dir = tempfile::tempdir().unwrap();
    let mp = start_mp(dir.path(), Approval::Auto).await;
    let state = dir.path().join("chost");
    let run = run_c_host_with(&mp, &state, "CHOST-S", &["--report-state", "fw-update=2"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("state of fw-update queued"),
        "{}",
        run.stderr
    );
    let smsid = smsid_of(&run);
    let db = SiteDb::open(dir.path().join("site.db")).unwrap();
    let messages = db.messages(Some(&smsid)).unwrap();
    let state_msg = messages
        .iter()
        .find(|m| m.kind == "state")
        .unwrap_or_else(|| panic!("no state message: {messages:?}"));
    for needle in [
        r#"<Topic ID="fw-update""#,
        r#"Type="9003""#,
        r#"<State ID="2""#,
    ] {
        assert!(
            state_msg.body.contains(needle),
            "{needle} not in {}",
            state_msg.body
        );
    }
    // A topic longer than the header's MPAGENT_MAX_STATE_TOPIC is refused before it is queued.
    let long = format!("{}=1", "t".repeat(130));
    let refused = run_c_host_with(&mp, &state, "CHOST-S", &["--report-state", &long]).await;
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    mp.shutdown().await;
}
