//! The firmware for QEMU's `mps2-an386` (boards/qemu-mps2-an386: Cortex-M4F, embassy-net over the
//! emulated LAN9118) registers with the MP emulator through QEMU's user networking, sends its
//! heartbeat DDR through the store's queue, polls policy, fetches the assigned body and
//! acknowledges it with a state message — with the site database as the witness and the
//! firmware's `flash.bin` read back with the core's store on the host. A second boot reuses the
//! stored identity, confirms the same SMSID and reports again without registering again; a boot
//! with the MP down keeps its heartbeat queued and the next boot delivers it with its original
//! message ID; a boot over a damaged identity refuses to run instead of making a second identity.
//! The RSA-2048 build (`--features key-rsa2048`) registers with an RSA certificate from a key
//! generated on the device or provisioned (`provision-key.der`), keeps key and SMSID across
//! boots, and a P-256 build refuses its identity instead of registering a second device.
//!
//! Needs `qemu-system-arm` (tests/run-all.sh installs it) and, to decode the firmware's defmt log,
//! `defmt-print` (run-all.sh installs it too). Without QEMU the boot test is skipped loudly, except
//! under CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mpagent_core::agent::registration::RegistrationState;
use mpagent_core::guid::Smsid;
use mpagent_core::store::{Endpoint, Store};
use mpagent_sim::client::flash_file::FlashFile;
use mpagent_sim::mp::db::{NewPolicy, PolicyTarget, SiteDb};
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const DEVICE: &str = "QEMU-1";
/// The firmware's flash file (boards/qemu-mps2-an386/src/storage.rs: 64 KiB, 4 KiB identity slots).
const FLASH_FILE: &str = "flash.bin";
const FLASH_SIZE: u32 = 64 * 1024;
const IDENTITY_SLOT: usize = 4096;
const POLICY_ID: &str = "{11111111-2222-3333-4444-555555555555}";
const POLICY_VERSION: &str = "2.00";
const POLICY_BODY: &str = "<Policy><Setting Name=\"Duplex\" Value=\"on\"/></Policy>";

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
    build_firmware(None)
}

/// The RSA-2048 build (the image tests/run-all.sh copies to target/rsa).
fn rsa_firmware() -> PathBuf {
    build_firmware(Some(("key-rsa2048", "rsa")))
}

/// Build with `(features, variant)`, or the default image, through boards/build-image.sh as
/// tests/run-all.sh does: the board's shared target directory, the ELF copied to
/// target/<variant>/ (under a lock, so that tests building other variants at once don't swap it).
fn build_firmware(variant: Option<(&str, &str)>) -> PathBuf {
    let dir = board_dir();
    let mut build = Command::new("bash");
    build.arg(dir.join("../build-image.sh")).arg(&dir);
    let mut target = dir.join("target");
    match variant {
        Some((features, name)) => {
            build.args([name, "build", "--features", features]);
            target = target.join(name);
        }
        None => {
            build.args([".", "build"]);
        }
    }
    let status = build
        // The board has its own workspace, target and .cargo/config.toml: don't inherit ours.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running boards/build-image.sh for the firmware");
    assert!(status.success(), "firmware build failed");
    target.join("thumbv7em-none-eabihf/release/mpagent-qemu-mps2-an386")
}

/// One boot's result: QEMU's exit code (None: killed at the timeout) and the decoded log.
struct Boot {
    code: Option<i32>,
    log: String,
    elapsed: Duration,
}

/// Boot `elf` in `workdir` and print its log under `label`.
async fn boot(elf: &Path, workdir: &Path, label: &str) -> Boot {
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
    let elapsed = started.elapsed();
    println!("--- {label} ({:.1} s) ---\n{log}", elapsed.as_secs_f64());
    Boot { code, log, elapsed }
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

/// What the firmware's store holds, read with the core's store on the host: the registration
/// state, the certificate, and the IDs and endpoints of the queued messages (oldest first).
struct Flash {
    registration: RegistrationState,
    /// The identity record's key field (P-256 scalar or RSA PKCS#8).
    key: Vec<u8>,
    cert_der: Vec<u8>,
    queued: Vec<(Endpoint, String)>,
}

fn read_flash(workdir: &Path) -> Flash {
    // Read from a copy: popping the queue to list it must not touch what the firmware left.
    let copy = tempfile::tempdir().unwrap();
    let path = copy.path().join(FLASH_FILE);
    std::fs::copy(workdir.join(FLASH_FILE), &path).expect("flash.bin");
    let file = FlashFile::open(&path, FLASH_SIZE).unwrap();
    let mut store = Store::open(file, FlashFile::layout(FLASH_SIZE))
        .expect("the firmware's store opens on the host");
    let mut buf = vec![0u8; 8192];
    let id = store
        .load_identity(&mut buf)
        .expect("identity readable")
        .expect("an identity is stored");
    let (registration, key, cert_der) = (id.registration, id.key.to_vec(), id.cert_der.to_vec());
    let mut queued = Vec::new();
    while let Some(msg) = store.peek().unwrap() {
        let id = String::from_utf8(msg.meta.message_id.to_braced().to_vec()).unwrap();
        queued.push((msg.meta.endpoint, id));
        store.pop(&msg).unwrap();
    }
    Flash {
        registration,
        key,
        cert_der,
        queued,
    }
}

/// A proxy in front of the MP that forwards the first `pass` connections and stalls every later
/// one: it answers with a response head that never ends, one byte every 2 s, so the socket never
/// falls silent (only a deadline on the whole exchange ends it). Aborting the task ends it all.
async fn stalling_proxy(
    mp: std::net::SocketAddr,
    pass: usize,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        for n in 0.. {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if n < pass {
                conns.spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(mp).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            } else {
                conns.spawn(async move {
                    let head = b"HTTP/1.1 200 OK\r\nX-Stall: ";
                    for b in head.iter().chain(std::iter::repeat(&b'a')) {
                        if client.write_all(&[*b]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                });
            }
        }
    });
    (port, task)
}

/// A policy body as the MP serves it: UTF-16LE with a byte order mark.
fn utf16_text(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(units.first(), Some(&0xFEFF), "no UTF-16LE byte order mark");
    String::from_utf16(&units[1..]).expect("UTF-16")
}

/// A site for a test: the MP on a free loopback port over a database in a temporary directory,
/// and a device working directory configured for it.
struct Site {
    /// Holds the database's directory for the test's life.
    _dir: tempfile::TempDir,
    workdir: tempfile::TempDir,
    db_path: PathBuf,
    mp: MpServer,
    port: u16,
    db: SiteDb,
}

/// Starts a [`Site`]; with `policy`, the test policy is published to every client.
async fn start_site(policy: bool) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("site.db");
    let mp = MpServer::start(mp_config(&db_path), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("MP starts");
    let port = mp.local_addr().port();
    let db = SiteDb::open(&db_path).unwrap();
    if policy {
        db.add_policy(&NewPolicy {
            policy_id: POLICY_ID,
            version: POLICY_VERSION,
            target: PolicyTarget::All,
            category: None,
            flags: 0,
            body: POLICY_BODY,
        })
        .unwrap();
    }
    write_config(workdir.path(), port);
    Site {
        _dir: dir,
        workdir,
        db_path,
        mp,
        port,
        db,
    }
}

/// The two identity slots at the start of `workdir`'s flash file, as bytes.
fn identity_slot_bytes(workdir: &Path) -> Vec<u8> {
    let flash = std::fs::read(workdir.join(FLASH_FILE)).unwrap();
    flash[..2 * IDENTITY_SLOT].to_vec()
}

fn mp_config(db_path: &Path) -> MpConfig {
    MpConfig {
        site_code: "PS1".into(),
        db_path: db_path.to_path_buf(),
        approval: Approval::Auto,
        limits: Limits::default(),
        mp_host: "mp.test.local".into(),
        strict: true,
    }
}

fn same_smsid(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b))
}

fn events_of(db: &SiteDb, smsid: &str, kind: &str) -> usize {
    db.events()
        .unwrap()
        .iter()
        .filter(|e| e.kind == kind && same_smsid(e.smsid.as_deref(), smsid))
        .count()
}

/// (kind, message ID) of the messages the MP accepted from `smsid`, oldest first.
fn messages_of(db: &SiteDb, smsid: &str) -> Vec<(String, String)> {
    db.messages(Some(smsid))
        .unwrap()
        .into_iter()
        .map(|m| (m.kind, m.message_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_registers_in_qemu_reports_polls_policy_and_keeps_identity_and_queue() {
    let Some(decoder) = tools_or_skip(
        "firmware_registers_in_qemu_reports_polls_policy_and_keeps_identity_and_queue",
    ) else {
        return;
    };
    let elf = tokio::task::spawn_blocking(firmware).await.unwrap();
    let Site {
        _dir,
        workdir,
        db_path,
        mp,
        port,
        db,
    } = start_site(true).await;

    // First boot: identity created, registered, heartbeat delivered, policy fetched and acked.
    let first = boot(&elf, workdir.path(), "first boot").await;
    assert_eq!(
        first.code,
        Some(0),
        "first boot did not register and report:\n{}",
        first.log
    );
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
    let first_msgs = messages_of(&db, &smsid);
    let kinds: Vec<&str> = first_msgs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["ddr", "state"],
        "heartbeat DDR, then the policy's state message"
    );
    let ddr = &db.messages(Some(&smsid)).unwrap()[0];
    assert!(ddr.body.contains("qemu-1.test.local"), "{}", ddr.body);
    assert!(ddr.body.contains("10.0.2.15"), "{}", ddr.body);
    let state = &db.messages(Some(&smsid)).unwrap()[1];
    assert!(
        state
            .body
            .contains(&format!("{POLICY_ID}.{POLICY_VERSION}")),
        "{}",
        state.body
    );
    assert_eq!(events_of(&db, &smsid, "policy-request"), 1);
    let fetches = db.policy_fetches().unwrap();
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert!(same_smsid(Some(&fetches[0].smsid), &smsid), "{fetches:?}");
    assert_eq!(
        (fetches[0].policy_id.as_str(), fetches[0].version.as_str()),
        (POLICY_ID, POLICY_VERSION)
    );
    assert_eq!(
        utf16_text(&std::fs::read(workdir.path().join("policy0.xml")).unwrap()),
        POLICY_BODY,
        "the fetched body is the published one"
    );
    let flash = read_flash(workdir.path());
    assert_eq!(
        flash.registration,
        RegistrationState::Registered(Smsid::parse(smsid.as_bytes()).unwrap())
    );
    assert_eq!(
        flash.cert_der, client.cert_der,
        "the stored certificate is the registered one"
    );
    assert_eq!(
        flash.key.len(),
        32,
        "a P-256 record keeps the bare secret scalar"
    );
    assert!(flash.queued.is_empty(), "{:?}", flash.queued);
    if decoder {
        assert!(first.log.contains("identity created"), "{}", first.log);
        assert_eq!(
            registered_smsid(&first.log).as_deref(),
            Some(smsid.as_str()),
            "{}",
            first.log
        );
        for (_, id) in &first_msgs {
            assert!(
                first
                    .log
                    .lines()
                    .any(|l| l.contains("delivered MP_") && l.contains(id.as_str())),
                "delivery of {id} not logged:\n{}",
                first.log
            );
        }
    }
    assert!(workdir.path().join("seed.bin").exists());
    // (The core confirms a newly issued SMSID before keeping it: the first boot may confirm too.)
    let confirmed = events_of(&db, &smsid, "confirmed");
    let identity_slots = identity_slot_bytes(workdir.path());

    // Second boot: same key, same SMSID confirmed (not registered again); reports again.
    let second = boot(&elf, workdir.path(), "second boot").await;
    assert_eq!(
        second.code,
        Some(0),
        "second boot did not confirm and report:\n{}",
        second.log
    );
    let clients = db.clients().unwrap();
    assert_eq!(
        clients.len(),
        1,
        "the second boot made a new client: {clients:?}"
    );
    assert_eq!(clients[0].smsid.to_ascii_uppercase(), smsid);
    assert_eq!(
        events_of(&db, &smsid, "confirmed"),
        confirmed + 1,
        "the second boot confirmed its SMSID once"
    );
    assert_eq!(events_of(&db, &smsid, "registered"), 1, "registered again");
    assert_eq!(events_of(&db, &smsid, "re-registered"), 0);
    let second_msgs = messages_of(&db, &smsid);
    let kinds: Vec<&str> = second_msgs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["ddr", "state", "ddr", "state"]);
    assert_ne!(second_msgs[2].1, first_msgs[0].1, "a new heartbeat");
    assert_eq!(events_of(&db, &smsid, "policy-request"), 2);
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
        identity_slot_bytes(workdir.path()),
        identity_slots,
        "the identity slots were rewritten although nothing about the identity changed"
    );

    // Stalled boot: the confirmation goes through, the MP then stalls mid-reply to the DDR. The
    // exchange's deadline ends it (exit 3: registered, exchange incomplete); the DDR stays queued.
    let (proxy_port, proxy) = stalling_proxy(mp.local_addr(), 1).await;
    write_config(workdir.path(), proxy_port);
    let stalled = boot(&elf, workdir.path(), "stalled boot, MP stalls the DDR").await;
    proxy.abort();
    write_config(workdir.path(), port);
    assert_eq!(
        stalled.code,
        Some(3),
        "a stalled exchange did not end the boot:\n{}",
        stalled.log
    );
    if decoder {
        assert!(
            stalled.log.contains("delivery stopped: deadline"),
            "{}",
            stalled.log
        );
    }
    let flash = read_flash(workdir.path());
    assert_eq!(flash.queued.len(), 1, "{:?}", flash.queued);
    assert_eq!(flash.queued[0].0, Endpoint::Ddr);
    let stalled_ddr = flash.queued[0].1.clone();
    assert_eq!(messages_of(&db, &smsid).len(), 4);

    // Third boot, MP down: the registration fails within its bounds, a heartbeat is queued too.
    mp.shutdown().await;
    let third = boot(&elf, workdir.path(), "third boot, MP down").await;
    assert_eq!(third.code, Some(1), "{}", third.log);
    let flash = read_flash(workdir.path());
    assert_eq!(flash.queued.len(), 2, "{:?}", flash.queued);
    assert_eq!(flash.queued[0].1, stalled_ddr, "the queue keeps its order");
    assert_eq!(flash.queued[1].0, Endpoint::Ddr);
    let kept = flash.queued[1].1.clone();
    assert_eq!(messages_of(&db, &smsid).len(), 4);

    // Fourth boot, MP back on the same port: the kept heartbeats arrive, in order, with their
    // original IDs.
    let mp = MpServer::start(
        mp_config(&db_path),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
    .await
    .expect("MP restarts on its port");
    let fourth = boot(&elf, workdir.path(), "fourth boot, MP back").await;
    assert_eq!(fourth.code, Some(0), "{}", fourth.log);
    let fourth_msgs = messages_of(&db, &smsid);
    assert_eq!(
        fourth_msgs[4..6],
        [
            ("ddr".to_string(), stalled_ddr.clone()),
            ("ddr".to_string(), kept.clone())
        ],
        "the queued heartbeats first, with the IDs they were queued with: {fourth_msgs:?}"
    );
    let kinds: Vec<&str> = fourth_msgs[6..].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["ddr", "state"],
        "then this boot's heartbeat and ack"
    );
    assert!(read_flash(workdir.path()).queued.is_empty());
    assert_eq!(db.clients().unwrap().len(), 1);

    // Fifth boot over damaged identity slots: refuse, register nothing new.
    let path = workdir.path().join(FLASH_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    for slot in 0..2 {
        bytes[slot * IDENTITY_SLOT + 100] ^= 0x55;
    }
    std::fs::write(&path, &bytes).unwrap();
    let fifth = boot(&elf, workdir.path(), "fifth boot, damaged identity").await;
    assert_eq!(
        fifth.code,
        Some(1),
        "a damaged identity was not refused:\n{}",
        fifth.log
    );
    if decoder {
        assert!(fifth.log.contains("Damaged"), "{}", fifth.log);
    }
    assert_eq!(db.clients().unwrap().len(), 1);
    assert_eq!(messages_of(&db, &smsid).len(), 8);
    mp.shutdown().await;
}

/// `Some(defmt-print available)` when QEMU is there; `None` (skipped loudly) without it, except
/// under CI, where a missing tool fails the test.
/// The accepted messages of `kind` from `smsid`.
fn count_of(db: &SiteDb, smsid: &str, kind: &str) -> usize {
    messages_of(db, smsid)
        .iter()
        .filter(|(k, _)| k == kind)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_answers_certificate_reset_with_a_new_certificate_under_its_smsid_and_boots_with_it(
) {
    let Some(decoder) =
        tools_or_skip("firmware_answers_certificate_reset_with_a_new_certificate_under_its_smsid_and_boots_with_it")
    else {
        return;
    };
    let elf = tokio::task::spawn_blocking(firmware).await.unwrap();
    certificate_reset_round(&elf, decoder, |_, key| {
        assert_eq!(key.len(), 32, "a P-256 record keeps the bare secret scalar");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_firmware_answers_certificate_reset_with_a_new_rsa_key_under_its_smsid_and_boots_with_it(
) {
    let Some(decoder) = tools_or_skip(
        "rsa_firmware_answers_certificate_reset_with_a_new_rsa_key_under_its_smsid_and_boots_with_it",
    ) else {
        return;
    };
    let elf = tokio::task::spawn_blocking(rsa_firmware).await.unwrap();
    // The new key is generated on the device too (RSA-2048, PKCS#8 in the record), and the
    // site's certificate for the SMSID is its.
    certificate_reset_round(&elf, decoder, assert_rsa_client).await;
}

/// Boot `elf` to registration, have the site answer the next boot's confirmation with
/// CertificateReset, and check that boot makes, registers and stores a new identity under the
/// same SMSID (`check_key`: the registered client and the new stored key agree, by key kind),
/// and that the boot after loads it.
async fn certificate_reset_round(
    elf: &Path,
    decoder: bool,
    check_key: impl Fn(&mpagent_sim::mp::db::ClientRow, &[u8]),
) {
    let Site {
        _dir,
        workdir,
        db,
        mp,
        ..
    } = start_site(false).await;

    let first = boot(elf, workdir.path(), "first boot").await;
    assert_eq!(first.code, Some(0), "first boot:\n{}", first.log);
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let smsid = clients[0].smsid.clone();
    let old = read_flash(workdir.path());
    assert_eq!(old.cert_der, clients[0].cert_der);
    assert_eq!(count_of(&db, &smsid, "ddr"), 1);

    // The site answers the next registration request (the boot's confirmation of its stored
    // SMSID) with CertificateReset.
    assert!(db
        .set_next_reply(&smsid, mpagent_sim::mp::db::NextReply::CertificateReset)
        .unwrap());
    let renewed = boot(elf, workdir.path(), "CertificateReset boot").await;
    assert_eq!(
        renewed.code,
        Some(0),
        "the CertificateReset boot did not register a new certificate and report:\n{}",
        renewed.log
    );
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "a second device appeared: {clients:?}");
    assert!(same_smsid(Some(&clients[0].smsid), &smsid), "{clients:?}");
    let site_client = db.client(&smsid).unwrap().unwrap();
    let site_cert = site_client.cert_der.clone();
    assert_ne!(site_cert, old.cert_der, "the site holds a new certificate");
    let new = read_flash(workdir.path());
    assert_eq!(
        new.cert_der, site_cert,
        "the stored certificate is the registered one"
    );
    assert_ne!(new.key, old.key, "a new key is stored");
    check_key(&site_client, &new.key);
    assert_eq!(
        new.registration,
        RegistrationState::Registered(Smsid::parse(smsid.as_bytes()).unwrap())
    );
    assert!(new.queued.is_empty(), "{:?}", new.queued);
    assert_eq!(
        count_of(&db, &smsid, "ddr"),
        2,
        "the heartbeat of the CertificateReset boot, signed with the new key"
    );
    if decoder {
        assert!(renewed.log.contains("new identity made"), "{}", renewed.log);
        assert!(
            renewed.log.contains("the site registered the new identity"),
            "{}",
            renewed.log
        );
    }

    // The next boot loads the new identity, confirms the same SMSID and reports.
    let after = boot(elf, workdir.path(), "boot after").await;
    assert_eq!(after.code, Some(0), "the boot after:\n{}", after.log);
    let stored = read_flash(workdir.path());
    assert_eq!(stored.cert_der, site_cert);
    assert_eq!(stored.key, new.key);
    assert_eq!(db.client(&smsid).unwrap().unwrap().cert_der, site_cert);
    assert_eq!(db.clients().unwrap().len(), 1);
    assert_eq!(count_of(&db, &smsid, "ddr"), 3);
    if decoder {
        assert!(after.log.contains("identity loaded"), "{}", after.log);
        assert!(!after.log.contains("new identity made"), "{}", after.log);
    }
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    mp.shutdown().await;
}

fn tools_or_skip(test: &str) -> Option<bool> {
    if !have("qemu-system-arm") {
        assert!(
            !in_ci(),
            "qemu-system-arm is missing under CI: tests/run-all.sh installs it"
        );
        eprintln!(
            "\n\n*** SKIPPED {test}: qemu-system-arm is not installed (apt-get install \
             qemu-system-arm, or run tests/run-all.sh) ***\n"
        );
        return None;
    }
    let decoder = have("defmt-print");
    assert!(
        decoder || !in_ci(),
        "defmt-print is missing under CI: tests/run-all.sh installs it"
    );
    if !decoder {
        eprintln!("\n*** defmt-print missing: checking the site database only, not the firmware's log ***\n");
    }
    Some(decoder)
}

/// Key files made with OpenSSL (core/src/sign/rsa/testdata/README.md): test keys only.
fn rsa_testdata(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../core/src/sign/rsa/testdata")
            .join(name),
    )
    .unwrap()
}

/// `SEQUENCE { OID rsaEncryption, NULL }`: the AlgorithmIdentifier of an RSA public key.
const RSA_ENCRYPTION_ALG_ID: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// The client registered with an RSA-2048 certificate and signs with SHA-256 RSA, and the key
/// the firmware stored (PKCS#8) is the certificate's.
fn assert_rsa_client(client: &mpagent_sim::mp::db::ClientRow, stored_key: &[u8]) {
    use mpagent_core::identity::{cert_public_key_p256, cert_spki_der, CertError};
    use mpagent_core::sign::RsaSigner;
    let spki = cert_spki_der(&client.cert_der).expect("the registered certificate parses");
    assert_eq!(
        spki.get(4..4 + RSA_ENCRYPTION_ALG_ID.len()),
        Some(&RSA_ENCRYPTION_ALG_ID[..]),
        "not an RSA public key: {}",
        hex::encode(spki)
    );
    assert_eq!(spki.len(), 294, "RSA-2048 with e = 65537");
    assert_eq!(
        cert_public_key_p256(&client.cert_der),
        Err(CertError::Unsupported)
    );
    assert_eq!(
        client.hash_algorithm.as_deref(),
        Some(mpagent_core::profile::RSA_SHA256_OID)
    );
    let key = RsaSigner::from_pkcs8_der(stored_key).expect("the stored key is RSA PKCS#8");
    let mut buf = [0u8; 512];
    assert_eq!(
        key.spki_der(&mut buf).unwrap(),
        spki,
        "the stored key is the certificate's"
    );
}

/// Whether the store in `workdir`'s flash file holds an identity.
fn has_identity(workdir: &Path) -> bool {
    let copy = tempfile::tempdir().unwrap();
    let path = copy.path().join(FLASH_FILE);
    std::fs::copy(workdir.join(FLASH_FILE), &path).expect("flash.bin");
    let file = FlashFile::open(&path, FLASH_SIZE).unwrap();
    let store = Store::open(file, FlashFile::layout(FLASH_SIZE)).unwrap();
    store.has_identity()
}

/// The figure the firmware logs for its key generation (QEMU without -icount: host time).
fn keygen_ms(log: &str) -> Option<u64> {
    let at = log.find("key generated in ")? + "key generated in ".len();
    log.get(at..)?.split(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_firmware_generates_its_key_registers_rsa_keeps_it_and_a_p256_build_refuses_it() {
    let Some(decoder) = tools_or_skip(
        "rsa_firmware_generates_its_key_registers_rsa_keeps_it_and_a_p256_build_refuses_it",
    ) else {
        return;
    };
    let elf = tokio::task::spawn_blocking(rsa_firmware).await.unwrap();
    let p256_elf = tokio::task::spawn_blocking(firmware).await.unwrap();
    let Site {
        _dir,
        workdir,
        mp,
        db,
        ..
    } = start_site(true).await;

    // First boot: an RSA-2048 key generated on the device, registered, DDR and state accepted
    // (the MP takes a message only once its signatures verify against the certificate).
    let first = boot(&elf, workdir.path(), "RSA first boot").await;
    assert_eq!(first.code, Some(0), "RSA first boot failed:\n{}", first.log);
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    let smsid = clients[0].smsid.to_ascii_uppercase();
    let flash = read_flash(workdir.path());
    assert_rsa_client(&clients[0], &flash.key);
    assert_eq!(flash.cert_der, clients[0].cert_der);
    assert_eq!(
        flash.registration,
        RegistrationState::Registered(Smsid::parse(smsid.as_bytes()).unwrap())
    );
    let kinds: Vec<String> = messages_of(&db, &smsid).into_iter().map(|m| m.0).collect();
    assert_eq!(kinds, ["ddr", "state"], "signed DDR and state accepted");
    assert!(flash.queued.is_empty(), "{:?}", flash.queued);
    if decoder {
        assert!(
            first
                .log
                .contains("identity created: RSA-2048 key (generated)"),
            "{}",
            first.log
        );
        let ms = keygen_ms(&first.log).expect("key generation time logged");
        println!(
            "RSA-2048 key generation in QEMU: {ms} ms (boot {:.1} s)",
            first.elapsed.as_secs_f64()
        );
    }
    let identity_slots = identity_slot_bytes(workdir.path());

    // Second boot: the stored key is imported, the same SMSID confirmed, nothing rewritten.
    let second = boot(&elf, workdir.path(), "RSA second boot").await;
    assert_eq!(
        second.code,
        Some(0),
        "RSA second boot failed:\n{}",
        second.log
    );
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "a second client: {clients:?}");
    assert_eq!(clients[0].smsid.to_ascii_uppercase(), smsid);
    assert_eq!(events_of(&db, &smsid, "registered"), 1, "registered again");
    let kinds: Vec<String> = messages_of(&db, &smsid).into_iter().map(|m| m.0).collect();
    assert_eq!(kinds, ["ddr", "state", "ddr", "state"]);
    if decoder {
        assert!(
            second.log.contains("identity loaded: RSA-2048 key"),
            "{}",
            second.log
        );
        assert!(!second.log.contains("key generated"), "{}", second.log);
    }
    assert_eq!(
        identity_slot_bytes(workdir.path()),
        identity_slots,
        "the identity slots changed on a boot that only confirmed"
    );

    // A P-256 build over the RSA identity: refused by name, nothing registered or rewritten.
    let p256 = boot(
        &p256_elf,
        workdir.path(),
        "P-256 build over the RSA identity",
    )
    .await;
    assert_eq!(
        p256.code,
        Some(1),
        "the P-256 build ran on an RSA identity:\n{}",
        p256.log
    );
    if decoder {
        assert!(
            p256.log
                .contains("WrongKeyKind { stored: \"RSA-2048\", built: \"P-256\" }"),
            "{}",
            p256.log
        );
    }
    assert_eq!(db.clients().unwrap().len(), 1);
    assert_eq!(messages_of(&db, &smsid).len(), 4);
    assert_eq!(
        identity_slot_bytes(workdir.path()),
        identity_slots,
        "the refused identity was touched"
    );
    mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_firmware_takes_a_good_provisioned_key_and_refuses_a_bad_key_or_a_p256_identity() {
    let Some(decoder) = tools_or_skip(
        "rsa_firmware_takes_a_good_provisioned_key_and_refuses_a_bad_key_or_a_p256_identity",
    ) else {
        return;
    };
    let elf = tokio::task::spawn_blocking(rsa_firmware).await.unwrap();
    let Site {
        _dir,
        workdir,
        mp,
        db,
        ..
    } = start_site(false).await;
    let provision = workdir.path().join("provision-key.der");

    // A provisioned key that does not import (here: the P-256 one): no identity, nothing sent.
    std::fs::write(&provision, rsa_testdata("p256.pk8.der")).unwrap();
    let bad = boot(&elf, workdir.path(), "bad provisioned key").await;
    assert_eq!(
        bad.code,
        Some(1),
        "a bad provisioned key was taken:\n{}",
        bad.log
    );
    if decoder {
        assert!(
            bad.log.contains("ProvisionedKey(Rsa(NotRsa))"),
            "{}",
            bad.log
        );
        assert!(
            !bad.log.contains("key generated"),
            "fell back to generating:\n{}",
            bad.log
        );
    }
    assert!(!has_identity(workdir.path()), "an identity was made anyway");
    assert!(db.clients().unwrap().is_empty());

    // A PKCS#1 key (made by OpenSSL): registered with exactly that public key, stored as PKCS#8.
    std::fs::write(&provision, rsa_testdata("rsa2048.pk1.der")).unwrap();
    let good = boot(&elf, workdir.path(), "provisioned PKCS#1 key").await;
    assert_eq!(good.code, Some(0), "{}", good.log);
    let clients = db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let flash = read_flash(workdir.path());
    assert_rsa_client(&clients[0], &flash.key);
    assert_eq!(
        mpagent_core::identity::cert_spki_der(&clients[0].cert_der).unwrap(),
        rsa_testdata("rsa2048.spki.der"),
        "the registered public key is the provisioned key's (OpenSSL's SPKI)"
    );
    assert_eq!(
        flash.key,
        rsa_testdata("rsa2048.pk8.der"),
        "stored as PKCS#8"
    );
    if decoder {
        assert!(
            good.log
                .contains("identity created: RSA-2048 key (provisioned)"),
            "{}",
            good.log
        );
    }
    let smsid = clients[0].smsid.to_ascii_uppercase();
    let kinds: Vec<String> = messages_of(&db, &smsid).into_iter().map(|m| m.0).collect();
    assert_eq!(kinds, ["ddr"], "the signed heartbeat was accepted");

    // The other way round: the RSA build over a P-256 identity refuses it, rewrites nothing.
    let p256_elf = tokio::task::spawn_blocking(firmware).await.unwrap();
    let other = tempfile::tempdir().unwrap();
    write_config(other.path(), mp.local_addr().port());
    let p256 = boot(&p256_elf, other.path(), "P-256 build, a second device").await;
    assert_eq!(p256.code, Some(0), "{}", p256.log);
    assert_eq!(db.clients().unwrap().len(), 2);
    let slots = identity_slot_bytes(other.path());
    let rsa = boot(&elf, other.path(), "RSA build over a P-256 identity").await;
    assert_eq!(
        rsa.code,
        Some(1),
        "the RSA build ran on a P-256 identity:\n{}",
        rsa.log
    );
    if decoder {
        assert!(
            rsa.log
                .contains("WrongKeyKind { stored: \"P-256\", built: \"RSA-2048\" }"),
            "{}",
            rsa.log
        );
        assert!(!rsa.log.contains("key generated"), "{}", rsa.log);
    }
    assert_eq!(
        db.clients().unwrap().len(),
        2,
        "a second identity was registered"
    );
    assert_eq!(
        identity_slot_bytes(other.path()),
        slots,
        "the refused identity was touched"
    );
    mp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Native mode: the `--features native` image over HTTPS (Mbed TLS) against the emulator's TLS
// MP (rustls), with the site's CA, the MP's certificate and the device's CA-issued certificate
// made by `mpagent_sim::pki` (P-256) or by OpenSSL (the RSA-2048 device certificate).
// ---------------------------------------------------------------------------------------------

use mpagent_sim::mp::tls::TlsVersion;
use mpagent_sim::mp::TlsConfig;
use mpagent_sim::pki::{self, CertKind, IssueParams, Issued, TestCa};

/// The native image (P-256 client key), or with `rsa` the native RSA-2048 one, as
/// tests/run-all.sh builds them.
fn native_firmware(rsa: bool) -> PathBuf {
    if rsa {
        build_firmware(Some(("native,key-rsa2048", "native-rsa")))
    } else {
        build_firmware(Some(("native", "native")))
    }
}

/// A native-mode site: its CA, the MP (TLS, a client certificate required) and the device's
/// directory with `mpagent.cfg`, `ca.der`, `client.der` and `client-key.der`.
struct NativeSite {
    _dir: tempfile::TempDir,
    workdir: tempfile::TempDir,
    ca: TestCa,
    mp: MpServer,
    db: SiteDb,
}

/// The MP's certificate for [`NativeSite::start`].
enum ServerCert {
    /// Names 10.0.2.2 (the address the device connects to) as an IP SAN.
    Good,
    /// Names only `elsewhere.test`.
    WrongName,
    /// Names 10.0.2.2, but expired in 2020.
    Expired,
    /// An RSA-2048 key (made with OpenSSL), naming 10.0.2.2.
    Rsa,
}

impl NativeSite {
    async fn start(server: ServerCert) -> NativeSite {
        Self::start_with(server, TlsVersion::Any, false).await
    }

    /// An MP serving `version`, asking for the client certificate only after it has read the
    /// request when `late` (the emulator's OpenSSL server: renegotiation on 1.2).
    async fn start_with(server: ServerCert, version: TlsVersion, late: bool) -> NativeSite {
        let dir = tempfile::tempdir().unwrap();
        let workdir = tempfile::tempdir().unwrap();
        let ca = TestCa::init(&dir.path().join("ca"), "mpagent Board Test CA", 30).unwrap();
        let mut params = IssueParams {
            san: vec!["10.0.2.2".into(), "mp.test.local".into()],
            ..IssueParams::new("mp.test.local", CertKind::Server)
        };
        match server {
            ServerCert::Good => {}
            ServerCert::WrongName => params.san = vec!["elsewhere.test".into()],
            ServerCert::Expired => {
                params.not_before = Some(pki::parse_date("2020-01-01").unwrap());
                params.days = 30;
            }
            ServerCert::Rsa => {}
        }
        let (cert_pem, key_pem) = if matches!(server, ServerCert::Rsa) {
            let d = dir.path().join("rsa-mp");
            openssl_rsa_leaf(
                &ca,
                &d,
                "mp.test.local",
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:10.0.2.2,DNS:mp.test.local\n",
            );
            (d.join("cert.pem"), d.join("key.pem"))
        } else {
            let issued = ca.issue(&params).unwrap();
            (issued.cert_pem_path, issued.key_pem_path)
        };
        let mut tls = TlsConfig::from_files(&cert_pem, &key_pem, &ca.cert_pem_path(), None)
            .unwrap()
            .with_version(version);
        tls.client_cert_after_request = late;
        let db_path = dir.path().join("site.db");
        let mp = MpServer::start_tls(mp_config(&db_path), tls, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("MP starts in native mode");
        std::fs::write(workdir.path().join("ca.der"), ca.cert_der()).unwrap();
        let db = SiteDb::open(&db_path).unwrap();
        NativeSite {
            _dir: dir,
            workdir,
            ca,
            mp,
            db,
        }
    }

    /// Writes `mpagent.cfg` for `https://10.0.2.2:<port>` offering `tls_version`.
    fn configure(&self, tls_version: &str) {
        let port = self.mp.local_addr().port();
        std::fs::write(
            self.workdir.path().join("mpagent.cfg"),
            format!(
                "# written by tests/tests/qemu_board.rs (native mode)\n\
                 mp=https://10.0.2.2:{port}\nsite=PS1\nname={DEVICE}\nfqdn=qemu-1.test.local\n\
                 max_failures=1\ntls_version={tls_version}\n"
            ),
        )
        .unwrap();
    }

    /// Provisions a P-256 device certificate from the site's CA.
    fn provision_p256(&self) -> Vec<u8> {
        let issued: Issued = self
            .ca
            .issue(&IssueParams::new(DEVICE, CertKind::Device))
            .unwrap();
        self.provision(&issued.cert_der, &issued.key_pkcs8);
        issued.cert_der
    }

    /// Provisions an RSA-2048 device certificate from the site's CA, made with OpenSSL (the
    /// same key usage and EKUs as `pki issue --kind device`).
    fn provision_rsa(&self) -> Vec<u8> {
        let d = self.workdir.path().join("openssl");
        let (cert, key) = openssl_rsa_leaf(
            &self.ca,
            &d,
            DEVICE,
            "extendedKeyUsage=clientAuth,1.3.6.1.4.1.311.101.2,1.3.6.1.4.1.311.101\n",
        );
        self.provision(&cert, &key);
        cert
    }

    fn provision(&self, cert: &[u8], key: &[u8]) {
        std::fs::write(self.workdir.path().join("client.der"), cert).unwrap();
        std::fs::write(self.workdir.path().join("client-key.der"), key).unwrap();
    }
}

/// An RSA-2048 certificate for `cn` from `ca`, made with OpenSSL in `d` with the extensions
/// `extra` adds: (certificate DER, key PKCS#8 DER); `d` also keeps `cert.pem` and `key.pem`.
fn openssl_rsa_leaf(ca: &TestCa, d: &Path, cn: &str, extra: &str) -> (Vec<u8>, Vec<u8>) {
    std::fs::create_dir_all(d).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        d.join("ext.cnf"),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n{extra}"
        ),
    )
    .unwrap();
    {
        let ca_dir = ca.dir();
        std::fs::copy(ca_dir.join(pki::CA_CERT_DER), d.join("ca.der")).unwrap();
        std::fs::copy(ca_dir.join(pki::CA_KEY_PK8), d.join("ca.key.der")).unwrap();
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
            "-out",
            "key.der",
        ]);
        run(&[
            "req",
            "-new",
            "-key",
            "key.der",
            "-keyform",
            "DER",
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            "req.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.der",
            "-CAform",
            "DER",
            "-CAkey",
            "ca.key.der",
            "-CAkeyform",
            "DER",
            "-days",
            "30",
            "-set_serial",
            &format!("{}", 1000 + cn.len()),
            "-extfile",
            "ext.cnf",
            "-outform",
            "DER",
            "-out",
            "cert.der",
        ]);
        run(&[
            "x509", "-inform", "DER", "-in", "cert.der", "-out", "cert.pem",
        ]);
        run(&[
            "pkey", "-inform", "DER", "-in", "key.der", "-out", "key.pem",
        ]);
    }
    (
        std::fs::read(d.join("cert.der")).unwrap(),
        std::fs::read(d.join("key.der")).unwrap(),
    )
}

/// The pool figure the firmware logs at the end of a boot.
fn tls_pool_peak(log: &str) -> Option<usize> {
    let at = log.find("tls pool: peak ")? + "tls pool: peak ".len();
    log.get(at..)?.split(' ').next()?.parse().ok()
}

/// Boots native `elf` offering `version`: registered (exit 0) over that version, the MP's
/// client being the provisioned certificate.
async fn native_boot_registers(site: &NativeSite, elf: &Path, version: &str, cert: &[u8]) -> Boot {
    site.configure(version);
    let b = boot(
        elf,
        site.workdir.path(),
        "native boot, tls_version={version}",
    )
    .await;
    assert_eq!(
        b.code,
        Some(0),
        "native boot over TLS {version} failed:\n{}",
        b.log
    );
    assert!(b.log.contains(&format!("tls={version}")), "{}", b.log);
    assert!(
        !b.log.contains(&format!("tls={}", other(version))),
        "{}",
        b.log
    );
    let clients = site.db.clients().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(
        clients[0].cert_der, cert,
        "registered with the provisioned certificate"
    );
    assert!(
        site.db.rejections().unwrap().is_empty(),
        "{:?}",
        site.db.rejections()
    );
    let peak = tls_pool_peak(&b.log).expect("the pool's peak is logged");
    assert!(
        peak > 16 * 1024,
        "the 16 KiB receive record comes from the pool: {peak}"
    );
    b
}

/// A policy body of about 12 000 characters (24 KB in UTF-16).
fn big_policy_body() -> String {
    let mut body = String::from("<Policy>");
    for i in 0..300 {
        body.push_str(&format!(
            "<Setting Name=\"Tray{i:03}\" Value=\"letter-duplex-on\"/>"
        ));
    }
    body.push_str("</Policy>");
    assert!(body.len() > 8 * 1024);
    body
}

fn other(version: &str) -> &'static str {
    if version == "1.2" {
        "1.3"
    } else {
        "1.2"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_firmware_registers_over_tls_1_2_then_1_3_with_a_p256_client_certificate() {
    if tools_or_skip(
        "native_firmware_registers_over_tls_1_2_then_1_3_with_a_p256_client_certificate",
    ) != Some(true)
    {
        return;
    }
    let elf = tokio::task::spawn_blocking(|| native_firmware(false))
        .await
        .unwrap();
    let site = NativeSite::start(ServerCert::Good).await;
    let cert = site.provision_p256();
    // A policy body over 16 KiB on the wire (UTF-16): the MP sends full 16 KiB records, which
    // the board's receive record must hold whole.
    let body = big_policy_body();
    site.db
        .add_policy(&NewPolicy {
            policy_id: POLICY_ID,
            version: POLICY_VERSION,
            target: PolicyTarget::All,
            category: None,
            flags: 0,
            body: &body,
        })
        .unwrap();
    let first = native_boot_registers(&site, &elf, "1.2", &cert).await;
    assert!(
        first.log.contains("identity provisioned: P-256 key"),
        "{}",
        first.log
    );
    let smsid = site.db.clients().unwrap()[0].smsid.to_ascii_uppercase();
    let kinds: Vec<String> = messages_of(&site.db, &smsid)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        kinds,
        ["ddr", "state"],
        "heartbeat and the policy's state message over TLS"
    );
    let fetched = std::fs::read(site.workdir.path().join("policy0.xml")).unwrap();
    assert!(fetched.len() > 16 * 1024, "{} bytes", fetched.len());
    assert_eq!(
        utf16_text(&fetched),
        body,
        "the body fetched over TLS is the published one"
    );
    // Second boot over TLS 1.3: the same identity, confirmed, reporting again.
    let second = native_boot_registers(&site, &elf, "1.3", &cert).await;
    assert!(second.log.contains("identity loaded"), "{}", second.log);
    let ddrs = messages_of(&site.db, &smsid)
        .into_iter()
        .filter(|(k, _)| k == "ddr")
        .count();
    assert_eq!(ddrs, 2, "a second heartbeat, over TLS 1.3");
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_rsa_firmware_registers_over_tls_1_2_and_1_3_with_an_rsa_2048_client_certificate() {
    if tools_or_skip(
        "native_rsa_firmware_registers_over_tls_1_2_and_1_3_with_an_rsa_2048_client_certificate",
    ) != Some(true)
    {
        return;
    }
    let elf = tokio::task::spawn_blocking(|| native_firmware(true))
        .await
        .unwrap();
    let site = NativeSite::start(ServerCert::Good).await;
    let cert = site.provision_rsa();
    let first = native_boot_registers(&site, &elf, "1.2", &cert).await;
    assert!(
        first.log.contains("identity provisioned: RSA-2048 key"),
        "{}",
        first.log
    );
    assert_eq!(
        site.db.clients().unwrap()[0].hash_algorithm.as_deref(),
        Some(mpagent_core::profile::RSA_SHA256_OID)
    );
    native_boot_registers(&site, &elf, "1.3", &cert).await;
    site.mp.shutdown().await;
}

/// A boot that must be refused at the handshake with `sentence`: exit 1, nothing registered,
/// no message reached the MP.
async fn native_boot_refused(site: &NativeSite, elf: &Path, sentence: &str) {
    site.configure("any");
    let b = boot(elf, site.workdir.path(), "refused native boot").await;
    assert_eq!(b.code, Some(1), "{}", b.log);
    assert!(
        b.log.contains(sentence),
        "expected {sentence:?} in:\n{}",
        b.log
    );
    assert!(
        b.log.contains("the last connection to the MP failed"),
        "{}",
        b.log
    );
    assert!(
        !b.log.contains("tls=1."),
        "no handshake completed:\n{}",
        b.log
    );
    assert!(site.db.clients().unwrap().is_empty());
    assert!(site.db.messages(None).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_firmware_refuses_an_unknown_ca_a_wrong_name_and_an_expired_mp_certificate() {
    if tools_or_skip(
        "native_firmware_refuses_an_unknown_ca_a_wrong_name_and_an_expired_mp_certificate",
    ) != Some(true)
    {
        return;
    }
    let elf = tokio::task::spawn_blocking(|| native_firmware(false))
        .await
        .unwrap();

    // Wrong CA: the device was provisioned with another CA than the one that issued the MP's.
    let site = NativeSite::start(ServerCert::Good).await;
    site.provision_p256();
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Some Other CA", 30).unwrap();
    std::fs::write(site.workdir.path().join("ca.der"), other.cert_der()).unwrap();
    native_boot_refused(&site, &elf, "does not chain to the provisioned CA").await;
    site.mp.shutdown().await;

    let site = NativeSite::start(ServerCert::WrongName).await;
    site.provision_p256();
    native_boot_refused(&site, &elf, "names neither the host nor the address in mp=").await;
    site.mp.shutdown().await;

    let site = NativeSite::start(ServerCert::Expired).await;
    site.provision_p256();
    native_boot_refused(&site, &elf, "the MP's certificate has expired").await;
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_firmware_presents_its_certificate_when_the_mp_asks_after_the_request_on_tls_1_2() {
    if tools_or_skip(
        "native_firmware_presents_its_certificate_when_the_mp_asks_after_the_request_on_tls_1_2",
    ) != Some(true)
    {
        return;
    }
    let elf = tokio::task::spawn_blocking(|| native_firmware(false))
        .await
        .unwrap();
    // As IIS by default: the handshake asks for no certificate; once the request is read, the
    // MP renegotiates asking for it (HelloRequest), and answers only after the device sent it.
    let site = NativeSite::start_with(ServerCert::Good, TlsVersion::Tls12, true).await;
    let cert = site.provision_p256();
    let b = native_boot_registers(&site, &elf, "1.2", &cert).await;
    let smsid = site.db.clients().unwrap()[0].smsid.to_ascii_uppercase();
    assert_eq!(
        messages_of(&site.db, &smsid).len(),
        1,
        "the heartbeat went through a renegotiated connection too:\n{}",
        b.log
    );
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_firmware_verifies_an_rsa_2048_mp_certificate_over_tls_1_2_and_1_3() {
    if tools_or_skip("native_firmware_verifies_an_rsa_2048_mp_certificate_over_tls_1_2_and_1_3")
        != Some(true)
    {
        return;
    }
    let elf = tokio::task::spawn_blocking(|| native_firmware(false))
        .await
        .unwrap();
    // ECDHE-RSA: the MP's certificate has an RSA-2048 key (PKCS#1 v1.5 on 1.2, PSS on 1.3).
    let site = NativeSite::start(ServerCert::Rsa).await;
    let cert = site.provision_p256();
    native_boot_registers(&site, &elf, "1.2", &cert).await;
    native_boot_registers(&site, &elf, "1.3", &cert).await;
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_firmware_says_when_the_mp_refuses_its_certificate_on_tls_1_2_and_1_3() {
    if tools_or_skip("native_firmware_says_when_the_mp_refuses_its_certificate_on_tls_1_2_and_1_3")
        != Some(true)
    {
        return;
    }
    let elf = tokio::task::spawn_blocking(|| native_firmware(false))
        .await
        .unwrap();
    let site = NativeSite::start(ServerCert::Good).await;
    // A device certificate from a CA the MP does not trust for clients.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::init(other_dir.path(), "Some Other CA", 30).unwrap();
    let stranger = other
        .issue(&IssueParams::new(DEVICE, CertKind::Device))
        .unwrap();
    site.provision(&stranger.cert_der, &stranger.key_pkcs8);
    for version in ["1.2", "1.3"] {
        site.configure(version);
        let label = format!("refused client certificate, TLS {version}");
        let b = boot(&elf, site.workdir.path(), &label).await;
        assert_eq!(b.code, Some(1), "{}", b.log);
        assert!(
            // The alert, or on 1.3 the reset that may overtake it right after the handshake.
            b.log
                .contains("the MP ended the connection with a fatal alert")
                || (version == "1.3"
                    && b.log.contains(
                        "the MP closed the connection right after the TLS 1.3 handshake"
                    )),
            "TLS {version}: the refusal is named:\n{}",
            b.log
        );
        assert!(site.db.clients().unwrap().is_empty());
        assert!(site.db.messages(None).unwrap().is_empty());
    }
    assert!(
        !site.db.rejections().unwrap().is_empty(),
        "the MP logged its refusals"
    );
    site.mp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_firmware_stops_without_a_provisioned_file_or_with_an_http_url() {
    if tools_or_skip("native_firmware_stops_without_a_provisioned_file_or_with_an_http_url")
        != Some(true)
    {
        return;
    }
    let elf = tokio::task::spawn_blocking(|| native_firmware(false))
        .await
        .unwrap();
    let site = NativeSite::start(ServerCert::Good).await;
    site.provision_p256();
    site.configure("any");
    let key = site.workdir.path().join("client-key.der");
    let key_bytes = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let b = boot(&elf, site.workdir.path(), "no client-key.der").await;
    assert_eq!(b.code, Some(1), "{}", b.log);
    assert!(
        b.log.contains("NativeFileMissing(client-key.der)"),
        "{}",
        b.log
    );
    // A key that is not a key: refused by name, before anything is sent.
    std::fs::write(&key, b"not a key").unwrap();
    let b = boot(&elf, site.workdir.path(), "a bad client-key.der").await;
    assert_eq!(b.code, Some(1), "{}", b.log);
    assert!(
        b.log
            .contains("the provisioned client key (client-key.der) is not a DER"),
        "{}",
        b.log
    );
    std::fs::write(&key, key_bytes).unwrap();
    // Native builds speak HTTPS only.
    let cfg = site.workdir.path().join("mpagent.cfg");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("mp=https://", "mp=http://")).unwrap();
    let b = boot(&elf, site.workdir.path(), "mp=http://").await;
    assert_eq!(b.code, Some(1), "{}", b.log);
    assert!(b.log.contains("SchemeDoesNotMatchMode"), "{}", b.log);
    assert!(site.db.clients().unwrap().is_empty());
    assert!(
        site.db.rejections().unwrap().is_empty(),
        "nothing reached the MP"
    );
    site.mp.shutdown().await;
}
