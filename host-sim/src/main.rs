//! `mpagent-sim`: command-line entry point of the host simulator.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mpagent_sim::{client, demo, mp};

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
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register with the MP (creating the identity on first run) and print the SMSID.
    Register {
        /// MP location, e.g. http://127.0.0.1:8080
        #[arg(long)]
        mp: String,
        /// Site code (three letters or digits).
        #[arg(long)]
        site_code: String,
        /// Directory holding the key, certificate and registration state.
        #[arg(long)]
        state: PathBuf,
        /// NetBIOS name of the appliance (also its certificate CN).
        #[arg(long, default_value = "MPAGENT-SIM")]
        name: String,
        /// Fully qualified name (default NAME.local).
        #[arg(long)]
        fqdn: Option<String>,
        /// Keep confirming until an administrator approves, instead of returning when pending.
        #[arg(long)]
        wait_approval: bool,
        /// Consecutive failed attempts before giving up.
        #[arg(long, default_value_t = 4)]
        max_failures: u32,
    },
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
        Command::Client { command } => match command {
            ClientCommand::Register {
                mp,
                site_code,
                state,
                name,
                fqdn,
                wait_approval,
                max_failures,
            } => {
                let opts = client::ClientOptions {
                    mp_url: mp,
                    site_code,
                    state_dir: state,
                    name,
                    fqdn,
                    wait_for_approval: wait_approval,
                    max_failures,
                };
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
        },
    }
}
