//! End to end over loopback against the strict (real-MP) emulator, for each site generation: a
//! client registers, waits for approval, confirms and delivers a heartbeat and an inventory, and
//! a recording relay between it and the MP shows the forms its generation picked on the wire
//! (docs/protocol.md §4, §5): the hash (no `HashAlgorithm` for RSA on 2007 sites), the confirmation's
//! shape and the attachments' names.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use mpagent_core::config::SiteGeneration;
use mpagent_sim::client::run::{self, Due};
use mpagent_sim::client::{ClientOptions, KeyKind};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use mpagent_tests::fault::utf16le;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bytes one connection sent, filled as they pass.
type Seen = Arc<Mutex<Vec<u8>>>;

/// Forwards each connection to the MP unchanged and keeps every request's bytes.
struct Recorder {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let all = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Kept from the first byte, so nothing the MP answered is missing afterwards.
                let seen = Seen::default();
                all.lock().unwrap().push(seen.clone());
                tokio::spawn(relay(client, upstream, seen));
            }
        });
        Recorder {
            addr,
            requests,
            task,
        }
    }

    /// Every request so far, as bytes.
    fn requests(&self) -> Vec<Vec<u8>> {
        let all = self.requests.lock().unwrap();
        all.iter().map(|r| r.lock().unwrap().clone()).collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, seen: Seen) {
    let Ok(mp) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_mp, mut to_mp) = mp.into_split();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            seen.lock().unwrap().extend_from_slice(&buf[..n]);
            if to_mp.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_mp.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut from_mp, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let n = utf16le(needle);
    haystack.windows(n.len()).any(|w| w == n.as_slice())
}

/// The requests whose (UTF-16LE) XML holds `marker`.
fn with<'a>(requests: &'a [Vec<u8>], marker: &str) -> Vec<&'a Vec<u8>> {
    requests.iter().filter(|r| contains(r, marker)).collect()
}

const DISCOVERY_NAME: &str = "Name=\"{00000000-0000-0000-0000-000000000003}\"";
const INVENTORY_NAME: &str = "Name=\"{00000000-0000-0000-0000-000000000001}\"";

/// What one client's two cycles put on the wire, and what the site kept.
struct Run {
    requests: Vec<Vec<u8>>,
    stored_kinds: Vec<String>,
}

/// Pending first (strict MP, approval by hand), approved, then a second cycle that confirms and
/// delivers; both cycles queue a heartbeat and a three-item inventory.
async fn two_cycles(dir: &Path, generation: SiteGeneration, key: KeyKind, name: &str) -> Run {
    let mp = MpServer::start(
        MpConfig {
            site_code: "PS1".into(),
            db_path: dir.join("site.db"),
            approval: Approval::Pending,
            limits: Limits::default(),
            mp_host: "mp.test.local".into(),
            strict: true,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let recorder = Recorder::start(mp.local_addr()).await;
    let db = SiteDb::open(dir.join("site.db")).unwrap();
    let mut opts = ClientOptions::mixed(
        &format!("http://{}", recorder.addr),
        "PS1",
        dir.join("dev"),
        name,
    );
    opts.key = key;
    opts.site_generation = generation;
    let due = Due {
        heartbeat: true,
        inventory_items: 3,
        status: false,
        policy: false,
    };
    let pending = run::run_cycle(&opts, due, &mut |_| {}).await.unwrap();
    assert!(pending.pending, "{pending}");
    let id = pending.smsid.clone().unwrap();
    assert!(db.approve(&id).unwrap());
    let done = run::run_cycle(&opts, due, &mut |_| {}).await.unwrap();
    assert!(done.done(), "{generation}: {done}");
    assert_eq!(done.smsid.as_deref(), Some(id.as_str()));
    assert!(db.rejections().unwrap().is_empty(), "{:?}", db.rejections());
    let stored_kinds = db
        .messages(Some(&id))
        .unwrap()
        .into_iter()
        .map(|m| m.kind)
        .collect();
    let requests = recorder.requests();
    mp.shutdown().await;
    Run {
        requests,
        stored_kinds,
    }
}

#[tokio::test]
async fn a_2007_client_registers_confirms_and_delivers_in_the_2007_forms() {
    let dir = tempfile::tempdir().unwrap();
    let run = two_cycles(
        dir.path(),
        SiteGeneration::Sms2007,
        KeyKind::Rsa2048,
        "GEN-2007",
    )
    .await;
    let reqs = &run.requests;
    // Registration, then the confirmation of the approved SMSID.
    let registration = with(reqs, "RequestType=\"Registration\"");
    let confirmations = with(reqs, "RequestType=\"Confirmation\"");
    assert_eq!(registration.len(), 1);
    assert!(!confirmations.is_empty());
    // SHA-1 without HashAlgorithm: the default of an RSA key on a 2007 site.
    for r in registration.iter().chain(&confirmations) {
        assert!(!contains(r, "HashAlgorithm"));
    }
    for c in &confirmations {
        assert!(contains(c, "<Certificates><Signing Encoding=\"HexBinary\""));
        assert!(!contains(c, "<Encryption"));
        assert!(!contains(c, "<DiscoveryProperties>"));
        assert!(contains(c, "<Signature><SignatureValue>"));
    }
    // Attachments named by the inventory action ID.
    assert_eq!(with(reqs, "MP_DdrEndpoint").len(), 1);
    assert_eq!(with(reqs, DISCOVERY_NAME).len(), 1);
    assert_eq!(with(reqs, INVENTORY_NAME).len(), 1);
    for kind in ["ddr", "hinv-full"] {
        assert!(
            run.stored_kinds.iter().any(|k| k == kind),
            "{kind}: {:?}",
            run.stored_kinds
        );
    }
}

#[tokio::test]
async fn a_current_client_confirms_bare_and_names_attachments_by_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = two_cycles(
        dir.path(),
        SiteGeneration::Current,
        KeyKind::Rsa2048,
        "GEN-CUR",
    )
    .await;
    let reqs = &run.requests;
    let registration = with(reqs, "RequestType=\"Registration\"");
    let confirmations = with(reqs, "RequestType=\"Confirmation\"");
    assert_eq!(registration.len(), 1);
    assert!(!confirmations.is_empty());
    // The same RSA key signs SHA-256 with the OID on a current site.
    for r in registration.iter().chain(&confirmations) {
        assert!(contains(r, "HashAlgorithm=\"1.2.840.113549.1.1.11\""));
    }
    for c in &confirmations {
        assert!(!contains(c, "<Certificates>"));
        assert!(contains(c, "<Signature SMSID=\"GUID:"));
    }
    assert_eq!(with(reqs, "MP_DdrEndpoint").len(), 1);
    assert!(with(reqs, DISCOVERY_NAME).is_empty());
    assert!(with(reqs, INVENTORY_NAME).is_empty());
    for kind in ["ddr", "hinv-full"] {
        assert!(
            run.stored_kinds.iter().any(|k| k == kind),
            "{kind}: {:?}",
            run.stored_kinds
        );
    }
}
