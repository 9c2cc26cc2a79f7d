//! `mpagent-sim`: command-line entry point of the host simulator.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mpagent_core::config::SignatureHash;
use mpagent_sim::proxy::cli::HashArg;
use mpagent_sim::{client, demo, fleet, mp, pki};

#[derive(Parser)]
#[command(
    name = "mpagent-sim",
    version,
    about = "mpagent host simulator: appliance client, MP emulator, demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: an MP emulator and a simulated appliance registering with it, no setup.
    Demo,
    /// The management point emulator.
    Mp {
        #[command(subcommand)]
        command: mp::MpCommand,
    },
    /// A simulated appliance running the mpagent core.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// A test CA for native mode: make it, issue device / proxy / MP certificates, revoke.
    Pki {
        #[command(subcommand)]
        command: pki::PkiCommand,
    },
    /// Many simulated appliances (in-memory identities) registering and sending heartbeats;
    /// `--bound K` measures the MP's registrations/s against bare signature verification.
    Fleet(FleetArgs),
    /// The ISV proxy: export its certificate, serve constrained devices, list them.
    Proxy {
        #[command(subcommand)]
        command: mpagent_sim::proxy::cli::ProxyCommand,
    },
    /// A simulated constrained device speaking the proxy's compact protocol.
    ProxyClient(ProxyClientArgs),
}

/// `mpagent-sim proxy-client`.
#[derive(clap::Args)]
struct ProxyClientArgs {
    /// The proxy, e.g. 127.0.0.1:7070.
    #[arg(long)]
    proxy: String,
    /// The device's stable ID ([A-Za-z0-9._-], at most 64).
    #[arg(long)]
    id: String,
    /// The device's name (letters, digits, '-'; at most 15).
    #[arg(long)]
    name: String,
    /// Send a heartbeat (discovery).
    #[arg(long)]
    heartbeat: bool,
    /// Send an inventory of N synthetic items.
    #[arg(long, value_name = "N", default_value_t = 0)]
    inventory: usize,
    /// Send a status message.
    #[arg(long)]
    status: bool,
    /// Send a state message: TOPIC=STATE (e.g. fw-update=2).
    #[arg(long, value_name = "TOPIC=STATE")]
    state: Option<String>,
    /// Ask for the device's policy assignments.
    #[arg(long)]
    policy: bool,
}

/// `mpagent-sim fleet`.
#[derive(clap::Args)]
struct FleetArgs {
    /// MP location (http://host:port, auto-approving); omitted: an in-process MP on loopback.
    #[arg(long)]
    mp: Option<String>,
    /// Site code the appliances use.
    #[arg(long, default_value = fleet::DEFAULT_SITE_CODE)]
    site_code: String,
    /// Appliances to simulate.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Appliances in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Stop starting new appliances after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
    /// Heartbeat DDRs each appliance sends after registering.
    #[arg(long, default_value_t = 1)]
    messages_per_client: usize,
    /// Client threads (each a current-thread runtime with a LocalSet).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the summary as JSON on stdout (no progress bar).
    #[arg(long)]
    json: bool,
    /// Instead of a fleet: pre-build K registrations, time (a) verifying their signatures on
    /// --verify-threads threads and (b) registering them through an in-process MP.
    #[arg(long, value_name = "K")]
    bound: Option<usize>,
    /// Threads of the verify-only loop of --bound.
    #[arg(long, default_value_t = 2)]
    verify_threads: usize,
    /// How --bound replays its requests: a connection per request (as the core does) or
    /// persistent keep-alive connections.
    #[arg(long, value_enum, default_value = "per-request")]
    connections: fleet::Connections,
    /// A measurement of --bound: (b)'s MP leaves out the database write (no-store) or everything
    /// but HTTP and TCP (transport), to show what each part costs. Not an MP.
    #[arg(long, value_enum, requires = "bound")]
    floor: Option<mp::Floor>,
    /// Appliances talk MPX to the ISV proxy at ADDR (IP:port) instead of the MP.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["mp", "via_proxy", "bound"])]
    proxy: Option<std::net::SocketAddr>,
    /// Appliances talk MPX to an in-process ISV proxy, imported into the in-process MP.
    #[arg(long, conflicts_with_all = ["mp", "bound"])]
    via_proxy: bool,
    /// The appliances' key (with --via-proxy: the proxy's, which its device keys follow).
    #[arg(long, value_enum, default_value_t = client::KeyKind::P256, conflicts_with_all = ["proxy", "bound"])]
    key: client::KeyKind,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register with the MP (creating the identity on first run) and print the SMSID.
    Register {
        #[command(flatten)]
        client: ClientArgs,
        /// Keep confirming until an administrator approves, instead of returning when pending.
        #[arg(long)]
        wait_approval: bool,
    },
    /// The long-running appliance: register if needed, heartbeat and inventory on schedules,
    /// poll policy, deliver the store-and-forward queue.
    Run {
        #[command(flatten)]
        client: ClientArgs,
        /// One cycle (heartbeat, inventory, status, policy, queue), then exit.
        #[arg(long)]
        once: bool,
        /// Seconds between heartbeat DDRs.
        #[arg(long, default_value_t = 60)]
        heartbeat_secs: u64,
        /// Seconds between hardware inventories.
        #[arg(long, default_value_t = 600)]
        inventory_secs: u64,
        /// Seconds between policy polls.
        #[arg(long, default_value_t = 300)]
        policy_secs: u64,
        /// Items in the synthetic hardware inventory (about 330 bytes each on the wire).
        #[arg(long, default_value_t = 20)]
        inventory_items: usize,
    },
}

/// What `client register` and `client run` share.
#[derive(clap::Args)]
struct ClientArgs {
    /// MP location, e.g. http://127.0.0.1:8080 (mixed mode) or https://mp.corp:443 (native).
    #[arg(long)]
    mp: String,
    /// Site code (three letters or digits).
    #[arg(long)]
    site_code: String,
    /// Directory holding the key, certificate, registration state and queue.
    #[arg(long)]
    state: PathBuf,
    /// NetBIOS name of the appliance (also its certificate CN).
    #[arg(long, default_value = "MPAGENT-SIM")]
    name: String,
    /// Fully qualified name (default NAME.local).
    #[arg(long)]
    fqdn: Option<String>,
    /// Consecutive failed attempts before giving up.
    #[arg(long, default_value_t = 4)]
    max_failures: u32,
    /// Key of a new identity: p256 (our profile) or rsa2048 (what real sites take). An
    /// existing identity keeps its key.
    #[arg(long, value_enum, default_value_t = client::KeyKind::P256)]
    key: client::KeyKind,
    /// sha256 (with HashAlgorithm, current sites) or sha1 (no HashAlgorithm, the ConfigMgr 2007
    /// form; RSA keys only, refused at start-up for a P-256 key).
    #[arg(long, value_enum, default_value_t = HashArg::Sha256)]
    hash: HashArg,
    /// Site mode: mixed (HTTP, self-signed identity made here) or native (HTTPS with the
    /// CA-issued --cert/--key-file, MP verified against --ca).
    #[arg(long, value_enum, default_value_t = Mode::Mixed)]
    mode: Mode,
    /// Native mode: the CA-issued device certificate (DER or PEM; PEM may add the chain).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Native mode: its private key (DER or PEM; PKCS#8, or SEC1 for P-256).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Native mode: the CA certificate(s) the MP's certificate must chain to (DER or PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl ClientArgs {
    fn options(self, wait_for_approval: bool) -> Result<client::ClientOptions> {
        let pki = match (self.cert, self.key_file, self.ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(client::PkiFiles { cert, key, ca }),
            _ => anyhow::bail!("native mode needs all three of --cert, --key-file and --ca"),
        };
        Ok(client::ClientOptions {
            mp_url: self.mp,
            site_code: self.site_code,
            state_dir: self.state,
            name: self.name,
            fqdn: self.fqdn,
            wait_for_approval,
            max_failures: self.max_failures,
            key: self.key,
            signature_hash: match self.hash {
                HashArg::Sha256 => SignatureHash::Sha256,
                HashArg::Sha1 => SignatureHash::Sha1,
            },
            mode: match self.mode {
                Mode::Mixed => mpagent_core::config::SiteMode::Mixed,
                Mode::Native => mpagent_core::config::SiteMode::Native,
            },
            pki,
        })
    }
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Mixed,
    Native,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo | Command::Fleet(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo => demo::run().await,
        Command::Mp { command } => mp::run(command).await,
        Command::Pki { command } => pki::run(command),
        Command::Fleet(args) => run_fleet(args).await,
        Command::Proxy { command } => mpagent_sim::proxy::cli::run(command).await,
        Command::ProxyClient(a) => {
            let state = match a.state {
                None => None,
                Some(s) => {
                    let (topic, state) = s
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--state must be TOPIC=STATE"))?;
                    Some((topic.to_string(), state.parse()?))
                }
            };
            mpagent_sim::proxy::cli::run_client(mpagent_sim::proxy::client::DeviceOptions {
                proxy: mpagent_sim::proxy::parse_listen(&a.proxy)?,
                id: a.id,
                name: a.name,
                heartbeat: a.heartbeat,
                inventory: a.inventory,
                status: a.status,
                state,
                policy: a.policy,
            })
            .await
        }
        Command::Client { command } => match command {
            ClientCommand::Register {
                client: args,
                wait_approval,
            } => {
                let opts = args.options(wait_approval)?;
                let outcome = client::register(&opts, &mut demo::print_progress).await?;
                use mpagent_core::agent::registration::RegistrationState as S;
                match outcome.state {
                    S::Registered(id) => println!("registered {id}"),
                    S::Pending(id) => println!("pending {id}"),
                    S::Rejected(_) => anyhow::bail!("the site rejected the registration"),
                    S::Unregistered => anyhow::bail!("not registered"),
                }
                Ok(())
            }
            ClientCommand::Run {
                client: args,
                once,
                heartbeat_secs,
                inventory_secs,
                policy_secs,
                inventory_items,
            } => {
                let opts = args.options(false)?;
                let schedule = client::run::Schedule {
                    heartbeat: std::time::Duration::from_secs(heartbeat_secs),
                    inventory: std::time::Duration::from_secs(inventory_secs),
                    policy: std::time::Duration::from_secs(policy_secs),
                    inventory_items,
                };
                client::run::run(&opts, schedule, once, &mut demo::print_run_event).await
            }
        },
    }
}

async fn run_fleet(args: FleetArgs) -> Result<()> {
    if let Some(k) = args.bound {
        let summary = fleet::run_bound(
            k,
            args.concurrency,
            args.verify_threads,
            args.connections,
            args.floor,
        )
        .await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            println!("{summary}");
        }
        return Ok(());
    }
    let opts = fleet::FleetOptions {
        mp: args.mp,
        site_code: args.site_code,
        clients: args.clients,
        concurrency: args.concurrency,
        duration: args.duration.map(std::time::Duration::from_secs),
        messages_per_client: args.messages_per_client,
        threads: args.threads,
        progress: !args.json,
        proxy: match (args.proxy, args.via_proxy) {
            (Some(addr), _) => Some(fleet::ProxyTarget::At(addr)),
            (None, true) => Some(fleet::ProxyTarget::InProcess),
            (None, false) => None,
        },
        key: args.key,
    };
    let summary = fleet::run(opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_options(extra: &[&str]) -> Result<client::ClientOptions> {
        let base = [
            "mpagent-sim",
            "client",
            "register",
            "--mp",
            "http://127.0.0.1:8080",
            "--site-code",
            "PS1",
            "--state",
            "st",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra))?;
        let Command::Client {
            command: ClientCommand::Register { client, .. },
        } = cli.command
        else {
            anyhow::bail!("not client register");
        };
        client.options(false)
    }

    #[test]
    fn client_hash_defaults_to_sha256_and_takes_sha1() {
        let o = client_options(&[]).unwrap();
        assert_eq!(o.signature_hash, SignatureHash::Sha256);
        assert_eq!(o.key, client::KeyKind::P256);
        let o = client_options(&["--key", "rsa2048", "--hash", "sha1"]).unwrap();
        assert_eq!(o.signature_hash, SignatureHash::Sha1);
        assert_eq!(o.key, client::KeyKind::Rsa2048);
        assert!(client_options(&["--hash", "md5"]).is_err());
    }
}
