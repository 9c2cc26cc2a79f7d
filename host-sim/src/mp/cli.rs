//! `mpagent-sim mp …`: serve the emulator and administer its site database (approve, reject,
//! list clients and rejections, order the next registration reply, import an ISV proxy
//! certificate, list received messages, publish
//! and list policies).

use super::db::{smsid_key, NewPolicy, NextReply, PolicyTarget, SiteDb};
use super::tls::TlsVersion;
use super::{Approval, Limits, MpConfig, MpServer, TlsConfig};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The site database of an administration command: it must exist, so that a mistyped path
/// is an error rather than an empty site reporting 0 rows (`mp serve` creates it).
fn open_admin(db: &std::path::Path) -> anyhow::Result<SiteDb> {
    anyhow::ensure!(
        db.is_file(),
        "--db {}: no site database there (administration commands never create one; \
         `mp serve --db {}` does)",
        db.display(),
        db.display()
    );
    SiteDb::open(db)
}

/// An SMSID as an administrator typed it; a bare GUID is told what it lacks rather than
/// reported as an unknown client.
fn admin_smsid(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    if super::util::normalize_smsid(s).is_none() {
        if let Some(with) = super::util::normalize_smsid(&format!("GUID:{s}")) {
            anyhow::bail!("SMSID {s:?} is missing the \"GUID:\" prefix; write {with}");
        }
    }
    Ok(smsid_key(s))
}

/// The `mp` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MpCommand {
    /// Run the MP emulator until Ctrl-C.
    Serve {
        /// Address and port to serve on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Site database (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Three letters or digits.
        #[arg(long, default_value = "P01")]
        site_code: String,
        /// New clients: registered at once (auto), or pending until `mp approve` (pending).
        #[arg(long, value_enum, default_value_t = Approval::Auto)]
        approval: Approval,
        /// Real-MP mode: single-body and pending clients' reports, and messages failing identity
        /// or signature checks, get 200 with an empty body and are dropped (see `mp rejections`);
        /// Confirmation replies without SMSID; certificates outside their validity refused.
        #[arg(long)]
        strict: bool,
        /// The FQDN the MP reports for itself.
        #[arg(long, default_value = "mp.mpagent.test")]
        mp_host: String,
        /// Largest request line + headers, bytes.
        #[arg(long, default_value_t = Limits::default().max_head_bytes)]
        max_head_bytes: usize,
        /// Largest request body (and decompressed message body), bytes.
        #[arg(long, default_value_t = Limits::default().max_body_bytes)]
        max_body_bytes: usize,
        /// Seconds allowed for a whole request to arrive.
        #[arg(long, default_value_t = Limits::default().read_timeout.as_secs())]
        read_timeout_secs: u64,
        /// Connections served at once; as many more wait up to the read timeout, the rest get 503.
        #[arg(long, default_value_t = Limits::default().max_connections)]
        max_connections: usize,
        /// Connections one IP address may have open (served or waiting) at once; more are
        /// answered 503 at once (raise it for a `fleet` run from one host).
        #[arg(long, default_value_t = Limits::default().max_connections_per_address)]
        max_connections_per_address: usize,
        /// Signed messages whose SentTime is further than this from our clock are refused, seconds.
        #[arg(long, default_value_t = Limits::default().sent_time_window.as_secs())]
        sent_time_window_secs: u64,
        /// Policy ClientTokens further than this from our clock are refused, seconds.
        #[arg(long, default_value_t = Limits::default().client_token_window.as_secs())]
        client_token_window_secs: u64,
        /// Native mode: serve HTTPS with this certificate (DER or PEM, chain allowed) and require
        /// client certificates issued by --client-ca.
        #[arg(long, requires_all = ["tls_key", "client_ca"])]
        tls_cert: Option<PathBuf>,
        /// Native mode: the server certificate's key (DER or PEM; PKCS#8, SEC1 or PKCS#1).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Native mode: the CA(s) client certificates must chain to (DER or PEM).
        #[arg(long, requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// Native mode: check client certificates against this CRL (DER or PEM); a client whose
        /// CA has no CRL here is refused.
        #[arg(long, requires = "tls_cert")]
        crl: Option<PathBuf>,
        /// Native mode: the TLS versions served (Windows Server 2016/2019 IIS: 1.2).
        #[arg(long, value_enum, default_value_t = TlsVersion::Any, requires = "tls_cert")]
        tls_version: TlsVersion,
        /// Native mode: ask for the client certificate only after reading the request, as IIS
        /// does by default (renegotiation on TLS 1.2, post-handshake authentication on 1.3).
        #[arg(long, requires = "tls_cert")]
        client_cert_after_request: bool,
    },
    /// Approve a pending client.
    Approve {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
        /// The client's SMSID, with its GUID: prefix (e.g. GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42).
        smsid: String,
    },
    /// Block a client: its registrations and confirmations get Status 3.
    Reject {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
        /// The client's SMSID, with its GUID: prefix (e.g. GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42).
        smsid: String,
    },
    /// Make the next registration reply to a client Reset (Status 2: register afresh), Error
    /// (Status 3) or CertificateReset (Status 4: new key and certificate, then register); after
    /// Reset and CertificateReset the client's record is gone, so it registers anew.
    NextReply {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
        /// The client's SMSID, with its GUID: prefix (e.g. GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42).
        smsid: String,
        /// What the next registration reply to this client says.
        #[arg(value_enum)]
        reply: NextReply,
    },
    /// List registered clients.
    Clients {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
    },
    /// Import an ISV proxy certificate (DER or PEM); prints the SMSID the site assigns to it.
    ImportCert {
        /// Site database (must exist unless --create).
        #[arg(long)]
        db: PathBuf,
        /// The proxy's certificate file.
        file: PathBuf,
        /// Create the site database if it does not exist (to set a site up before `mp serve`).
        #[arg(long)]
        create: bool,
    },
    /// List refused requests.
    Rejections {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
    },
    /// List accepted management messages (DDR, inventory, status, state), oldest first.
    Messages {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
        /// Only this client's messages.
        #[arg(long)]
        smsid: Option<String>,
        /// Only messages to this endpoint (e.g. MP_HinvEndpoint).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Publish, assign and list policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// The `mp policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Publish a policy (ID + version + body) and assign it to one client or to all; prints the
    /// assignment ID and the body's location.
    Add {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
        /// Policy ID, e.g. {5C4D3A3E-0000-4000-8000-000000000001} (letters, digits, {}-_).
        #[arg(long)]
        id: String,
        /// Policy version, e.g. 1.00.
        #[arg(long)]
        version: String,
        /// Assign to this client.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        smsid: Option<String>,
        /// Assign to every client.
        #[arg(long)]
        all: bool,
        /// PolicyCategory (default Custom).
        #[arg(long)]
        category: Option<String>,
        /// PolicyFlags bit mask.
        #[arg(long, default_value_t = 0)]
        flags: u32,
        /// File holding the policy body XML (UTF-8, or UTF-16 with a BOM).
        #[arg(long, conflicts_with = "body", required_unless_present = "body")]
        body_file: Option<PathBuf>,
        /// The policy body XML.
        #[arg(long)]
        body: Option<String>,
    },
    /// Serve another body for a published policy while its assignments keep announcing the
    /// published body's hash (a stand-in for an attacker on the path, to show that clients
    /// refuse it); without --body-file, serve the published body again.
    Tamper {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
        /// The published policy's ID.
        #[arg(long)]
        id: String,
        /// The published policy's version.
        #[arg(long)]
        version: String,
        /// The body to serve instead (XML text, UTF-8 or UTF-16 with BOM).
        #[arg(long)]
        body_file: Option<PathBuf>,
    },
    /// List policy assignments.
    List {
        /// Site database file (must exist; `mp serve` or `mp import-cert --create` makes it).
        #[arg(long)]
        db: PathBuf,
    },
}

/// Text of a body file: UTF-8 (an optional BOM dropped) or UTF-16 with a BOM.
pub fn read_text_file(bytes: &[u8]) -> anyhow::Result<String> {
    let utf16 = |b: &[u8], le: bool| -> anyhow::Result<String> {
        anyhow::ensure!(
            b.len().is_multiple_of(2),
            "UTF-16 file with an odd number of bytes"
        );
        let units = b.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .context("invalid UTF-16")
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        utf16(rest, true)
    } else if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        utf16(rest, false)
    } else {
        let rest = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
        Ok(std::str::from_utf8(rest).context("not UTF-8")?.to_string())
    }
}

/// Certificate bytes from a DER or PEM (`-----BEGIN CERTIFICATE-----`) file.
pub fn read_cert_file(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(bytes.to_vec());
    };
    let Some(start) = text.find("-----BEGIN CERTIFICATE-----") else {
        return Ok(bytes.to_vec());
    };
    let rest = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
    let end = rest
        .find("-----END CERTIFICATE-----")
        .context("PEM without END CERTIFICATE")?;
    let b64: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64_decode(&b64).context("bad base64 in PEM")
}

fn base64_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    let val = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => anyhow::bail!("invalid base64 character {:?}", c as char),
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    anyhow::ensure!(s.len() % 4 != 1, "truncated base64");
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

/// Runs one `mp` subcommand.
pub async fn run(cmd: MpCommand) -> anyhow::Result<()> {
    match cmd {
        MpCommand::Serve {
            listen,
            db,
            site_code,
            approval,
            strict,
            mp_host,
            max_head_bytes,
            max_body_bytes,
            read_timeout_secs,
            max_connections,
            max_connections_per_address,
            sent_time_window_secs,
            client_token_window_secs,
            tls_cert,
            tls_key,
            client_ca,
            crl,
            tls_version,
            client_cert_after_request,
        } => {
            let config = MpConfig {
                site_code,
                db_path: db,
                approval,
                limits: Limits {
                    max_head_bytes,
                    max_body_bytes,
                    read_timeout: Duration::from_secs(read_timeout_secs),
                    max_connections,
                    max_connections_per_address,
                    sent_time_window: Duration::from_secs(sent_time_window_secs),
                    client_token_window: Duration::from_secs(client_token_window_secs),
                },
                mp_host,
                strict,
            };
            let server = match (tls_cert, tls_key, client_ca) {
                (Some(cert), Some(key), Some(ca)) => {
                    let mut tls = TlsConfig::from_files(&cert, &key, &ca, crl.as_deref())?
                        .with_version(tls_version);
                    tls.client_cert_after_request = client_cert_after_request;
                    MpServer::start_tls(config, tls, listen).await?
                }
                (None, None, None) => MpServer::start(config, listen).await?,
                _ => {
                    anyhow::bail!("native mode needs all of --tls-cert, --tls-key and --client-ca")
                }
            };
            println!("MP emulator listening on {}", server.url());
            tokio::signal::ctrl_c().await?;
            server.shutdown().await;
            Ok(())
        }
        MpCommand::Approve { db, smsid } => {
            let smsid = admin_smsid(&smsid)?;
            anyhow::ensure!(open_admin(&db)?.approve(&smsid)?, "no client {smsid}");
            println!("approved {smsid}");
            Ok(())
        }
        MpCommand::Reject { db, smsid } => {
            let smsid = admin_smsid(&smsid)?;
            anyhow::ensure!(open_admin(&db)?.reject(&smsid)?, "no client {smsid}");
            println!("rejected {smsid}");
            Ok(())
        }
        MpCommand::NextReply { db, smsid, reply } => {
            let smsid = smsid_key(&smsid);
            anyhow::ensure!(
                SiteDb::open(db)?.set_next_reply(&smsid, reply)?,
                "no client {smsid} in the site database"
            );
            println!(
                "the next registration reply to {smsid} is {}",
                reply.as_str()
            );
            Ok(())
        }
        MpCommand::Clients { db } => {
            let rows = open_admin(&db)?.clients()?;
            println!(
                "{:<41} {:<9} {:>5} {:<16} {:<28} {:<41} {:<20} THUMBPRINT (SHA-256)",
                "SMSID", "STATUS", "AGENT", "NETBIOS", "FQDN", "PROXY", "LAST SEEN"
            );
            for r in &rows {
                println!(
                    "{:<41} {:<9} {:>5} {:<16} {:<28} {:<41} {:<20} {}",
                    r.smsid,
                    r.status.as_str(),
                    r.agent_type,
                    r.netbios_name.as_deref().unwrap_or("-"),
                    r.fqdn.as_deref().unwrap_or("-"),
                    r.registered_by_proxy.as_deref().unwrap_or("-"),
                    r.last_seen,
                    &r.cert_sha256[..16.min(r.cert_sha256.len())]
                );
            }
            println!("{} client(s)", rows.len());
            Ok(())
        }
        MpCommand::ImportCert { db, file, create } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let der = read_cert_file(&bytes)?;
            let site = if create {
                SiteDb::open(db)?
            } else {
                open_admin(&db)?
            };
            let smsid = site.import_cert(&der)?;
            println!("{smsid}");
            Ok(())
        }
        MpCommand::Rejections { db } => {
            let rows = open_admin(&db)?.rejections()?;
            println!(
                "{:>5} {:<20} {:<20} {:>6} {:<39} {:<22} REASON",
                "ID", "FIRST", "LAST", "COUNT", "PEER", "ENDPOINT"
            );
            for r in &rows {
                println!(
                    "{:>5} {:<20} {:<20} {:>6} {:<39} {:<22} {}",
                    r.id,
                    r.at,
                    r.last_at,
                    r.count,
                    r.peer,
                    r.endpoint.as_deref().unwrap_or("-"),
                    r.reason
                );
            }
            let total: i64 = rows.iter().map(|r| r.count).sum();
            println!("{} rejection(s) in {} row(s)", total, rows.len());
            Ok(())
        }
        MpCommand::Messages {
            db,
            smsid,
            endpoint,
        } => {
            let rows = open_admin(&db)?.messages(smsid.as_deref())?;
            println!(
                "{:<20} {:<41} {:<16} {:<10} {:<38} {:>8}",
                "RECEIVED", "SMSID", "ENDPOINT", "KIND", "MESSAGE ID", "SIZE"
            );
            let mut n = 0;
            for r in rows.iter().filter(|r| {
                endpoint
                    .as_deref()
                    .is_none_or(|e| r.endpoint.eq_ignore_ascii_case(e))
            }) {
                n += 1;
                println!(
                    "{:<20} {:<41} {:<16} {:<10} {:<38} {:>8}{}",
                    r.received_at,
                    r.smsid,
                    r.endpoint,
                    r.kind,
                    r.message_id,
                    r.body.len(),
                    r.via_proxy
                        .as_deref()
                        .map(|p| format!("  via {p}"))
                        .unwrap_or_default()
                );
            }
            println!("{n} message(s)");
            Ok(())
        }
        MpCommand::Policy {
            command:
                PolicyCommand::Add {
                    db,
                    id,
                    version,
                    smsid,
                    all,
                    category,
                    flags,
                    body_file,
                    body,
                },
        } => {
            let body = match (body, body_file) {
                (Some(b), _) => b,
                (None, Some(f)) => read_text_file(
                    &std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
                )
                .with_context(|| format!("reading {}", f.display()))?,
                (None, None) => anyhow::bail!("give --body or --body-file"),
            };
            let target = match (&smsid, all) {
                (Some(s), false) => PolicyTarget::Client(s),
                (None, true) => PolicyTarget::All,
                _ => anyhow::bail!("give exactly one of --smsid and --all"),
            };
            let assignment = open_admin(&db)?.add_policy(&NewPolicy {
                policy_id: &id,
                version: &version,
                target,
                category: category.as_deref(),
                flags,
                body: &body,
            })?;
            println!(
                "assignment {assignment}: policy {id} version {version} for {}, body at \
                 http://<mp>{}?{id}.{version}",
                smsid
                    .as_deref()
                    .map(smsid_key)
                    .as_deref()
                    .unwrap_or("all clients"),
                super::policy::BODY_PATH
            );
            Ok(())
        }
        MpCommand::Policy {
            command:
                PolicyCommand::Tamper {
                    db,
                    id,
                    version,
                    body_file,
                },
        } => {
            let body = match &body_file {
                Some(f) => Some(
                    read_text_file(
                        &std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
                    )
                    .with_context(|| format!("reading {}", f.display()))?,
                ),
                None => None,
            };
            anyhow::ensure!(
                SiteDb::open(db)?.tamper_policy(&id, &version, body.as_deref())?,
                "no policy {id} version {version} in the site database"
            );
            match body_file {
                Some(f) => println!(
                    "policy {id} version {version}: {} is served in place of the published body",
                    f.display()
                ),
                None => println!("policy {id} version {version}: the published body is served"),
            }
            Ok(())
        }
        MpCommand::Policy {
            command: PolicyCommand::List { db },
        } => {
            let rows = open_admin(&db)?.policies()?;
            println!(
                "{:<38} {:<40} {:<8} {:<16} {:>5} {:<41} {:>7}",
                "ASSIGNMENT", "POLICY ID", "VERSION", "CATEGORY", "FLAGS", "TARGET", "BYTES"
            );
            for r in &rows {
                println!(
                    "{:<38} {:<40} {:<8} {:<16} {:>5} {:<41} {:>7}",
                    r.assignment_id,
                    r.policy_id,
                    r.version,
                    r.category,
                    r.flags,
                    r.target_smsid.as_deref().unwrap_or("all clients"),
                    r.body.len()
                );
            }
            println!("{} assignment(s)", rows.len());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_commands_refuse_a_missing_db_and_a_bare_guid() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo.db");
        let err = open_admin(&typo).err().unwrap().to_string();
        assert!(err.contains("--db") && err.contains("typo.db"), "{err}");
        assert!(!typo.exists());
        let err = admin_smsid("1af488d8-7b42-4842-a4bd-b3a2842bbc42")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing the \"GUID:\" prefix"), "{err}");
        assert!(err.contains("GUID:1AF488D8-7B42"), "{err}");
        assert_eq!(
            admin_smsid("guid:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap(),
            "GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42"
        );
    }

    #[test]
    fn pem_and_der() {
        assert_eq!(
            read_cert_file(&[0x30, 0x82, 0x01]).unwrap(),
            vec![0x30, 0x82, 0x01]
        );
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\nAQID\n-----END CERTIFICATE-----\n";
        assert_eq!(
            read_cert_file(pem.as_bytes()).unwrap(),
            vec![0x30, 0x82, 0x01, 0x01, 0x02, 0x03]
        );
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("Y").is_err());
        assert!(base64_decode("Y!==").is_err());
        assert!(read_cert_file(b"-----BEGIN CERTIFICATE-----\nMIIB").is_err());
    }

    #[test]
    fn text_files() {
        assert_eq!(read_text_file(b"<a/>").unwrap(), "<a/>");
        assert_eq!(read_text_file(b"\xEF\xBB\xBF<a/>").unwrap(), "<a/>");
        assert_eq!(read_text_file(b"\xFF\xFE<\0a\0/\0>\0").unwrap(), "<a/>");
        assert_eq!(read_text_file(b"\xFE\xFF\0<\0a\0/\0>").unwrap(), "<a/>");
        assert!(read_text_file(b"\xFF\xFE<").is_err());
        assert!(read_text_file(b"\xC3").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            mp: MpCommand,
        }
        let c = Cli::try_parse_from([
            "x",
            "serve",
            "--db",
            "s.db",
            "--approval",
            "pending",
            "--max-body-bytes",
            "10",
        ])
        .unwrap();
        match c.mp {
            MpCommand::Serve {
                approval,
                max_body_bytes,
                listen,
                ..
            } => {
                assert_eq!(approval, Approval::Pending);
                assert_eq!(max_body_bytes, 10);
                assert_eq!(listen.port(), 8080);
            }
            _ => panic!("not serve"),
        }
        assert!(Cli::try_parse_from(["x", "approve", "--db", "s.db"]).is_err());
        let add = |extra: &[&str]| {
            let mut args = vec![
                "x",
                "policy",
                "add",
                "--db",
                "s.db",
                "--id",
                "P",
                "--version",
                "1",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        assert!(add(&["--all", "--body", "<a/>"]).is_ok());
        assert!(add(&["--smsid", "GUID:x", "--body-file", "f"]).is_ok());
        assert!(add(&["--body", "<a/>"]).is_err(), "no target");
        assert!(add(&["--all", "--smsid", "GUID:x", "--body", "<a/>"]).is_err());
        assert!(add(&["--all"]).is_err(), "no body");
        assert!(add(&["--all", "--body", "<a/>", "--body-file", "f"]).is_err());
        assert!(
            Cli::try_parse_from(["x", "messages", "--db", "s.db", "--smsid", "GUID:x"]).is_ok()
        );
        assert!(
            Cli::try_parse_from(["x", "serve", "--db", "s.db", "--approval", "maybe"]).is_err()
        );
        let serve = |extra: &[&str]| {
            let mut args = vec!["x", "serve", "--db", "s.db"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let native = ["--tls-cert", "c", "--tls-key", "k", "--client-ca", "ca"];
        assert!(serve(&native).is_ok());
        assert!(serve(&[&native[..], &["--crl", "crl.pem"]].concat()).is_ok());
        assert!(serve(&native[..4]).is_err(), "no client CA");
        assert!(serve(&["--crl", "crl.pem"]).is_err(), "CRL without TLS");
        let late = ["--tls-version", "1.2", "--client-cert-after-request"];
        assert!(serve(&[&native[..], &late[..]].concat()).is_ok());
        assert!(serve(&[&native[..], &["--tls-version", "1.1"]].concat()).is_err());
        assert!(serve(&late[2..]).is_err(), "after-request without TLS");
    }
}
