//! Fault injection between the agent and the MP emulator: the real core driver
//! (`mpagent_core::io::register`) over the host's TCP connector, through the loopback fault proxy
//! of `mpagent_tests::fault`, with a virtual clock so that backoff costs no wall time.
//!
//! Every case must end in a defined state: retried with backoff and then registered (fault on the
//! first attempts only), or a typed `RegisterError::GaveUp(AttemptFailure::…)` (fault on every
//! attempt): never a hang (each test runs under `tokio::time::timeout`), never a changed or
//! unreadable identity, never a registration state the site does not hold. The MP's reply is not
//! signed (see `SECURITY.md`), so the last section corrupts what a reply says and checks that the
//! registrar's cross-checks (confirm before keeping, re-register after refusals, believe a
//! rejection only twice and not forever) catch it.

use std::path::PathBuf;
use std::time::Duration;

use mpagent_core::agent::registration::{
    Registrar, RegistrationEvent, RegistrationState, SigningIdentity,
};
use mpagent_core::config::{AgentConfig, SiteGeneration, SiteMode};
use mpagent_core::guid::Smsid;
use mpagent_core::http::HttpError;
use mpagent_core::io::{self, AttemptFailure, Progress, RegisterError, RegisterOptions};
use mpagent_core::profile;
use mpagent_core::time::UnixTime;
use mpagent_core::wire::registration::{AgentType, RequestType};
use mpagent_core::wire::reply::ReplyError;
use mpagent_sim::client::state::{StateDir, CERT_FILE, KEY_FILE, REGISTRATION_FILE};
use mpagent_sim::client::transport::{unix_now, TcpConnector};
use mpagent_sim::mp::db::SiteDb;
use mpagent_sim::mp::{Approval, Limits, MpConfig, MpServer};
use mpagent_tests::fault::{utf16le, Fault, FaultPlan, FaultProxy, Spot, VirtualClock};

/// Every test ends within this, whatever the fault.
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// The client's deadlines in these tests: a silent peer costs `IO`, a dripping one `EXCHANGE`.
const IO: Duration = Duration::from_millis(1500);
const EXCHANGE: Duration = Duration::from_secs(4);
const NAME: &str = "FAULT-1";

/// Byte offset, in the HTTP reply, of the hundreds digit of the status code (`HTTP/1.1 200`).
const STATUS_DIGIT: usize = 9;

struct Rig {
    dir: tempfile::TempDir,
    mp: Option<MpServer>,
    state: StateDir,
    /// `key.pk8` and `cert.der` as first written.
    identity_files: (Vec<u8>, Vec<u8>),
}

/// What one run of the driver did.
struct Run {
    result: Result<RegistrationState, RegisterError>,
    progress: Vec<Progress>,
    clock: VirtualClock,
    start: UnixTime,
    proxy_log: Vec<mpagent_tests::fault::ConnRecord>,
}

impl Run {
    /// The attempt failures the driver reported, in order.
    fn failures(&self) -> Vec<AttemptFailure> {
        self.progress
            .iter()
            .filter_map(|p| match p {
                Progress::Failed(f) => Some(*f),
                _ => None,
            })
            .collect()
    }

    /// How many retries were scheduled (failed attempts and status-2 style replies).
    fn retries(&self) -> usize {
        self.progress
            .iter()
            .filter(|p| matches!(p, Progress::Event(RegistrationEvent::RetryAt(_))))
            .count()
    }

    /// Seconds of virtual time slept before each retry, relative to the previous wake-up.
    fn backoff(&self) -> Vec<u64> {
        let mut last = self.start.0;
        self.clock
            .sleeps
            .iter()
            .map(|t| {
                let d = t.0 - last;
                last = t.0;
                d
            })
            .collect()
    }

    /// The registrar's events, in order.
    fn events(&self) -> Vec<RegistrationEvent> {
        self.progress
            .iter()
            .filter_map(|p| match p {
                Progress::Event(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    fn requests(&self) -> Vec<RequestType> {
        self.progress
            .iter()
            .filter_map(|p| match p {
                Progress::Sending { request_type, .. } => Some(*request_type),
                _ => None,
            })
            .collect()
    }
}

impl Rig {
    async fn start(approval: Approval) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mp = MpServer::start(
            MpConfig {
                site_code: "PS1".into(),
                db_path: dir.path().join("site.db"),
                approval,
                limits: Limits::default(),
                mp_host: "mp.test.local".into(),
                strict: false,
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .expect("MP starts");
        let state = StateDir::open(&dir.path().join("agent")).unwrap();
        state.load_or_create_identity(NAME, unix_now()).unwrap();
        let identity_files = (
            std::fs::read(state.path().join(KEY_FILE)).unwrap(),
            std::fs::read(state.path().join(CERT_FILE)).unwrap(),
        );
        Rig {
            dir,
            mp: Some(mp),
            state,
            identity_files,
        }
    }

    fn mp(&self) -> &MpServer {
        self.mp.as_ref().unwrap()
    }

    fn db(&self) -> SiteDb {
        SiteDb::open(self.dir.path().join("site.db")).unwrap()
    }

    /// The SMSIDs the site holds (upper case).
    fn site_smsids(&self) -> Vec<String> {
        self.db()
            .clients()
            .unwrap()
            .into_iter()
            .map(|c| c.smsid.to_ascii_uppercase())
            .collect()
    }

    /// One run of the agent through a fresh proxy with `plan`, persisting the state the way the
    /// host client does (after every event, and the final state).
    async fn run(&self, plan: FaultPlan, max_failures: u32, return_when_pending: bool) -> Run {
        self.run_at(plan, max_failures, return_when_pending, unix_now())
            .await
    }

    /// [`Self::run`] with the agent's (virtual) clock starting at `start`.
    async fn run_at(
        &self,
        plan: FaultPlan,
        max_failures: u32,
        return_when_pending: bool,
        start: UnixTime,
    ) -> Run {
        let proxy = FaultProxy::start(self.mp().local_addr(), plan)
            .await
            .unwrap();
        let url = format!("http://{}", proxy.local_addr());
        // The emulator numbers Status as ConfigMgr 2007 does (2: send again).
        let config = AgentConfig::new("PS1", SiteMode::Mixed, &url, NAME, "fault-1.local")
            .unwrap()
            .with_site_generation(SiteGeneration::Sms2007);
        let identity = self
            .state
            .load_or_create_identity(NAME, unix_now())
            .unwrap();
        assert!(!identity.created);
        let mut connector = TcpConnector {
            host: "127.0.0.1".into(),
            port: proxy.local_addr().port(),
            connect_timeout: Duration::from_secs(5),
        }
        .with_timeouts(IO, EXCHANGE);
        let mut registrar = Registrar::new(self.state.registration().unwrap());
        let mut clock = VirtualClock::new(start);
        let mut buf = vec![0u8; mpagent_sim::client::EXCHANGE_BUFFER];
        let mut progress = Vec::new();
        let state = &self.state;
        let mut observe = |p: &Progress| {
            progress.push(*p);
            if let Some(s) = match p {
                Progress::Event(ev) => ev.persist(),
                _ => None,
            } {
                state.save_registration(s).unwrap();
            }
        };
        let result = io::register(
            &mut connector,
            &mut clock,
            &config,
            &SigningIdentity {
                signer: &identity.signer,
                cert_der: &identity.cert_der,
            },
            AgentType::Client,
            &mut registrar,
            &mut rand_core::OsRng,
            &mut buf,
            RegisterOptions {
                return_when_pending,
                max_failures,
            },
            &mut observe,
        )
        .await;
        if let Ok(s) = result {
            self.state.save_registration(s).unwrap();
        }
        let connections = progress
            .iter()
            .filter(|p| matches!(p, Progress::Sending { .. }))
            .count();
        let proxy_log = proxy.wait_for(connections, Duration::from_secs(5)).await;
        Run {
            result,
            progress,
            clock,
            start,
            proxy_log,
        }
    }

    /// The identity files are byte for byte what they were, and still load as one identity; the
    /// registration file (if any) parses.
    fn assert_identity_intact(&self) {
        let key = std::fs::read(self.state.path().join(KEY_FILE)).unwrap();
        let cert = std::fs::read(self.state.path().join(CERT_FILE)).unwrap();
        assert!(
            key == self.identity_files.0 && cert == self.identity_files.1,
            "identity changed"
        );
        let again = self
            .state
            .load_or_create_identity(NAME, unix_now())
            .unwrap();
        assert!(!again.created);
        self.state
            .registration()
            .expect("the registration file stays readable");
        // No stray temp files left from an interrupted write.
        let stray: Vec<PathBuf> = std::fs::read_dir(self.state.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    fn persisted(&self) -> RegistrationState {
        self.state.registration().unwrap()
    }

    fn registration_file(&self) -> PathBuf {
        self.state.path().join(REGISTRATION_FILE)
    }

    async fn stop(mut self) {
        if let Some(mp) = self.mp.take() {
            mp.shutdown().await;
        }
    }
}

fn smsid_text(id: &Smsid) -> String {
    id.to_string().to_ascii_uppercase()
}

/// Registered with the one SMSID the site holds, and that is what is persisted.
fn assert_registered_as_the_site_says(rig: &Rig, run: &Run) -> Smsid {
    let Ok(RegistrationState::Registered(id)) = run.result else {
        panic!("not registered: {:?}", run.result)
    };
    assert_eq!(rig.site_smsids(), vec![smsid_text(&id)]);
    assert_eq!(rig.persisted(), RegistrationState::Registered(id));
    id
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("the agent did not reach a defined state in time (a hang)")
}

/// The UTF-16LE pattern right before the SMSID's GUID in the reply body.
fn smsid_pattern() -> Vec<u8> {
    utf16le("SMSID=\"GUID:")
}

/// A fault on the first two connections only: two failed attempts, backoff 5 s then 10 s
/// (virtual), then registered with the site's SMSID; the identity untouched.
async fn transient(fault: Fault, expect: impl Fn(&AttemptFailure) -> bool) {
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let run = rig.run(FaultPlan::first(2, fault.clone()), 5, true).await;
        let failures = run.failures();
        assert_eq!(failures.len(), 2, "{fault:?}: {:?}", run.progress);
        assert!(
            failures.iter().all(&expect),
            "{fault:?}: unexpected failures {failures:?}"
        );
        assert_eq!(run.backoff(), vec![5, 10], "{fault:?}");
        // Three registrations, then the confirmation of the SMSID the third reply named.
        assert_eq!(
            run.requests(),
            [
                [RequestType::Registration; 3].as_slice(),
                &[RequestType::Confirmation]
            ]
            .concat()
        );
        if matches!(fault, Fault::Corrupt { .. }) {
            assert!(run.proxy_log[..2].iter().all(|r| r.corrupted_at.is_some()));
        }
        eprintln!(
            "fault {} (first 2 connections): {failures:?}, then registered",
            short(&fault)
        );
        assert_registered_as_the_site_says(&rig, &run);
        assert!(
            run.proxy_log.iter().all(|r| !r.timed_out),
            "{:?}",
            run.proxy_log
        );
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

/// The fault on every connection: a typed error after `max_failures` attempts, nothing persisted
/// as registered, identity untouched.
async fn persistent(fault: Fault, expect: impl Fn(&AttemptFailure) -> bool) -> Rig {
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let run = rig.run(FaultPlan::always(fault.clone()), 3, true).await;
        match run.result {
            Err(RegisterError::GaveUp(f)) => {
                assert!(expect(&f), "{fault:?}: gave up with {f:?}");
                eprintln!(
                    "fault {} (always): GaveUp({f:?}), failures {:?}",
                    short(&fault),
                    run.failures()
                );
            }
            other => panic!("{fault:?}: {other:?}"),
        }
        assert_eq!(run.failures().len(), 3);
        assert_eq!(run.backoff(), vec![5, 10], "{fault:?}");
        assert_eq!(rig.persisted(), RegistrationState::Unregistered);
        assert!(!rig.registration_file().exists());
        rig.assert_identity_intact();
        rig
    })
    .await
}

/// A fault for the log: `Respond` shows its first line, not its bytes.
fn short(fault: &Fault) -> String {
    match fault {
        Fault::Respond(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            format!("Respond({:?}…)", text.lines().next().unwrap_or(""))
        }
        other => format!("{other:?}"),
    }
}

fn transport(f: &AttemptFailure) -> bool {
    matches!(f, AttemptFailure::Transport(_))
}

fn timed_out(f: &AttemptFailure) -> bool {
    *f == AttemptFailure::Transport(embedded_io_async::ErrorKind::TimedOut)
}

fn eof(f: &AttemptFailure) -> bool {
    *f == AttemptFailure::Http(HttpError::UnexpectedEof)
}

/// A connection closed or reset before any reply byte: depending on timing the client sees the
/// reset (on write or read) or a clean end of stream.
fn closed_early(f: &AttemptFailure) -> bool {
    transport(f) || eof(f)
}

// ---------------------------------------------------------------------------------------------
// Baseline and harmless faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pass_through_registers_at_once() {
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let run = rig.run(FaultPlan::always(Fault::Pass), 3, true).await;
        assert_registered_as_the_site_says(&rig, &run);
        assert!(run.failures().is_empty() && run.clock.sleeps.is_empty());
        // The registration, then the confirmation of the SMSID its reply named.
        assert_eq!(run.requests(), [Reg, Conf]);
        assert_eq!(run.proxy_log.len(), 2);
        assert!(run
            .proxy_log
            .iter()
            .all(|r| r.reached_mp && r.delivered > 0));
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_short_delay_or_a_fast_drip_is_tolerated() {
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        for fault in [
            Fault::Delay(IO / 3),
            Fault::Drip {
                bytes: 64,
                every: Duration::from_millis(5),
            },
        ] {
            std::fs::remove_file(rig.registration_file()).ok();
            let run = rig.run(FaultPlan::always(fault.clone()), 3, true).await;
            assert_registered_as_the_site_says(&rig, &run);
            assert!(run.failures().is_empty(), "{fault:?}: {:?}", run.failures());
        }
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Transient faults: retried with backoff, then registered
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn drop_then_pass() {
    transient(Fault::Drop, closed_early).await
}

#[tokio::test]
async fn reset_before_the_reply_then_pass() {
    transient(Fault::Reset { after: 0 }, closed_early).await
}

#[tokio::test]
async fn reset_mid_head_then_pass() {
    transient(Fault::Reset { after: 40 }, closed_early).await
}

#[tokio::test]
async fn reset_mid_body_then_pass() {
    transient(Fault::Reset { after: 600 }, closed_early).await
}

#[tokio::test]
async fn truncated_before_the_reply_then_pass() {
    // The MP registered the client but the reply never arrived: the retry gets the same SMSID.
    transient(Fault::Truncate { after: 0 }, eof).await
}

#[tokio::test]
async fn truncated_mid_head_then_pass() {
    transient(Fault::Truncate { after: 40 }, eof).await
}

#[tokio::test]
async fn truncated_mid_body_then_pass() {
    transient(Fault::Truncate { after: 600 }, eof).await
}

#[tokio::test]
async fn hang_hits_the_read_deadline_then_pass() {
    transient(Fault::Hang, timed_out).await
}

#[tokio::test]
async fn long_delay_hits_the_read_deadline_then_pass() {
    transient(Fault::Delay(IO * 2), timed_out).await
}

#[tokio::test]
async fn slow_drip_hits_the_exchange_deadline_then_pass() {
    // One byte every 10 ms: every read makes progress, only the exchange deadline ends it.
    transient(
        Fault::Drip {
            bytes: 1,
            every: Duration::from_millis(10),
        },
        timed_out,
    )
    .await
}

#[tokio::test]
async fn corrupt_status_code_then_pass() {
    // `200` becomes `500`.
    transient(
        Fault::Corrupt {
            at: Spot::Offset(STATUS_DIGIT),
            xor: b'2' ^ b'5',
        },
        |f| *f == AttemptFailure::Status(500),
    )
    .await
}

#[tokio::test]
async fn corrupt_http_framing_then_pass() {
    // The first digit of `Content-Length` XOR 8: `0`–`7` grow by 8 (longer than the body: the MP
    // closes first), `8`/`9` shrink (the body is cut), `2`–`7` may turn into `:`–`?` (not a number).
    transient(
        Fault::Corrupt {
            at: Spot::After {
                pattern: b"Content-Length: ".to_vec(),
                skip: 16,
            },
            xor: 0x08,
        },
        |f| matches!(f, AttemptFailure::Http(_) | AttemptFailure::Reply(_)),
    )
    .await
}

#[tokio::test]
async fn corrupt_multipart_boundary_then_pass() {
    // The first delimiter of the body no longer matches the boundary of the Content-Type.
    transient(
        Fault::Corrupt {
            at: Spot::After {
                pattern: b"\r\n\r\n--aAbB".to_vec(),
                skip: 8,
            },
            xor: 0x20,
        },
        |f| matches!(f, AttemptFailure::Reply(_)),
    )
    .await
}

#[tokio::test]
async fn corrupt_smsid_syntax_then_pass() {
    // `SMSID="GUID:` becomes `SMSID="GUIDz`: not an SMSID, refused, retried.
    transient(
        Fault::Corrupt {
            at: Spot::After {
                pattern: utf16le("SMSID=\"GUID"),
                skip: utf16le("SMSID=\"GUID").len(),
            },
            xor: b':' ^ b'z',
        },
        |f| *f == AttemptFailure::Reply(ReplyError::BadSmsid),
    )
    .await
}

#[tokio::test]
async fn corrupt_utf16_payload_then_pass() {
    // The high byte of a character of the body becomes a lone surrogate (0xD8xx).
    transient(
        Fault::Corrupt {
            at: Spot::After {
                pattern: utf16le("<ClientRegistrationResponse"),
                skip: 3,
            },
            xor: 0xD8,
        },
        |f| matches!(f, AttemptFailure::Reply(ReplyError::Utf16(_))),
    )
    .await
}

#[tokio::test]
async fn empty_200_quiet_refusal_then_pass() {
    // What real MPs answer to a request they refuse (docs/protocol.md §6): HTTP 200, empty body.
    transient(
        Fault::Respond(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        |f| *f == AttemptFailure::EmptyReply,
    )
    .await
}

#[tokio::test]
async fn iis_html_error_page_then_pass() {
    // An IIS error page in place of the message (docs/protocol.md §4): chunked HTML, not multipart.
    let page = b"<html><body><h1>Server Error</h1></body></html>";
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        page.len()
    )
    .into_bytes();
    reply.extend_from_slice(page);
    reply.extend_from_slice(b"\r\n0\r\n\r\n");
    transient(Fault::Respond(reply), |f| {
        matches!(f, AttemptFailure::Reply(ReplyError::NoBoundary))
    })
    .await
}

#[tokio::test]
async fn https_only_mp_403_then_pass() {
    transient(
        Fault::Respond(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 28\r\n\r\nClient certificate required\n"
                .to_vec(),
        ),
        |f| *f == AttemptFailure::Status(403),
    )
    .await
}

#[tokio::test]
async fn not_http_at_all_then_pass() {
    // Something else listens on the MP's port (an SSH banner).
    transient(Fault::Respond(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()), |f| {
        matches!(f, AttemptFailure::Http(_))
    })
    .await
}

#[tokio::test]
async fn an_endless_reply_overflows_the_buffer_instead_of_growing() {
    // A head that never ends, bigger than the exchange buffer: refused, not buffered.
    let mut reply = b"HTTP/1.1 200 OK\r\n".to_vec();
    while reply.len() < 3 * mpagent_sim::client::EXCHANGE_BUFFER {
        reply.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    transient(Fault::Respond(reply), |f| {
        matches!(
            f,
            AttemptFailure::Http(HttpError::ResponseTooLarge { .. } | HttpError::TooManyHeaders)
        )
    })
    .await
}

#[tokio::test]
async fn status_two_from_a_flipped_digit_is_a_retry() {
    // `Status="0"` becomes `Status="2"` ("send again"): a scheduled retry, not a failure.
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let plan = FaultPlan::first(
            1,
            Fault::Corrupt {
                at: Spot::After {
                    pattern: utf16le("Status=\""),
                    skip: utf16le("Status=\"").len(),
                },
                xor: b'0' ^ b'2',
            },
        );
        let run = rig.run(plan, 3, true).await;
        assert!(run.proxy_log[0].corrupted_at.is_some());
        assert!(run.failures().is_empty());
        assert_eq!(run.retries(), 1);
        assert_eq!(run.backoff(), vec![5]);
        assert_registered_as_the_site_says(&rig, &run);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn status_one_from_a_flipped_digit_is_confirmed_into_registered() {
    // `Status="0"` becomes `Status="1"` (pending): the agent confirms and learns it is registered.
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let plan = FaultPlan::first(
            1,
            Fault::Corrupt {
                at: Spot::After {
                    pattern: utf16le("Status=\""),
                    skip: utf16le("Status=\"").len(),
                },
                xor: b'0' ^ b'1',
            },
        );
        let run = rig.run(plan, 3, false).await;
        assert_eq!(
            run.requests(),
            vec![RequestType::Registration, RequestType::Confirmation]
        );
        assert_registered_as_the_site_says(&rig, &run);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn fail_two_different_ways_then_pass() {
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let plan = FaultPlan::sequence(
            vec![Fault::Hang, Fault::Truncate { after: 40 }, Fault::Drop],
            Fault::Pass,
        );
        let run = rig.run(plan, 5, true).await;
        let f = run.failures();
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(
            timed_out(&f[0]) && eof(&f[1]) && closed_early(&f[2]),
            "{f:?}"
        );
        assert_eq!(run.backoff(), vec![5, 10, 20]);
        assert_registered_as_the_site_says(&rig, &run);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Persistent faults: a typed error, nothing wrongly persisted
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn always_dropped_gives_up_with_a_transport_or_eof_error() {
    let rig = persistent(Fault::Drop, closed_early).await;
    assert!(rig.site_smsids().is_empty(), "the MP was never reached");
    rig.stop().await;
}

#[tokio::test]
async fn always_hanging_gives_up_with_timed_out() {
    let rig = persistent(Fault::Hang, timed_out).await;
    assert!(rig.site_smsids().is_empty());
    rig.stop().await;
}

#[tokio::test]
async fn always_dripping_gives_up_with_timed_out() {
    let rig = persistent(
        Fault::Drip {
            bytes: 1,
            every: Duration::from_millis(10),
        },
        timed_out,
    )
    .await;
    rig.stop().await;
}

#[tokio::test]
async fn always_reset_gives_up_and_a_later_run_converges_on_the_site_smsid() {
    // The site registered the client on the first attempt; the agent never heard. The agent ends
    // Unregistered (a defined state), and the next run over a healthy network gets the SMSID the
    // site already holds for this certificate, without a second site record.
    let rig = persistent(Fault::Reset { after: 600 }, closed_early).await;
    let site = rig.site_smsids();
    assert_eq!(site.len(), 1, "{site:?}");
    let run = bounded(rig.run(FaultPlan::always(Fault::Pass), 3, true)).await;
    let id = assert_registered_as_the_site_says(&rig, &run);
    assert_eq!(vec![smsid_text(&id)], site);
    rig.assert_identity_intact();
    rig.stop().await;
}

#[tokio::test]
async fn always_truncated_gives_up_with_unexpected_eof() {
    let rig = persistent(Fault::Truncate { after: 600 }, eof).await;
    rig.stop().await;
}

#[tokio::test]
async fn always_corrupt_status_gives_up_with_the_status() {
    let rig = persistent(
        Fault::Corrupt {
            at: Spot::Offset(STATUS_DIGIT),
            xor: b'2' ^ b'5',
        },
        |f| *f == AttemptFailure::Status(500),
    )
    .await;
    rig.stop().await;
}

#[tokio::test]
async fn mp_gone_gives_up_with_connection_refused() {
    bounded(async {
        let mut rig = Rig::start(Approval::Auto).await;
        let mp_addr = rig.mp().local_addr();
        rig.mp.take().unwrap().shutdown().await;
        let run = rig_run_direct(&rig, mp_addr).await;
        assert_eq!(
            run,
            Err(RegisterError::GaveUp(AttemptFailure::Transport(
                embedded_io_async::ErrorKind::ConnectionRefused
            )))
        );
        assert_eq!(rig.persisted(), RegistrationState::Unregistered);
        rig.assert_identity_intact();
    })
    .await
}

async fn rig_run_direct(
    rig: &Rig,
    addr: std::net::SocketAddr,
) -> Result<RegistrationState, RegisterError> {
    let url = format!("http://{addr}");
    let config = AgentConfig::new("PS1", SiteMode::Mixed, &url, NAME, "fault-1.local").unwrap();
    let identity = rig.state.load_or_create_identity(NAME, unix_now()).unwrap();
    let mut connector = TcpConnector {
        host: "127.0.0.1".into(),
        port: addr.port(),
        connect_timeout: Duration::from_secs(5),
    }
    .with_timeouts(IO, EXCHANGE);
    let mut registrar = Registrar::new(rig.state.registration().unwrap());
    io::register(
        &mut connector,
        &mut VirtualClock::new(unix_now()),
        &config,
        &SigningIdentity {
            signer: &identity.signer,
            cert_der: &identity.cert_der,
        },
        AgentType::Client,
        &mut registrar,
        &mut rand_core::OsRng,
        &mut vec![0u8; 4096],
        RegisterOptions {
            return_when_pending: true,
            max_failures: 2,
        },
        &mut |_| {},
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// What an unsigned reply could make the agent believe, and the cross-checks that catch it
// (SECURITY.md): corrupt what the reply says, never only how it is framed
// ---------------------------------------------------------------------------------------------

/// Where the version digit of the SMSID's GUID sits in the reply: `GUID:xxxxxxxx-xxxx-4xxx-…`.
/// The emulator issues version-4 GUIDs, so that character is always `4`; XOR 1 makes it `5`,
/// another valid hex digit: the reply still parses, with another SMSID.
fn smsid_version_digit() -> Spot {
    Spot::After {
        pattern: smsid_pattern(),
        skip: smsid_pattern().len() + 2 * 14,
    }
}

fn corrupt_smsid() -> Fault {
    Fault::Corrupt {
        at: smsid_version_digit(),
        xor: 1,
    }
}

fn flip_version_digit(id: &str) -> String {
    let mut b = id.as_bytes().to_vec();
    b[5 + 14] ^= 1;
    String::from_utf8(b).unwrap()
}

fn smsid(text: &str) -> Smsid {
    Smsid::parse(text.as_bytes()).unwrap()
}

/// The one SMSID the site holds, and the one a flipped version digit turns it into.
fn right_and_forged(rig: &Rig) -> (Smsid, Smsid) {
    let site = rig.site_smsids();
    assert_eq!(site.len(), 1, "{site:?}");
    (smsid(&site[0]), smsid(&flip_version_digit(&site[0])))
}

fn refused_for_unknown_smsid(rig: &Rig) {
    let reasons = format!("{:?}", rig.db().rejections().unwrap());
    assert!(reasons.contains("unknown SMSID"), "{reasons}");
}

use RequestType::{Confirmation as Conf, Registration as Reg};

#[tokio::test]
async fn corrupted_smsid_digit_is_caught_before_persisting() {
    // The reply carries no signature or checksum beyond TCP's: a single flipped bit inside the
    // GUID yields a well-formed reply with another SMSID. The agent keeps an SMSID only once the
    // site answers a signed confirmation naming it with that same SMSID; the site does not know
    // the corrupted one (403), so it is dropped, counted as a failure, and registration retried.
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let run = rig.run(FaultPlan::always(corrupt_smsid()), 3, true).await;
        assert_eq!(
            run.result,
            Err(RegisterError::GaveUp(AttemptFailure::Status(403)))
        );
        let (_, forged) = right_and_forged(&rig);
        assert_eq!(run.requests(), [Reg, Conf].repeat(3));
        assert!(run
            .proxy_log
            .iter()
            .step_by(2)
            .all(|r| r.corrupted_at.is_some()));
        let events = run.events();
        assert_eq!(events.len(), 5, "{events:?}");
        for (i, e) in events.iter().enumerate() {
            match (i % 2, e) {
                (0, RegistrationEvent::Issued(x)) | (1, RegistrationEvent::Discarded(x, _)) => {
                    assert_eq!(*x, forged)
                }
                _ => panic!("{events:?}"),
            }
        }
        assert_eq!(run.backoff(), vec![5, 10]);
        // Nothing persisted: no registration file at all.
        assert_eq!(rig.persisted(), RegistrationState::Unregistered);
        assert!(!rig.registration_file().exists());
        refused_for_unknown_smsid(&rig);
        // Over a healthy network the next run keeps the site's SMSID.
        let run = rig.run(FaultPlan::always(Fault::Pass), 3, true).await;
        assert_registered_as_the_site_says(&rig, &run);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn corrupted_smsid_digit_once_is_dropped_then_the_site_smsid_is_kept() {
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let run = rig.run(FaultPlan::first(1, corrupt_smsid()), 3, true).await;
        let (right, forged) = right_and_forged(&rig);
        assert_eq!(run.requests(), [Reg, Conf, Reg, Conf]);
        assert_eq!(
            run.events(),
            vec![
                RegistrationEvent::Issued(forged),
                RegistrationEvent::Discarded(forged, run.clock.sleeps[0]),
                RegistrationEvent::Issued(right),
                RegistrationEvent::Registered(right),
            ]
        );
        assert_eq!(run.failures(), vec![AttemptFailure::Status(403)]);
        assert_eq!(run.backoff(), vec![5]);
        assert_registered_as_the_site_says(&rig, &run);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_confirmation_answer_naming_another_smsid_is_not_kept() {
    // The registration reply is intact, the confirmation's answer is corrupted: the two
    // disagree, so neither is kept (a typed `Unconfirmed` failure once attempts run out).
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let plan = FaultPlan::sequence(vec![Fault::Pass, corrupt_smsid()], Fault::Pass);
        let run = rig.run(plan, 3, true).await;
        let (right, _) = right_and_forged(&rig);
        assert!(run.proxy_log[1].corrupted_at.is_some());
        assert_eq!(run.requests(), [Reg, Conf, Reg, Conf]);
        assert_eq!(run.failures(), vec![AttemptFailure::Unconfirmed]);
        assert_eq!(run.backoff(), vec![5]);
        assert!(
            matches!(
                run.events()[..2],
                [RegistrationEvent::Issued(a), RegistrationEvent::Discarded(b, _)]
                    if a == right && b == right
            ),
            "{:?}",
            run.events()
        );
        assert_registered_as_the_site_says(&rig, &run);

        // Every confirmation answer corrupted: a typed error, nothing persisted.
        std::fs::remove_file(rig.registration_file()).unwrap();
        let plan = FaultPlan::sequence(
            vec![
                Fault::Pass,
                corrupt_smsid(),
                Fault::Pass,
                corrupt_smsid(),
                Fault::Pass,
                corrupt_smsid(),
            ],
            Fault::Pass,
        );
        let run = rig.run(plan, 3, true).await;
        assert_eq!(
            run.result,
            Err(RegisterError::GaveUp(AttemptFailure::Unconfirmed))
        );
        assert!(!rig.registration_file().exists());
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn corrupted_pending_smsid_is_caught_and_a_stale_one_is_abandoned() {
    bounded(async {
        let rig = Rig::start(Approval::Pending).await;
        let run = rig.run(FaultPlan::first(1, corrupt_smsid()), 3, true).await;
        let (right, forged) = right_and_forged(&rig);
        // The corrupted SMSID was confirmed, refused and dropped; the site's is pending.
        assert_eq!(run.result, Ok(RegistrationState::Pending(right)));
        assert_eq!(rig.persisted(), RegistrationState::Pending(right));
        assert_eq!(run.requests(), [Reg, Conf, Reg, Conf]);
        assert!(
            matches!(
                run.events()[..2],
                [RegistrationEvent::Issued(a), RegistrationEvent::Discarded(b, _)]
                    if a == forged && b == forged
            ),
            "{:?}",
            run.events()
        );

        // What an agent without the confirmation step persisted (or an SMSID the site deleted
        // since): pending with an SMSID the site does not know. Its confirmations are refused;
        // after `CONFIRMATION_REFUSALS_BEFORE_REREGISTER` refusals the agent registers afresh,
        // in the same run, even with a give-up bound of one failure.
        assert_eq!(profile::CONFIRMATION_REFUSALS_BEFORE_REREGISTER, 2);
        rig.state
            .save_registration(RegistrationState::Pending(forged))
            .unwrap();
        assert!(rig.db().approve(&smsid_text(&right)).unwrap());
        let run = rig.run(FaultPlan::always(Fault::Pass), 1, true).await;
        assert_eq!(run.requests(), [Conf, Conf, Reg, Conf]);
        assert_eq!(run.failures(), vec![AttemptFailure::Status(403); 2]);
        let events = run.events();
        assert!(
            matches!(
                events[..],
                [
                    RegistrationEvent::RetryAt(_),
                    RegistrationEvent::Abandoned(a, _),
                    RegistrationEvent::Issued(b),
                    RegistrationEvent::Registered(c),
                ] if a == forged && b == right && c == right
            ),
            "{events:?}"
        );
        assert_eq!(run.backoff(), vec![5, 5]);
        assert_registered_as_the_site_says(&rig, &run);
        refused_for_unknown_smsid(&rig);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_stale_pending_smsid_recovers_across_runs_that_stop_at_the_first_refusal() {
    // A run that ends early (the network fails after one refused confirmation) leaves the
    // stale SMSID persisted, and the refusal count is not persisted. Refusals never count
    // towards the give-up bound, so the next run over a working network still reaches
    // `CONFIRMATION_REFUSALS_BEFORE_REREGISTER` and registers afresh.
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        rig.run(FaultPlan::always(Fault::Pass), 3, true).await;
        let (right, forged) = right_and_forged(&rig);
        rig.state
            .save_registration(RegistrationState::Pending(forged))
            .unwrap();
        let run = rig
            .run(FaultPlan::sequence(vec![Fault::Pass], Fault::Drop), 1, true)
            .await;
        assert!(
            matches!(run.result, Err(RegisterError::GaveUp(_))),
            "{:?}",
            run.result
        );
        assert_eq!(rig.persisted(), RegistrationState::Pending(forged));
        let run = rig.run(FaultPlan::always(Fault::Pass), 1, true).await;
        assert_eq!(run.result, Ok(RegistrationState::Registered(right)));
        assert_registered_as_the_site_says(&rig, &run);
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn status_flipped_to_rejected_is_asked_again() {
    // `Status="0"` becomes `Status="3"`: one rejection is not believed; the agent asks again
    // shortly and, the site having registered it, ends registered. Nothing says "rejected".
    bounded(async {
        let rig = Rig::start(Approval::Auto).await;
        let plan = FaultPlan::first(
            1,
            Fault::Corrupt {
                at: Spot::After {
                    pattern: utf16le("Status=\""),
                    skip: utf16le("Status=\"").len(),
                },
                xor: b'0' ^ b'3',
            },
        );
        let run = rig.run(plan, 3, true).await;
        assert!(run.proxy_log[0].corrupted_at.is_some());
        assert_eq!(run.requests(), [Reg, Reg, Conf]);
        let events = run.events();
        assert!(
            matches!(
                events[..],
                [
                    RegistrationEvent::RejectedOnce(_),
                    RegistrationEvent::Issued(_),
                    RegistrationEvent::Registered(_)
                ]
            ),
            "{events:?}"
        );
        assert_eq!(run.backoff(), vec![profile::REJECTION_SECOND_ASK_SECS]);
        assert_registered_as_the_site_says(&rig, &run);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_real_rejection_is_persisted_with_its_time_and_asked_again_after_the_recheck() {
    bounded(async {
        let rig = Rig::start(Approval::Pending).await;
        let run = rig.run(FaultPlan::always(Fault::Pass), 3, true).await;
        let Ok(RegistrationState::Pending(id)) = run.result else {
            panic!("{:?}", run.result)
        };
        assert!(rig.db().reject(&smsid_text(&id)).unwrap());

        // Two rejections in a row: believed, persisted with the time of the second.
        let t0 = unix_now();
        let run = rig
            .run_at(FaultPlan::always(Fault::Pass), 3, true, t0)
            .await;
        let at = t0.plus(profile::REJECTION_SECOND_ASK_SECS);
        assert_eq!(run.result, Ok(RegistrationState::Rejected(at)));
        assert_eq!(run.requests(), [Conf, Conf]);
        assert_eq!(rig.persisted(), RegistrationState::Rejected(at));

        // Until the recheck a run sends nothing.
        let recheck = at.plus(profile::REJECTION_RECHECK_SECS);
        let run = rig
            .run_at(FaultPlan::always(Fault::Pass), 3, true, recheck.minus(1))
            .await;
        assert_eq!(run.result, Ok(RegistrationState::Rejected(at)));
        assert!(run.requests().is_empty());

        // Still rejected at the recheck: asked twice again, the new time persisted.
        let run = rig
            .run_at(FaultPlan::always(Fault::Pass), 3, true, recheck)
            .await;
        let again = recheck.plus(profile::REJECTION_SECOND_ASK_SECS);
        assert_eq!(run.result, Ok(RegistrationState::Rejected(again)));
        assert_eq!(run.requests(), [Reg, Reg]);
        assert_eq!(rig.persisted(), RegistrationState::Rejected(again));

        // The administrator unblocks the device: the next recheck registers it.
        assert!(rig.db().approve(&smsid_text(&id)).unwrap());
        let next = again.plus(profile::REJECTION_RECHECK_SECS);
        let run = rig
            .run_at(FaultPlan::always(Fault::Pass), 3, true, next)
            .await;
        assert_eq!(run.requests(), [Reg, Conf]);
        assert_eq!(assert_registered_as_the_site_says(&rig, &run), id);
        rig.assert_identity_intact();
        rig.stop().await;
    })
    .await
}
