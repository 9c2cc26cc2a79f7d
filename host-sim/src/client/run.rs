//! `client run`: the long-running appliance. Each cycle registers if needed, queues the messages
//! that are due (heartbeat DDR, hardware inventory, status), drains the store-and-forward queue
//! in order, and polls policy (fetching, "applying" and acknowledging new bodies with a state
//! message). The queue lives in a flash file in the state directory, in the same record format
//! boards keep in flash, so a message queued while the MP is down is delivered when it is back,
//! with its original message ID (the MP de-duplicates retries).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mpagent_core::agent::messages::{request_assignments, sign_message, PolicyBodyRequest};
use mpagent_core::agent::registration::{RegistrationState, SigningIdentity};
use mpagent_core::agent::signed::{MessageParams, MessageSigner, SignedMessage};
use mpagent_core::guid::{Guid, Smsid};
use mpagent_core::io::{self, SendError};
use mpagent_core::sink::{Emit, Overflow, Sink};
use mpagent_core::store::{Endpoint, MessageMeta, Store, StoreError};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::clientauth::ClientIdSignature;
use mpagent_core::wire::header::ReplyMode;
use mpagent_core::wire::report::{
    InstanceContent, InstanceSource, InstanceWriter, Namespace, Report, ReportIdentity, ReportType,
    ReportVersion,
};
use mpagent_core::wire::state_message::StateMessage;
use mpagent_core::wire::status::StatusMessage;

use super::flash_file::FlashFile;
use super::session::{AnyConnector, Session};
use super::transport::unix_now;
use super::{ClientOptions, EXCHANGE_BUFFER};

/// Name of the flash file holding the queue.
pub const QUEUE_FILE: &str = "queue.flash";
/// Where applied policy bodies are written.
pub const POLICY_DIR: &str = "policies";
/// Where messages the MP refused for good are kept (never silently dropped).
pub const REFUSED_DIR: &str = "refused";

/// What one cycle should do.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// Queue a heartbeat DDR.
    pub heartbeat: bool,
    /// Queue a hardware inventory with this many synthetic items (0 = none).
    pub inventory_items: usize,
    /// Queue a status message.
    pub status: bool,
    /// Poll policy.
    pub policy: bool,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// The SMSID, once registered and approved.
    pub smsid: Option<String>,
    /// Pending approval: no data sent.
    pub pending: bool,
    /// Messages queued this cycle.
    pub queued: u32,
    /// Messages the MP acknowledged this cycle.
    pub delivered: u32,
    /// Messages left in the queue (the MP was unreachable or failed).
    pub still_queued: u32,
    /// Messages the MP refused for good (kept under `refused/`).
    pub refused: u32,
    /// Policies fetched and applied (`id.version`).
    pub policies_applied: Vec<String>,
    /// Why delivery stopped early, if it did.
    pub delivery_stopped: Option<String>,
}

/// Events for the demo and logs.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A message went into the queue.
    Queued { endpoint: &'static str, bytes: u32 },
    /// The MP acknowledged a message.
    Delivered {
        endpoint: &'static str,
        message_id: String,
    },
    /// Delivery stopped; the rest stays queued.
    DeliveryStopped { reason: String, queued: u32 },
    /// A policy body was fetched and applied.
    PolicyApplied { id: String, bytes: usize },
}

/// A synthetic hardware inventory of `n` items: deterministic, as every emission pass must be.
pub struct SyntheticInventory {
    /// Items (one `Win32_Printer`-like instance each, plus one operating system instance).
    pub items: usize,
}

impl InstanceSource for SyntheticInventory {
    fn write_instances(&self, w: &mut InstanceWriter<'_, '_>) -> Result<(), Overflow> {
        w.instance(
            InstanceContent::New,
            Namespace::Cimv2,
            "Win32_OperatingSystem",
            |p| {
                p.prop("Caption", "mpagent appliance firmware")?;
                p.prop("Version", env!("CARGO_PKG_VERSION"))
            },
        )?;
        for i in 0..self.items {
            w.instance(
                InstanceContent::New,
                Namespace::Cimv2,
                "Win32_Printer",
                |p| {
                    p.prop_fmt("DeviceID", format_args!("TRAY-{i:05}"))?;
                    p.prop_fmt("Name", format_args!("Paper tray {i}"))?;
                    p.prop_u64("PaperLevelPercent", (i as u64 * 37) % 101)
                },
            )?;
        }
        Ok(())
    }
}

/// A `Vec` as a sink (host only).
struct VecSink(Vec<u8>);
impl Sink for VecSink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// A registered client with its queue, ready to exchange management data.
pub struct Appliance {
    session: Session,
    connector: AnyConnector,
    store: Store<FlashFile>,
    smsid: Smsid,
    client_id: ClientIdSignature,
    buf: Vec<u8>,
}

fn store_err<E: std::fmt::Debug>(e: StoreError<E>) -> anyhow::Error {
    anyhow!("queue store: {e:?}")
}

impl Appliance {
    /// Open the session and the queue. `smsid` must be registered and approved.
    pub fn open(opts: &ClientOptions, smsid: Smsid) -> Result<Appliance> {
        let (session, connector) = Session::open(opts)?;
        let path = session.state_dir.path().join(QUEUE_FILE);
        let flash = FlashFile::open(&path, super::flash_file::DEFAULT_SIZE)
            .with_context(|| format!("opening the queue {}", path.display()))?;
        let layout = FlashFile::layout(flash.size());
        let store = match Store::open(flash, layout) {
            Ok(s) => s,
            Err(e) => return Err(store_err(e)).context("the queue file is unreadable"),
        };
        let client_id = ClientIdSignature::compute(&session.identity.signer, smsid)
            .map_err(|e| anyhow!("signing the client ID: {e:?}"))?;
        Ok(Appliance {
            session,
            connector,
            store,
            smsid,
            client_id,
            buf: vec![0u8; EXCHANGE_BUFFER],
        })
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> u32 {
        self.store.len()
    }

    fn enqueue(&mut self, endpoint: Endpoint, body: &dyn Emit, now: UnixTime) -> Result<u32> {
        let meta = MessageMeta {
            message_id: Guid::random(&mut rand_core::OsRng),
            endpoint,
            reply_mode: ReplyMode::Async,
            sent_time: now,
            source_id: Some(self.smsid),
        };
        let len = mpagent_core::sink::emitted_len(body).map_err(|_| anyhow!("body too long"))?;
        let mut scratch = [0u8; 512];
        self.store
            .enqueue(&meta, body, &mut scratch)
            .map_err(store_err)?;
        Ok(len as u32)
    }

    /// Queue the messages that are due.
    pub fn queue_due(
        &mut self,
        due: &Due,
        now: UnixTime,
        on: &mut dyn FnMut(&RunEvent),
    ) -> Result<u32> {
        let config = self.session.config()?;
        let netbios = config.netbios_name.to_string();
        let fqdn = config.fqdn.to_string();
        let site = config.site_code;
        let identity = ReportIdentity::new(self.smsid, &netbios);
        let date = now.to_datetime();
        let mut queued = 0;
        if due.heartbeat {
            let discovery = super::host_discovery(&fqdn, &["127.0.0.1"]);
            let report = Report::discovery(identity, date, &discovery);
            let n = self.enqueue(Endpoint::Ddr, &report, now)?;
            on(&RunEvent::Queued {
                endpoint: Endpoint::Ddr.name(),
                bytes: n,
            });
            queued += 1;
        }
        if due.inventory_items > 0 {
            let inv = SyntheticInventory {
                items: due.inventory_items,
            };
            let report = Report::hardware_inventory(
                identity,
                ReportType::Full,
                ReportVersion::default(),
                date,
                &inv,
            );
            let n = self.enqueue(Endpoint::Hinv, &report, now)?;
            on(&RunEvent::Queued {
                endpoint: Endpoint::Hinv.name(),
                bytes: n,
            });
            queued += 1;
        }
        if due.status {
            let status = StatusMessage {
                message_type: "appliance-online",
                smsid: self.smsid,
                machine_name: &netbios,
                site_code: site,
                time: date,
                properties: &[
                    ("Component", "mpagent"),
                    ("Version", env!("CARGO_PKG_VERSION")),
                ],
                qualifiers: &[],
            };
            let n = self.enqueue(Endpoint::Status, &status, now)?;
            on(&RunEvent::Queued {
                endpoint: Endpoint::Status.name(),
                bytes: n,
            });
            queued += 1;
        }
        Ok(queued)
    }

    /// Send queued messages in order until the queue is empty or the MP stops answering.
    /// Returns (delivered, refused, why it stopped).
    pub async fn drain(
        &mut self,
        on: &mut dyn FnMut(&RunEvent),
    ) -> Result<(u32, u32, Option<String>)> {
        let (mut delivered, mut refused) = (0, 0);
        loop {
            let Some(msg) = self.store.peek().map_err(store_err)? else {
                return Ok((delivered, refused, None));
            };
            let meta = msg.meta;
            let config = self.session.config()?;
            let signing = SigningIdentity {
                signer: &self.session.identity.signer,
                cert_der: &self.session.identity.cert_der,
            };
            let signer = MessageSigner::client(signing, &self.client_id);
            // SentTime is restamped at send time (the header is not signed and the MP checks a
            // window); the message ID stays the original one so retries de-duplicate.
            let params = MessageParams {
                endpoint: meta.endpoint.name(),
                reply_mode: meta.reply_mode,
                message_id: meta.message_id,
                now: unix_now(),
            };
            let outcome = {
                let body = self.store.body(&msg);
                let signed = SignedMessage::new(&config, &signer, params, &body)
                    .map_err(|e| anyhow!("signing a queued message: {e:?}"))?;
                let result = io::send_message(&mut self.connector, &signed, &mut self.buf).await;
                if let Some(fault) = body.fault() {
                    bail!(
                        "queued message {:?} could not be read back: {fault:?}",
                        meta.message_id
                    );
                }
                result
            };
            let id = String::from_utf8_lossy(&meta.message_id.to_braced()).into_owned();
            match outcome {
                Ok(()) => {
                    self.store.pop(&msg).map_err(store_err)?;
                    delivered += 1;
                    on(&RunEvent::Delivered {
                        endpoint: meta.endpoint.name(),
                        message_id: id,
                    });
                }
                Err(e) if e.is_retryable() => {
                    let reason = format!("{e:?}");
                    on(&RunEvent::DeliveryStopped {
                        reason: reason.clone(),
                        queued: self.store.len(),
                    });
                    return Ok((delivered, refused, Some(reason)));
                }
                Err(e) => {
                    self.keep_refused(&msg, &id, e)?;
                    self.store.pop(&msg).map_err(store_err)?;
                    refused += 1;
                }
            }
        }
    }

    /// A message the MP refused for good goes to `refused/` with the reason, then leaves the
    /// queue (it would block every later message otherwise): nothing is lost silently.
    fn keep_refused(
        &mut self,
        msg: &mpagent_core::store::QueuedMessage,
        id: &str,
        e: SendError,
    ) -> Result<()> {
        let dir = self.session.state_dir.path().join(REFUSED_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut sink = VecSink(Vec::new());
        self.store
            .body(msg)
            .emit(&mut sink)
            .map_err(|_| anyhow!("reading a refused message back"))?;
        let name = id.trim_matches(|c| c == '{' || c == '}');
        std::fs::write(dir.join(format!("{name}.body")), &sink.0)?;
        std::fs::write(
            dir.join(format!("{name}.reason")),
            format!("{} refused by the MP: {e:?}\n", msg.meta.endpoint.name()),
        )?;
        tracing::error!(
            message_id = id,
            "MP refused a queued message for good: {e:?}; kept in {}",
            dir.display()
        );
        Ok(())
    }

    /// Ask for policy, fetch bodies not applied yet, write them under `policies/`, and queue a
    /// state message acknowledging each.
    pub async fn poll_policy(&mut self, on: &mut dyn FnMut(&RunEvent)) -> Result<Vec<String>> {
        let now = unix_now();
        let config = self.session.config()?;
        let signing = SigningIdentity {
            signer: &self.session.identity.signer,
            cert_der: &self.session.identity.cert_der,
        };
        let signer = MessageSigner::client(signing, &self.client_id);
        let request = request_assignments(&config, self.smsid);
        let signed = sign_message(
            &config,
            &signer,
            &request,
            Guid::random(&mut rand_core::OsRng),
            now,
        )
        .map_err(|e| anyhow!("signing the policy request: {e:?}"))?;
        let mut assignments: Vec<(String, String, String)> = Vec::new();
        let mut scratch = vec![0u8; EXCHANGE_BUFFER * 2];
        io::request_policy(
            &mut self.connector,
            &signed,
            &mut self.buf,
            &mut scratch,
            &mut |a| {
                let text = |t: &mpagent_core::wire::xml_reader::XmlText<'_>| {
                    let mut b = [0u8; 512];
                    t.unescape_into(&mut b)
                        .map(str::to_string)
                        .unwrap_or_default()
                };
                assignments.push((
                    text(&a.policy_id),
                    text(&a.policy_version),
                    text(&a.location),
                ));
            },
        )
        .await
        .map_err(|e| anyhow!("policy request failed: {e:?}"))?;
        let dir = self.session.state_dir.path().join(POLICY_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut applied = Vec::new();
        for (id, version, location) in assignments {
            let key = format!("{id}.{version}");
            let path: PathBuf = dir.join(format!("{}.xml", sanitize(&key)));
            if path.exists() {
                continue;
            }
            let req = PolicyBodyRequest::new(
                &config,
                &self.session.identity.signer,
                self.smsid,
                &location,
                unix_now(),
            )
            .map_err(|e| anyhow!("policy {key}: {e:?}"))?;
            let mut body = VecSink(Vec::new());
            io::fetch_policy_body(&mut self.connector, &req, &mut self.buf, &mut body)
                .await
                .map_err(|e| anyhow!("fetching policy {key}: {e:?}"))?;
            super::state::write_atomic(&path, &body.0)?;
            on(&RunEvent::PolicyApplied {
                id: key.clone(),
                bytes: body.0.len(),
            });
            applied.push(key);
        }
        // Acknowledge: one state message per applied policy (topic = policy ID), queued so it
        // survives an outage like any other report.
        let netbios = config.netbios_name.to_string();
        for key in &applied {
            let identity = ReportIdentity::new(self.smsid, &netbios);
            let state = StateMessage::new(identity, unix_now().to_datetime(), key, 402, 0, 1);
            let n = self.enqueue(Endpoint::Relay, &state, unix_now())?;
            on(&RunEvent::Queued {
                endpoint: Endpoint::Relay.name(),
                bytes: n,
            });
        }
        Ok(applied)
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Schedules of `client run`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Heartbeat DDR period.
    pub heartbeat: Duration,
    /// Hardware inventory period.
    pub inventory: Duration,
    /// Policy poll period.
    pub policy: Duration,
    /// Items in the synthetic inventory.
    pub inventory_items: usize,
}

/// One full cycle: register if needed, queue what is due, drain, poll policy, drain again.
pub async fn run_cycle(
    opts: &ClientOptions,
    due: Due,
    on: &mut dyn FnMut(&RunEvent),
) -> Result<CycleReport> {
    let outcome = super::register(opts, &mut |p| tracing::info!("registration: {p:?}")).await;
    let smsid = match outcome {
        Ok(o) => match o.state {
            RegistrationState::Registered(id) => id,
            RegistrationState::Pending(id) => {
                return Ok(CycleReport {
                    smsid: Some(id.to_string()),
                    pending: true,
                    ..Default::default()
                })
            }
            other => bail!("not registered: {other:?}"),
        },
        Err(e) => {
            // The MP may be down: data already queued waits; new data is still queued below if
            // the identity was registered before.
            match super::state::StateDir::open(&opts.state_dir)?.registration()? {
                RegistrationState::Registered(id) => {
                    tracing::warn!("registration check failed ({e:#}); queueing offline");
                    id
                }
                _ => return Err(e),
            }
        }
    };
    let mut appliance = Appliance::open(opts, smsid)?;
    let mut report = CycleReport {
        smsid: Some(smsid.to_string()),
        ..Default::default()
    };
    report.queued = appliance.queue_due(&due, unix_now(), on)?;
    let (d, r, stopped) = appliance.drain(on).await?;
    report.delivered += d;
    report.refused += r;
    report.delivery_stopped = stopped;
    if due.policy && report.delivery_stopped.is_none() {
        match appliance.poll_policy(on).await {
            Ok(applied) => report.policies_applied = applied,
            Err(e) => report.delivery_stopped = Some(format!("{e:#}")),
        }
        if report.delivery_stopped.is_none() {
            let (d, r, stopped) = appliance.drain(on).await?;
            report.delivered += d;
            report.refused += r;
            report.delivery_stopped = stopped;
        }
    }
    report.still_queued = appliance.queued();
    Ok(report)
}

/// Run cycles forever (or once), each on its schedule.
pub async fn run(
    opts: &ClientOptions,
    schedule: Schedule,
    once: bool,
    on: &mut dyn FnMut(&RunEvent),
) -> Result<()> {
    let start = std::time::Instant::now();
    let (mut next_hb, mut next_inv, mut next_pol) = (start, start, start);
    // The status message goes with the first cycle only (comparing `Instant`s for this never
    // held: `now` is read after `start`).
    let mut first = true;
    loop {
        let now = std::time::Instant::now();
        let due = Due {
            heartbeat: now >= next_hb,
            inventory_items: if now >= next_inv {
                schedule.inventory_items
            } else {
                0
            },
            status: std::mem::take(&mut first),
            policy: now >= next_pol,
        };
        let report = run_cycle(opts, due, on).await?;
        tracing::info!("cycle: {report:?}");
        if due.heartbeat {
            next_hb = now + schedule.heartbeat;
        }
        if due.inventory_items > 0 {
            next_inv = now + schedule.inventory;
        }
        if due.policy {
            next_pol = now + schedule.policy;
        }
        if once {
            println!("{report:?}");
            return Ok(());
        }
        let wake = next_hb.min(next_inv).min(next_pol);
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
}
