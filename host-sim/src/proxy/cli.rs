//! `mpagent-sim proxy …` and `mpagent-sim proxy-client`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::client::{describe, run_device, DeviceOptions};
use super::protocol::Frame;
use super::{export_cert_with, ProxyOptions, DEFAULT_NAME};
use crate::client::state::KeyKind;
use crate::client::PkiFiles;
use mpagent_core::config::{SignatureHash, SiteGeneration, SiteMode};

/// `mpagent-sim proxy …`.
#[derive(Subcommand, Debug)]
pub enum ProxyCommand {
    /// Write the proxy's certificate (DER at --out, PEM beside it), creating the proxy's key and
    /// self-signed certificate on first run. The administrator imports it with `mp import-cert`.
    ExportCert {
        /// The proxy's state directory.
        #[arg(long)]
        state: PathBuf,
        /// Where to write the DER certificate (e.g. proxy.cer; proxy.pem goes beside it).
        #[arg(long)]
        out: PathBuf,
        /// The proxy's NetBIOS name (its certificate CN) for a new identity.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Key of a new identity: rsa2048 (what real sites take, the default) or p256.
        #[arg(long, value_enum, default_value_t = KeyKind::Rsa2048)]
        key: KeyKind,
    },
    /// Register the proxy (AgentType 4) and serve devices over the compact protocol.
    Serve {
        /// MP location, e.g. http://127.0.0.1:8080 (mixed mode).
        #[arg(long)]
        mp: String,
        /// Site code.
        #[arg(long)]
        site_code: String,
        /// Where devices connect, e.g. 127.0.0.1:7070.
        #[arg(long)]
        listen: String,
        /// The proxy's state directory (identity, registration, device mapping).
        #[arg(long)]
        state: PathBuf,
        /// The proxy's NetBIOS name (its certificate CN) for a new identity.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Threads serving devices (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        #[command(flatten)]
        site: SiteArgs,
    },
    /// The ISV proxy flow with no setup: MP, proxy, import, three devices, a refused second proxy.
    Demo,
    /// The devices this proxy registered and their SMSIDs.
    Clients {
        /// The proxy's state directory.
        #[arg(long)]
        state: PathBuf,
    },
}

/// How `proxy serve` signs and reaches the site (the same choices as `client`).
#[derive(clap::Args, Debug)]
pub struct SiteArgs {
    /// Mixed mode: key of a new identity, rsa2048 (what real sites take, the default) or p256;
    /// the proxy's devices get keys of the same kind.
    #[arg(long, value_enum, default_value_t = KeyKind::Rsa2048)]
    key: KeyKind,
    /// The site's generation, 2007 or current: how it numbers registration status and takes
    /// confirmations, for the proxy and its devices, and the default --hash.
    #[arg(long, default_value_t = SiteGeneration::Current)]
    site_generation: SiteGeneration,
    /// sha256 (with HashAlgorithm) or sha1 (no HashAlgorithm, the ConfigMgr 2007 form; RSA keys
    /// only). Default: sha1 for an RSA key on a 2007 site, else sha256.
    #[arg(long, value_enum)]
    hash: Option<HashArg>,
    /// Native mode (HTTPS; give all three of --cert, --key-file, --ca): the proxy's CA-issued
    /// certificate (`pki issue --kind proxy`).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Native mode: its private key (DER or PEM; PKCS#8, or SEC1 for P-256).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Native mode: the CA certificate(s) the MP's certificate must chain to.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Native mode: check the MP's certificate chain against this CRL (DER or PEM; each of its
    /// CAs needs a current one here).
    #[arg(long, requires = "ca")]
    crl: Option<PathBuf>,
}

/// `--hash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HashArg {
    /// SHA-256, HashAlgorithm sent.
    Sha256,
    /// SHA-1, no HashAlgorithm (RSA only).
    Sha1,
}

impl HashArg {
    /// The core's setting.
    pub fn hash(self) -> SignatureHash {
        match self {
            Self::Sha256 => SignatureHash::Sha256,
            Self::Sha1 => SignatureHash::Sha1,
        }
    }
}

impl SiteArgs {
    /// Apply to `opts` (native mode when the certificate files are given).
    fn apply(self, opts: &mut ProxyOptions) -> Result<()> {
        opts.key = self.key;
        opts.site_generation = self.site_generation;
        opts.signature_hash = self.hash.map(HashArg::hash);
        match (self.cert, self.key_file, self.ca) {
            (None, None, None) => {}
            (Some(cert), Some(key), Some(ca)) => {
                opts.mode = SiteMode::Native;
                opts.pki = Some(PkiFiles {
                    crl: self.crl,
                    ..PkiFiles::new(cert, key, ca)
                });
            }
            _ => anyhow::bail!("native mode needs all three of --cert, --key-file and --ca"),
        }
        Ok(())
    }
}

/// Run a `proxy` subcommand.
pub async fn run(cmd: ProxyCommand) -> Result<()> {
    match cmd {
        ProxyCommand::ExportCert {
            state,
            out,
            name,
            key,
        } => {
            let e = export_cert_with(&state, &out, &name, key)?;
            if e.created {
                println!("created the proxy identity in {}", state.display());
            }
            println!("wrote {} and {}", e.der.display(), e.pem.display());
            println!(
                "import it: mpagent-sim mp import-cert --db SITE.db {}",
                e.der.display()
            );
            Ok(())
        }
        ProxyCommand::Serve {
            mp,
            site_code,
            listen,
            state,
            name,
            workers,
            site,
        } => {
            let mut opts = ProxyOptions::new(&mp, &site_code, state);
            opts.name = name;
            if let Some(w) = workers {
                anyhow::ensure!(w > 0, "--workers must be at least 1");
                opts.workers = w;
            }
            site.apply(&mut opts)?;
            let listen = super::parse_listen(&listen)?;
            let handle = super::start(opts, listen).await?;
            println!("proxy registered as {}", handle.smsid());
            println!("serving devices on {}", handle.local_addr());
            tokio::signal::ctrl_c().await?;
            tokio::task::spawn_blocking(move || handle.shutdown()).await?;
            Ok(())
        }
        ProxyCommand::Demo => super::demo::run().await,
        ProxyCommand::Clients { state } => {
            use mpagent_core::agent::registration::RegistrationState as S;
            // A mistyped directory is an error, not a proxy with no devices.
            anyhow::ensure!(
                state.join(super::registry::REGISTRY_FILE).is_file(),
                "--state {}: no proxy state there (no {}; `proxy serve --state` makes it)",
                state.display(),
                super::registry::REGISTRY_FILE
            );
            println!("DEVICE\tSTATE");
            for (id, st) in super::client_mapping(&state)? {
                let st = match st {
                    S::Registered(s) => format!("registered {s}"),
                    S::Pending(s) => format!("pending {s}"),
                    S::Rejected(_) => "rejected".into(),
                    S::Unregistered => "unregistered".into(),
                };
                println!("{id}\t{st}");
            }
            Ok(())
        }
    }
}

/// `mpagent-sim proxy-client`: prints each answer; fails if the proxy answered an error.
pub async fn run_client(opts: DeviceOptions) -> Result<()> {
    let answers = run_device(&opts, &mut |what, f| println!("{what}: {}", describe(f))).await?;
    if let Some((what, Frame::Error { code, text })) = answers.last() {
        anyhow::bail!("the proxy refused {what}: error {code}: {text}");
    }
    Ok(())
}
