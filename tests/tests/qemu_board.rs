//! The firmware for QEMU's `mps2-an386` (boards/qemu-mps2-an386: Cortex-M4F, embassy-net over the
//! emulated LAN9118) registers with the MP emulator through QEMU's user networking, with the site
//! database as the witness. A second boot reuses the stored identity and confirms the same SMSID;
//! a third boot over a torn identity record refuses to run instead of making a second identity.
//!
//! Needs `qemu-system-arm` (tests/run-all.sh installs it) and, to decode the firmware's defmt log,
//! `defmt-print` (run-all.sh installs it too). Without QEMU the boot test is skipped loudly, except
//! under CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use tokio::io::AsyncReadExt;

// The firmware's record format, compiled for the host: torn and corrupted records must be caught.
#[allow(dead_code)]
#[path = "../../boards/qemu-mps2-an386/src/record.rs"]
mod record;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const DEVICE: &str = "QEMU-1";

fn board_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../boards/qemu-mps2-an386")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Build the firmware (a no-op when tests/run-all.sh built it already) and return the ELF.
fn firmware() -> PathBuf {
    let dir = board_dir();
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--locked"])
        .current_dir(&dir)
        // The board has its own workspace, target and .cargo/config.toml: don't inherit ours.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running cargo build for the firmware");
    assert!(status.success(), "firmware build failed");
    dir.join("target/thumbv7em-none-eabihf/release/mpagent-qemu-mps2-an386")
}

/// One boot's result: QEMU's exit code (None: killed at the timeout) and the decoded log.
struct Boot {
    code: Option<i32>,
    log: String,
    elapsed: Duration,
}

async fn boot(elf: &Path, workdir: &Path) -> Boot {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("qemu-system-arm")
        .args([
            "-M",
            "mps2-an386",
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
        ])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-nic", "user,model=lan9118"])
        .arg("-kernel")
        .arg(elf)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting qemu-system-arm");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v).await;
        v
    });
    let err = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let code = match tokio::time::timeout(BOOT_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("waiting for qemu").code(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let frames = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    let mut log = decode(elf, &frames);
    if !stderr.trim().is_empty() {
        log.push_str("\n[qemu stderr]\n");
        log.push_str(&stderr);
    }
    Boot {
        code,
        log,
        elapsed: started.elapsed(),
    }
}

/// Decode defmt frames with `defmt-print`; without it, say so in the "log".
fn decode(elf: &Path, frames: &[u8]) -> String {
    use std::io::Write;
    let child = Command::new("defmt-print")
        .arg("-e")
        .arg(elf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return format!(
            "[defmt-print not installed: {} bytes of defmt frames not decoded; `cargo install --locked defmt-print`]",
            frames.len()
        );
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(frames);
    }
    let out = child.wait_with_output().expect("defmt-print");
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    log
}

/// The SMSID in the firmware's `registered GUID:…` line.
fn registered_smsid(log: &str) -> Option<String> {
    let at = log.find("registered GUID:")?;
    let id = log.get(at + "registered ".len()..)?;
    Some(id.chars().take("GUID:".len() + 36).collect())
}

fn write_config(workdir: &Path, port: u16) {
    std::fs::write(
        workdir.join("mpagent.cfg"),
        format!(
            "# written by tests/tests/qemu_board.rs\n\
             mp=http://10.0.2.2:{port}\nsite=PS1\nname={DEVICE}\nfqdn=qemu-1.test.local\nmax_failures=3\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_registers_in_qemu_and_reuses_its_identity() {
    if !have("qemu-system-arm") {
        assert!(
            !in_ci(),
            "qemu-system-arm is missing under CI: tests/run-all.sh installs it"
        );
        eprintln!(
            "\n\n*** SKIPPED firmware_registers_in_qemu_and_reuses_its_identity: qemu-system-arm is not \
             installed (apt-get install qemu-system-arm, or run tests/run-all.sh) ***\n"
        );
        return;
    }
    let decoder = have("defmt-print");
    assert!(
        decoder || !in_ci(),
        "defmt-print is missing under CI: tests/run-all.sh installs it"
    );
    if !decoder {
        eprintln!("\n*** defmt-print missing: checking the site database only, not the firmware's log ***\n");
    }
    let elf = tokio::task::spawn_blocking(firmware).await.unwrap();
    let site = tempfile::tempdir().unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let db_path = site.path().join("site.db");
    let mp = MpServer::start(
        MpConfig {
            site_code: "PS1".into(),
            db_path: db_path.clone(),
            approval: Approval::Auto,
            limits: Limits::default(),
            mp_host: "mp.test.local".into(),
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("MP starts");
    write_config(workdir.path(), mp.local_addr().port());

    // First boot: identity created, registered.
    let first = boot(&elf, workdir.path()).await;
    println!("--- first boot ({:?}) ---\n{}", first.elapsed, first.log);
    assert_eq!(
        first.code,
        Some(0),
        "first boot did not register:\n{}",
        first.log
    );
    let db = SiteDb::open(&db_path).unwrap();
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let client = &clients[0];
    assert_eq!(client.netbios_name.as_deref(), Some(DEVICE), "{client:?}");
    assert_eq!(
        client.fqdn.as_deref(),
        Some("qemu-1.test.local"),
        "{client:?}"
    );
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    let smsid = client.smsid.to_ascii_uppercase();
    if decoder {
        assert!(first.log.contains("identity created"), "{}", first.log);
        assert_eq!(
            registered_smsid(&first.log).as_deref(),
            Some(smsid.as_str()),
            "{}",
            first.log
        );
    }
    let identity = std::fs::read(workdir.path().join("identity.bin")).expect("identity.bin stored");
    let stored = record::IdentityRecord::decode(&identity).expect("identity.bin is a valid record");
    assert_eq!(
        stored.cert_der,
        client.cert_der.as_slice(),
        "the stored certificate is the registered one"
    );
    assert!(workdir.path().join("seed.bin").exists());

    // Second boot: same key, same SMSID, confirmed (the MP verified it with the stored certificate).
    let second = boot(&elf, workdir.path()).await;
    println!("--- second boot ({:?}) ---\n{}", second.elapsed, second.log);
    assert_eq!(
        second.code,
        Some(0),
        "second boot did not confirm:\n{}",
        second.log
    );
    let clients = db.clients().unwrap();
    assert_eq!(
        clients.len(),
        1,
        "the second boot made a new client: {clients:?}"
    );
    assert_eq!(clients[0].smsid.to_ascii_uppercase(), smsid);
    let confirmed: Vec<_> = db
        .events()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "confirmed")
        .collect();
    assert_eq!(confirmed.len(), 1, "{confirmed:?}");
    assert_eq!(
        confirmed[0].smsid.as_deref().map(str::to_ascii_uppercase),
        Some(smsid.clone())
    );
    if decoder {
        assert!(second.log.contains("identity loaded"), "{}", second.log);
        assert_eq!(
            registered_smsid(&second.log).as_deref(),
            Some(smsid.as_str()),
            "{}",
            second.log
        );
    }
    assert_eq!(
        std::fs::read(workdir.path().join("identity.bin")).unwrap(),
        identity,
        "identity.bin changed although nothing about the identity did"
    );

    // Third boot over a torn identity record: refuse, register nothing new.
    std::fs::write(
        workdir.path().join("identity.bin"),
        &identity[..identity.len() - 7],
    )
    .unwrap();
    let third = boot(&elf, workdir.path()).await;
    println!(
        "--- third boot, torn identity.bin ({:?}) ---\n{}",
        third.elapsed, third.log
    );
    assert_eq!(
        third.code,
        Some(1),
        "a torn identity was not refused:\n{}",
        third.log
    );
    if decoder {
        assert!(third.log.contains("IdentityCorrupt"), "{}", third.log);
    }
    assert_eq!(db.clients().unwrap().len(), 1);
    mp.shutdown().await;
}

#[test]
fn identity_records_round_trip_and_detect_damage() {
    use mpagent_core::agent::registration::RegistrationState;
    use mpagent_core::guid::Smsid;

    assert_eq!(
        record::crc32(b"123456789"),
        0xCBF4_3926,
        "CRC-32/IEEE check value"
    );
    let smsid = Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap();
    let cert = [0x30u8, 0x82, 0x01, 0x02, 0xAA, 0xBB, 0xCC];
    for state in [
        RegistrationState::Unregistered,
        RegistrationState::Pending(smsid),
        RegistrationState::Registered(smsid),
        RegistrationState::Rejected,
    ] {
        let rec = record::IdentityRecord {
            secret: [7; 32],
            state,
            cert_der: &cert,
        };
        let mut buf = [0u8; record::MAX_IDENTITY_RECORD];
        let len = rec.encode(&mut buf).unwrap();
        let bytes = &buf[..len];
        assert_eq!(record::IdentityRecord::decode(bytes), Ok(rec));
        // Every truncation (a torn write) is caught…
        for cut in 0..len {
            assert!(
                record::IdentityRecord::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // …and so is every single flipped bit.
        for i in 0..len * 8 {
            let mut damaged = bytes.to_vec();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(record::IdentityRecord::decode(&damaged).is_err(), "bit {i}");
        }
        // Trailing garbage is refused too.
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(record::IdentityRecord::decode(&longer).is_err());
    }
    let mut buf = [0u8; record::SEED_RECORD_LEN];
    let n = record::encode(record::Kind::Seed, &[9; 32], &mut buf).unwrap();
    assert_eq!(
        record::decode(record::Kind::Seed, &buf[..n]),
        Ok(&[9u8; 32][..])
    );
    assert_eq!(
        record::decode(record::Kind::Identity, &buf[..n]),
        Err(record::RecordError::BadHeader)
    );
}
