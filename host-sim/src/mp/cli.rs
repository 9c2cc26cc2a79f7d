//! `mpagent-sim mp …`: serve the emulator and administer its site database (approve, reject,
//! list clients and rejections, import an ISV proxy certificate).

use super::db::{smsid_key, SiteDb};
use super::{Approval, Limits, MpConfig, MpServer};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The `mp` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MpCommand {
    /// Run the MP emulator until Ctrl-C.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Site database (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Three letters or digits.
        #[arg(long, default_value = "P01")]
        site_code: String,
        #[arg(long, value_enum, default_value_t = Approval::Auto)]
        approval: Approval,
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
        /// Connections served at once.
        #[arg(long, default_value_t = Limits::default().max_connections)]
        max_connections: usize,
    },
    /// Approve a pending client.
    Approve {
        #[arg(long)]
        db: PathBuf,
        smsid: String,
    },
    /// Block a client: its registrations and confirmations get Status 3.
    Reject {
        #[arg(long)]
        db: PathBuf,
        smsid: String,
    },
    /// List registered clients.
    Clients {
        #[arg(long)]
        db: PathBuf,
    },
    /// Import an ISV proxy certificate (DER or PEM); prints the SMSID the site assigns to it.
    ImportCert {
        #[arg(long)]
        db: PathBuf,
        file: PathBuf,
    },
    /// List refused requests.
    Rejections {
        #[arg(long)]
        db: PathBuf,
    },
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
            mp_host,
            max_head_bytes,
            max_body_bytes,
            read_timeout_secs,
            max_connections,
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
                },
                mp_host,
            };
            let server = MpServer::start(config, listen).await?;
            println!("MP emulator listening on http://{}", server.local_addr());
            tokio::signal::ctrl_c().await?;
            server.shutdown().await;
            Ok(())
        }
        MpCommand::Approve { db, smsid } => {
            let smsid = smsid_key(&smsid);
            anyhow::ensure!(SiteDb::open(db)?.approve(&smsid)?, "no client {smsid}");
            println!("approved {smsid}");
            Ok(())
        }
        MpCommand::Reject { db, smsid } => {
            let smsid = smsid_key(&smsid);
            anyhow::ensure!(SiteDb::open(db)?.reject(&smsid)?, "no client {smsid}");
            println!("rejected {smsid}");
            Ok(())
        }
        MpCommand::Clients { db } => {
            let rows = SiteDb::open(db)?.clients()?;
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
        MpCommand::ImportCert { db, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let der = read_cert_file(&bytes)?;
            let smsid = SiteDb::open(db)?.import_cert(&der)?;
            println!("{smsid}");
            Ok(())
        }
        MpCommand::Rejections { db } => {
            let rows = SiteDb::open(db)?.rejections()?;
            for r in &rows {
                println!(
                    "{:>5} {} {:<21} {:<22} {}",
                    r.id,
                    r.at,
                    r.peer,
                    r.endpoint.as_deref().unwrap_or("-"),
                    r.reason
                );
            }
            println!("{} rejection(s)", rows.len());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            Cli::try_parse_from(["x", "serve", "--db", "s.db", "--approval", "maybe"]).is_err()
        );
    }
}
