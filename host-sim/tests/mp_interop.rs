//! Interop: the independent Python RSA client (`tests/interop/rsa_client.py`, public tools'
//! format: RSA-2048, PKCS#1 v1.5, byte-reversed signature, zlib body) registers against the
//! emulator.

use mpagent_sim::mp::db::{ClientStatus, SiteDb};
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use std::path::PathBuf;
use std::process::Command;

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/rsa_client.py")
}

async fn start() -> (tempfile::TempDir, PathBuf, MpServer) {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("site.db");
    let config = MpConfig {
        site_code: "P01".into(),
        db_path: db_path.clone(),
        approval: Approval::Auto,
        limits: Limits::default(),
        mp_host: "mp.test".into(),
        strict: false,
    };
    let server = MpServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (dir, db_path, server)
}

/// Runs the client; returns (exit success, stdout).
async fn run_client(
    url: String,
    extra: &'static [&'static str],
    cert_out: PathBuf,
) -> (bool, String) {
    let script = client_script();
    assert!(script.exists(), "{} missing", script.display());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .arg(&url)
            .args(extra)
            .arg("--save-cert")
            .arg(&cert_out)
            .output()
            .expect("python3 must be installed (with the `cryptography` package)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty() || out.status.success(),
        "client stderr: {stderr}"
    );
    (out.status.success(), stdout)
}

fn smsid_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("SMSID="))
        .expect("client printed SMSID=")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_rsa_client_registers() {
    let (dir, db_path, server) = start().await;
    let url = format!("http://{}", server.local_addr());
    let cases: [(&[&str], &str); 3] = [
        (&[], "SHA-256, zlib body and reply"),
        (
            &["--no-compress", "--netbios", "PLAIN"],
            "SHA-256, uncompressed",
        ),
        (
            &["--sha1", "--netbios", "OLD2007"],
            "SHA-1 without HashAlgorithm",
        ),
    ];
    for (i, (args, what)) in cases.into_iter().enumerate() {
        let cert_path = dir.path().join(format!("client{i}.der"));
        let (ok, stdout) = run_client(url.clone(), args, cert_path.clone()).await;
        let rejections = SiteDb::open(&db_path).unwrap().rejections().unwrap();
        assert!(
            ok,
            "{what}: client failed: {stdout}; rejections: {rejections:?}"
        );
        assert!(stdout.contains("STATUS=0"), "{what}: {stdout}");
        let smsid = smsid_of(&stdout);
        let row = SiteDb::open(&db_path)
            .unwrap()
            .client(&smsid)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: {smsid} not in the site database"));
        assert_eq!(row.agent_type, 0, "{what}");
        assert_eq!(row.status, ClientStatus::Approved, "{what}");
        assert_eq!(
            row.cert_der,
            std::fs::read(&cert_path).unwrap(),
            "{what}: stored certificate"
        );
    }
    assert_eq!(SiteDb::open(&db_path).unwrap().clients().unwrap().len(), 3);
    assert!(SiteDb::open(&db_path)
        .unwrap()
        .rejections()
        .unwrap()
        .is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_fails_against_a_refusing_mp() {
    // The client must not report success when the MP refuses: a body limit below the request size.
    let dir = tempfile::tempdir().unwrap();
    let config = MpConfig {
        site_code: "P01".into(),
        db_path: dir.path().join("site.db"),
        approval: Approval::Auto,
        limits: Limits {
            max_body_bytes: 1000,
            ..Limits::default()
        },
        mp_host: "mp.test".into(),
        strict: false,
    };
    let server = MpServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (ok, stdout) = run_client(
        format!("http://{}", server.local_addr()),
        &[],
        dir.path().join("c.der"),
    )
    .await;
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("HTTP 403"), "{stdout}");
    server.shutdown().await;
}
