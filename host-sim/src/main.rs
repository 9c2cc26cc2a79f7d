//! `mpagent-sim`: command-line entry point of the host simulator, and what its exit codes mean.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mpagent_core::config::SiteGeneration;
use mpagent_sim::proxy::cli::HashArg;
use mpagent_sim::{client, demo, fleet, mp, pki};

#[derive(Parser)]
#[command(
    name = "mpagent-sim",
    version,
    about = "mpagent host simulator: appliance client, MP emulator, demo",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every command's exit codes (also in README.md).
const EXIT_CODES: &str = "Exit codes (every command):
  0    done (registered, delivered, listed, served until stopped)
  1    failed or not done (MP unreachable, refused, messages still queued, a fleet client failed)
  2    usage or configuration error (the message names the option, the rule and the value)
  3    pending approval by the site's administrator
  4    rejected by the site
  5    state directory in use by another process (the message names its PID)
  141  output pipe closed (e.g. `| head`); the output written so far is complete lines";

/// Exit code: done.
const EXIT_DONE: u8 = 0;
/// Exit code: failed or not done.
const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
const EXIT_USAGE: u8 = 2;
/// Exit code: pending approval.
const EXIT_PENDING: u8 = 3;
/// Exit code: rejected by the site.
const EXIT_REJECTED: u8 = 4;
/// Exit code: state directory in use.
const EXIT_IN_USE: u8 = 5;

/// A command finished without an error but did not do its job (pending, rejected, a fleet
/// with failures): the exit code says which, the message says why.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct NotDone {
    code: u8,
    message: String,
}

/// The exit code of an error: what kind of failure it is, from the first typed cause found.
fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(n) = cause.downcast_ref::<NotDone>() {
            return n.code;
        }
        if let Some(mpagent_sim::state_lock::StateLockError::InUse { .. }) = cause.downcast_ref() {
            return EXIT_IN_USE;
        }
        if cause.is::<client::session::OptionError>()
            || cause.is::<client::NativeConfigError>()
            || cause.is::<client::SignatureHashError>()
            || cause.is::<client::site_check::SiteMismatch>()
        {
            return EXIT_USAGE;
        }
    }
    EXIT_FAILED
}

/// Whether colour goes to stderr: only a terminal, and never with `NO_COLOR` set
/// (https://no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
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
    /// Print the summary as JSON on stdout (progress still goes to stderr; `--quiet` hides it).
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
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
    floor: Option<fleet::Floor>,
    /// Appliances talk MPX to the ISV proxy at ADDR (IP:port) instead of the MP.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["mp", "via_proxy", "bound"])]
    proxy: Option<std::net::SocketAddr>,
    /// Appliances talk MPX to an in-process ISV proxy, imported into the in-process MP.
    #[arg(long, conflicts_with_all = ["mp", "bound"])]
    via_proxy: bool,
    /// The appliances' key (with --via-proxy: the proxy's, which its device keys follow).
    #[arg(long, value_enum, default_value_t = client::KeyKind::P256, conflicts_with_all = ["proxy", "bound"])]
    key: client::KeyKind,
    /// The site's generation, 2007 or current: how the appliances (or the in-process proxy)
    /// read registration status and confirm, and their hash (sha1 for RSA keys on 2007 sites).
    #[arg(long, default_value_t = SiteGeneration::Current, conflicts_with_all = ["proxy", "bound"])]
    site_generation: SiteGeneration,
}

/// Largest `--inventory-items`: a report is queued whole, and a larger one does not fit the
/// queue file (QueueFull on an empty queue from about 500 items).
const MAX_INVENTORY_ITEMS: usize = 400;

fn inventory_items_in_range(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if n > MAX_INVENTORY_ITEMS {
        return Err(format!(
            "{n} items: at most {MAX_INVENTORY_ITEMS} (one inventory must fit the queue file)"
        ));
    }
    Ok(n)
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
        /// One pass (register or re-confirm, heartbeat, inventory, status, policy, deliver the
        /// queue), then exit: 0 everything delivered, 1 not done (MP unreachable or messages
        /// still queued), 3 pending approval, 4 rejected by the site.
        #[arg(long)]
        once: bool,
        /// Seconds between heartbeat DDRs (0: none).
        #[arg(long, default_value_t = mpagent_core::profile::HEARTBEAT_SECS)]
        heartbeat_secs: u64,
        /// Seconds between full hardware inventories (0: none).
        #[arg(long, default_value_t = mpagent_core::profile::INVENTORY_SECS)]
        inventory_secs: u64,
        /// Seconds between policy requests (0: none).
        #[arg(long, default_value_t = mpagent_core::profile::POLICY_SECS)]
        policy_secs: u64,
        /// Seconds a rejection by the site stands before the appliance asks again.
        #[arg(long, default_value_t = mpagent_core::profile::REJECTION_RECHECK_SECS,
              value_parser = clap::value_parser!(u64).range(1..))]
        rejection_recheck_secs: u64,
        /// Ask the site at once, whatever a rejection or a backoff says (after an administrator
        /// approved the device).
        #[arg(long)]
        retry_now: bool,
        /// Items in the synthetic hardware inventory (about 330 bytes each on the wire), at most
        /// 400: one inventory must fit the 256 KiB queue beside the other reports.
        #[arg(long, default_value_t = 20, value_parser = inventory_items_in_range)]
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
    /// Key of a new identity: rsa2048 (what real sites take, the default) or p256 (the
    /// emulator and secure elements take it too). An existing identity keeps its key.
    #[arg(long, value_enum, default_value_t = client::KeyKind::Rsa2048)]
    key: client::KeyKind,
    /// The site's generation, 2007 or current: how it numbers registration status, names report
    /// attachments and takes confirmations, and the default --hash.
    #[arg(long, default_value_t = SiteGeneration::Current)]
    site_generation: SiteGeneration,
    /// sha256 (with HashAlgorithm) or sha1 (no HashAlgorithm, the ConfigMgr 2007 form; RSA keys
    /// only, refused at start-up for a P-256 key). Default: sha1 for an RSA key on a 2007 site,
    /// else sha256.
    #[arg(long, value_enum)]
    hash: Option<HashArg>,
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
    /// Native mode: check the MP's certificate chain against this CRL (DER or PEM; each of its
    /// CAs needs a current one here).
    #[arg(long, requires = "ca")]
    crl: Option<PathBuf>,
}

impl ClientArgs {
    fn options(self, wait_for_approval: bool) -> Result<client::ClientOptions> {
        let pki = match (self.cert, self.key_file, self.ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(client::PkiFiles {
                crl: self.crl,
                ..client::PkiFiles::new(cert, key, ca)
            }),
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
            site_generation: self.site_generation,
            signature_hash: self.hash.map(HashArg::hash),
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

fn main() -> std::process::ExitCode {
    // A closed stdout (`| head`) ends the process quietly as other command-line tools do,
    // instead of a panic in `println!`. Sockets are unaffected: Rust writes to them with
    // MSG_NOSIGNAL.
    // SAFETY: called before any thread exists; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return std::process::ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::from(EXIT_DONE),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

async fn run() -> Result<()> {
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
        .with_ansi(colour_on_stderr())
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
                    let (topic, state) = s.split_once('=').ok_or_else(|| {
                        anyhow::anyhow!("--state `{s}`: must be TOPIC=STATE (e.g. fw-update=2)")
                    })?;
                    let n = state.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "--state `{s}`: STATE must be a whole number (e.g. fw-update=2)"
                        )
                    })?;
                    Some((topic.to_string(), n))
                }
            };
            mpagent_sim::proxy::cli::run_client(mpagent_sim::proxy::client::DeviceOptions {
                proxy: mpagent_sim::proxy::parse_addr("--proxy", &a.proxy)?,
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
                    S::Pending(id) => {
                        println!("pending {id}");
                        return Err(NotDone {
                            code: EXIT_PENDING,
                            message: format!(
                                "{id} waits for approval by the site's administrator \
                                 (`mp approve --db DB {id}` on the emulator); run again to confirm"
                            ),
                        }
                        .into());
                    }
                    S::Rejected(_) => {
                        return Err(NotDone {
                            code: EXIT_REJECTED,
                            message: "the site rejected the registration".into(),
                        }
                        .into())
                    }
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
                rejection_recheck_secs,
                retry_now,
                inventory_items,
            } => {
                let opts = args.options(false)?;
                let schedule = mpagent_core::agent::lifecycle::Schedule {
                    heartbeat_secs,
                    inventory_secs,
                    policy_secs,
                    rejection_recheck_secs,
                };
                let report = client::run::run(
                    &opts,
                    schedule,
                    inventory_items,
                    once,
                    retry_now,
                    &mut demo::print_run_event,
                )
                .await?;
                println!("{report}");
                let code = if report.rejected_until.is_some() {
                    4
                } else if report.pending {
                    3
                } else if report.done() {
                    0
                } else {
                    1
                };
                std::process::exit(code)
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
        progress: !args.quiet,
        proxy: match (args.proxy, args.via_proxy) {
            (Some(addr), _) => Some(fleet::ProxyTarget::At(addr)),
            (None, true) => Some(fleet::ProxyTarget::InProcess),
            (None, false) => None,
        },
        key: args.key,
        site_generation: args.site_generation,
    };
    let summary = fleet::run(opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{summary}");
    }
    if summary.errors_total > 0 || summary.registered < summary.clients_started {
        return Err(NotDone {
            code: EXIT_FAILED,
            message: format!(
                "{} of {} clients registered, {} errors",
                summary.registered, summary.clients_started, summary.errors_total
            ),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpagent_core::config::SignatureHash;

    /// Every option and argument of every command says what it is in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "mpagent-sim", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

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
    fn exit_codes_follow_the_first_typed_cause() {
        let usage = anyhow::Error::from(client::session::OptionError {
            option: "--site-code",
            rule: "three",
            value: "PS12".into(),
        })
        .context("opening the session");
        assert_eq!(exit_code(&usage), EXIT_USAGE);
        let busy = anyhow::Error::from(mpagent_sim::state_lock::StateLockError::InUse {
            dir: "st".into(),
            pid: Some(7),
        });
        assert_eq!(exit_code(&busy), EXIT_IN_USE);
        let pending = anyhow::Error::from(NotDone {
            code: EXIT_PENDING,
            message: "waits".into(),
        });
        assert_eq!(exit_code(&pending), EXIT_PENDING);
        assert_eq!(
            exit_code(&anyhow::anyhow!("connection refused")),
            EXIT_FAILED
        );
    }

    #[test]
    fn bad_site_code_name_and_url_name_the_option_rule_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |change: &dyn Fn(&mut client::ClientOptions)| {
            let mut o = client_options(&[]).unwrap();
            o.state_dir = dir.path().to_path_buf();
            change(&mut o);
            match client::session::Session::open(&o) {
                Ok(_) => panic!("accepted"),
                Err(e) => (format!("{e:#}"), exit_code(&e)),
            }
        };
        let (t, code) = refused(&|o| o.site_code = "PS12".into());
        assert!(
            t.contains("--site-code \"PS12\"") && t.contains("three letters"),
            "{t}"
        );
        assert_eq!(code, EXIT_USAGE);
        let (t, code) = refused(&|o| o.name = "ABCDEFGHIJKLMNOPQRSTU".into());
        assert!(t.contains("--name") && t.contains("1-15"), "{t}");
        assert_eq!(code, EXIT_USAGE);
        let (t, _) = refused(&|o| o.mp_url = "http://mp/x?y".into());
        assert!(t.contains("--mp \"http://mp/x?y\""), "{t}");
    }

    #[test]
    fn client_hash_follows_the_generation_unless_given() {
        let o = client_options(&[]).unwrap();
        assert_eq!(o.signature_hash, None);
        assert_eq!(o.site_generation, SiteGeneration::Current);
        assert_eq!(o.key, client::KeyKind::Rsa2048, "what real sites take");
        assert_eq!(
            client_options(&["--key", "p256"]).unwrap().key,
            client::KeyKind::P256
        );
        let o = client_options(&["--key", "rsa2048", "--hash", "sha1"]).unwrap();
        assert_eq!(o.signature_hash, Some(SignatureHash::Sha1));
        assert_eq!(o.key, client::KeyKind::Rsa2048);
        assert!(client_options(&["--hash", "md5"]).is_err());
        // What the session then signs with.
        use client::session::signature_hash;
        use client::KeyKind::{Rsa2048, P256};
        let o = client_options(&["--site-generation", "2007"]).unwrap();
        assert_eq!(o.site_generation, SiteGeneration::Sms2007);
        let g = o.site_generation;
        assert_eq!(signature_hash(g, None, Rsa2048), SignatureHash::Sha1);
        assert_eq!(signature_hash(g, None, P256), SignatureHash::Sha256);
        let given = Some(SignatureHash::Sha256);
        assert_eq!(signature_hash(g, given, Rsa2048), SignatureHash::Sha256);
        let current = SiteGeneration::Current;
        assert_eq!(
            signature_hash(current, None, Rsa2048),
            SignatureHash::Sha256
        );
    }

    #[test]
    fn a_bad_site_generation_names_the_option_the_value_and_the_choices() {
        let err = client_options(&["--site-generation", "2012"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--site-generation"), "{err}");
        assert!(err.contains("2012"), "{err}");
        assert!(err.contains("`2007` or `current`"), "{err}");
    }
}
