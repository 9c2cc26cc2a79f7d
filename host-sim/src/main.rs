//! `mpagent-sim`: command-line entry point of the host simulator.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mpagent_sim::{client, demo, mp, pki};

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
    let default_level = if matches!(cli.command, Command::Demo) {
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
                    S::Rejected => anyhow::bail!("the site rejected the registration"),
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
