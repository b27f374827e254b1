//! The `keysentinel` command: the server, the admin CLI (over the admin API), and offline tools
//! that work on the data directory (audit verification, master-key rotation).

mod backtest;
mod cases;
mod client;
mod demo;
mod detect;
mod exit;
mod front;
mod local;
mod offline;
mod output;
mod quality;
mod registry;

/// mimalloc: the gateway path allocates small, short-lived buffers per request (hyper's headers,
/// the verify event), where it measurably beats the system allocator (docs/gateway.md, Measuring).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use client::{seg, Client};
use exit::{Exit, Failure};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KEYSENTINEL_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "keysentinel", version = VERSION, about = "Issue, enforce, watch, revoke and account for every API key an exchange has.")]
struct Cli {
    /// Data directory of the embedded store (database, master key file, first admin token).
    #[arg(long, global = true, env = "KEYSENTINEL_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Admin API address for remote commands.
    #[arg(long, global = true, env = "KEYSENTINEL_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Operator bearer token (prefer the environment variable: arguments show in `ps`).
    #[arg(long, global = true, env = "KEYSENTINEL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the operator token (default: DATA_DIR/admin.token when it exists).
    #[arg(long, global = true, env = "KEYSENTINEL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the admin API on the embedded store (initialising the data directory on first run).
    Serve(ServeArgs),
    /// Initialise the data directory and print the first admin's token (once).
    Init {
        #[arg(long, default_value = "admin")]
        admin_id: String,
    },
    /// Print the OpenAPI document of the admin API.
    Openapi,
    /// Run the detection engine over recorded events, in event time; write its decisions.
    Replay(detect::ReplayArgs),
    /// Write a simulated exchange's traffic (event format v1) and its ground truth.
    Simulate(detect::SimulateArgs),
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Customer accounts.
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Operators of keysentinel and their roles.
    #[command(subcommand)]
    Operators(OperatorsCmd),
    /// The approved-vendor registry.
    #[command(subcommand)]
    Vendors(registry::VendorsCmd),
    /// Counterparties: mandates, broker arrangements, affiliates, sub-accounts.
    #[command(subcommand)]
    Counterparties(registry::CounterpartiesCmd),
    /// Who stands behind an account: beneficial owners, representatives, and the people, desks
    /// and systems that operate its keys.
    #[command(subcommand)]
    Parties(registry::PartiesCmd),
    /// Import an existing registry (accounts, parties, vendors, counterparties), all or nothing.
    #[command(subcommand)]
    Registry(registry::RegistryCmd),
    /// The key policy.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Cases opened by detection: work them as an analyst does over the API.
    #[command(subcommand)]
    Cases(cases::CasesCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(offline::AuditCmd),
    /// Master keys.
    #[command(subcommand)]
    Secrets(offline::SecretsCmd),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KEYSENTINEL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Also serve Envoy `ext_authz` (gRPC `envoy.service.auth.v3.Authorization/Check`) on this
    /// address; off when unset.
    #[arg(long, env = "KEYSENTINEL_EXT_AUTHZ_LISTEN")]
    ext_authz_listen: Option<String>,
    /// Key policy file (TOML); the built-in default policy otherwise.
    #[arg(long, env = "KEYSENTINEL_POLICY")]
    policy: Option<PathBuf>,
    /// Endpoint → scope rules for verification (TOML; built-in defaults otherwise).
    #[arg(long, env = "KEYSENTINEL_ROUTES")]
    routes: Option<PathBuf>,
    /// How long one-time nonces are remembered, in seconds (Upbit and Coinone nonces carry no
    /// time, so a replay is caught only within this window).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..=86400))]
    nonce_window_seconds: u64,
    /// A gateway allowed to say who the client is (CIDR or address; repeat, or comma-separate
    /// in the environment). Forward-auth requests from anywhere else are checked against their
    /// own peer address, whatever headers they carry. None by default.
    #[arg(long = "trusted-proxy", env = "KEYSENTINEL_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxy: Vec<String>,
    /// The one header the trusted proxies set to the client's address: `x-forwarded-for` (its
    /// right-most hop that is not a trusted proxy) or a single-address header such as
    /// `x-real-ip`. See docs/gateway.md for each gateway's.
    #[arg(long, env = "KEYSENTINEL_CLIENT_IP_HEADER", default_value = "x-forwarded-for")]
    client_ip_header: String,
    /// Declare that the exchange's backend acts only on what the client signed (Coinone's
    /// payload header, Binance's and Korbit's signed query), never on a request body
    /// keysentinel was not shown: header-only gateways then pass those schemes' requests
    /// instead of refusing them `BODY_REQUIRED`. Off by default.
    #[arg(long)]
    upstream_ignores_unsigned_body: bool,
    /// Where verify events are appended as NDJSON, one file per UTC day
    /// (`requests-YYYY-MM-DD.ndjson`; default: DATA_DIR/events).
    #[arg(long, env = "KEYSENTINEL_EVENTS_DIR")]
    events_dir: Option<PathBuf>,
    /// Remove events files older than this many days (checked hourly), keeping the lines of
    /// keys under a legal hold; without it nothing is ever removed.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    events_retention_days: Option<u32>,
    /// Verify events buffered before new ones are shed (and counted in the metrics).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    event_queue: u64,
    /// Also run a simulated exchange through detection and response, narrating as it goes
    /// (customers, keys and cases are created for real in the data directory).
    #[arg(long)]
    demo: bool,
    /// Run no detection on this node (verify events are still written).
    #[arg(long)]
    no_detection: bool,
    /// Detection settings (TOML, the same as `replay --config`); built-in defaults otherwise.
    #[arg(long, env = "KEYSENTINEL_DETECT_CONFIG")]
    detect_config: Option<PathBuf>,
    /// Records waiting for detection before verify events are shed and batches get 429.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    detection_queue: u64,
    /// Snapshot the detection state (DATA_DIR/detection) after this many records since the
    /// last snapshot (the journal holds them meanwhile; a start replays it).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    detection_snapshot_records: u64,
    /// …or this many minutes after the last one, when records came since.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1440))]
    detection_snapshot_minutes: u64,
    /// Start detection afresh: the detection state (DATA_DIR/detection) is moved aside to
    /// detection.reset-<time> and the engine learns its baselines again. For a snapshot or
    /// journal that cannot be read (the start refuses them otherwise).
    #[arg(long)]
    detection_reset: bool,
    /// Response policy (TOML, docs/response.md): what each stage does to a key; the built-in
    /// policy otherwise.
    #[arg(long, env = "KEYSENTINEL_RESPONSE_POLICY")]
    response_policy: Option<PathBuf>,
    /// Where owner notices are POSTed (the exchange's notification service); notices stay
    /// queued without it. Needs KEYSENTINEL_NOTIFY_SECRET, the HMAC key the receiver checks.
    #[arg(long, env = "KEYSENTINEL_NOTIFY_WEBHOOK")]
    notify_webhook: Option<String>,
    #[command(flatten)]
    geo: detect::GeoArgs,
    /// How often expiries and vendor lapses are recorded, and counterparties' dates told to
    /// detection, in seconds (expired keys and lapsed vendors are refused regardless).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
    sweep_seconds: u64,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Pin the audit log's verifier key (`name+id+key` as `audit export` prints it, or @FILE):
    /// the start refuses (exit 8) a store whose log is signed with another key — a file
    /// re-signed by someone who held the master key, or another store in its place.
    #[arg(long, env = "KEYSENTINEL_LOG_KEY")]
    log_key: Option<String>,
}

// One command is parsed once per process: boxing `create`'s many options would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum KeysCmd {
    /// Issue a key. HMAC keys print their secret once.
    Create {
        #[arg(long)]
        account: String,
        /// The exchange signing scheme the key's requests use.
        #[arg(long, value_parser = ["binance", "upbit", "bithumb", "coinone", "korbit"])]
        scheme: String,
        /// Comma-separated: read, trade, withdraw, transfer (withdraw/transfer become pending grants).
        #[arg(long)]
        scopes: String,
        /// Allowed network (CIDR or address); repeat for several.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Customer's Ed25519 public key (base64, or @FILE for a PEM file); HMAC when absent.
        #[arg(long)]
        ed25519_public_key: Option<String>,
        #[arg(long)]
        lifetime_days: Option<i64>,
        /// Third-party tool vendor id.
        #[arg(long)]
        vendor: Option<String>,
        /// What the key is for: one of the key policy's purposes (`policy show`), e.g.
        /// portfolio_read_only, own_bot, vendor_copy_trading, market_making, broker_execution.
        #[arg(long)]
        purpose: String,
        /// The owner's own words about the key's use.
        #[arg(long, default_value = "")]
        purpose_note: String,
        /// Version of the no-sharing terms the owner accepted.
        #[arg(long)]
        terms_version: String,
        /// When the owner accepted them (RFC 3339).
        #[arg(long)]
        terms_accepted_at: String,
        /// Where the owner accepted them.
        #[arg(long, value_parser = ["web", "app", "paper", "account_manager"])]
        terms_channel: String,
        /// How long sensitive grants last once approved.
        #[arg(long)]
        grant_hours: Option<i64>,
        /// Who operates the key: a party on the account's record (`parties list`).
        #[arg(long)]
        operated_by: Option<String>,
    },
    /// Import existing keys from an NDJSON file (see docs/import.md).
    Import {
        file: PathBuf,
        /// Refuse keys that break the key policy instead of importing them with a warning.
        #[arg(long)]
        enforce_policy: bool,
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
    /// List keys.
    List {
        #[arg(long)]
        account: Option<String>,
        #[arg(long, value_parser = ["active", "suspended", "expired", "revoked"])]
        status: Option<String>,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one key.
    Show { access_key: String },
    /// Issue a successor with the same grants; the old key expires after the overlap.
    Rotate {
        access_key: String,
        /// Seconds the old key keeps working (0 = at once).
        #[arg(long, default_value_t = 0)]
        overlap_seconds: i64,
        /// For Ed25519 keys, the customer's new public key (base64 or @FILE).
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        reason: String,
    },
    Suspend {
        access_key: String,
        #[arg(long)]
        reason: String,
    },
    Resume {
        access_key: String,
        #[arg(long)]
        reason: String,
    },
    /// Permanent.
    Revoke {
        access_key: String,
        #[arg(long)]
        reason: String,
    },
    /// Request a time-limited withdraw or transfer grant.
    Grant {
        access_key: String,
        #[arg(long, value_parser = ["withdraw", "transfer"])]
        scope: String,
        #[arg(long)]
        hours: Option<i64>,
        #[arg(long)]
        reason: String,
    },
    /// Approve a key its purpose issued pending (compliance role; not whoever asked for it).
    ApproveIssue {
        access_key: String,
        #[arg(long)]
        reason: String,
    },
    /// Approve a pending grant (approver role; not the requester).
    Approve {
        access_key: String,
        #[arg(long, value_parser = ["withdraw", "transfer"])]
        scope: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AccountsCmd {
    Create {
        account_id: String,
        #[arg(long, value_parser = ["retail", "corporate", "broker", "market_maker"])]
        segment: String,
        #[arg(long, value_parser = ["unverified", "verified", "reverification_required"], default_value = "unverified")]
        verification: String,
        #[arg(long, default_value = "")]
        purpose: String,
        /// Comma-separated ISO country codes, e.g. KR,SG.
        #[arg(long, default_value = "")]
        countries: String,
    },
    List {
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Show {
        account_id: String,
    },
    Update {
        account_id: String,
        #[arg(long, value_parser = ["retail", "corporate", "broker", "market_maker"])]
        segment: Option<String>,
        #[arg(long, value_parser = ["unverified", "verified", "reverification_required"])]
        verification: Option<String>,
        #[arg(long)]
        purpose: Option<String>,
        #[arg(long)]
        countries: Option<String>,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum OperatorsCmd {
    /// Create an operator and print its token (once).
    Create {
        operator_id: String,
        #[arg(long, value_parser = ["admin", "analyst", "approver", "auditor", "gateway", "compliance", "customer_channel"])]
        role: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Disable {
        operator_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Who the current token belongs to.
    Whoami,
    /// Approve an operator whose role (admin, approver, compliance) needs a second admin.
    Approve {
        operator_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Break glass: on the node, with the server stopped, create an active operator without a
    /// second admin (when the admins an approval needs are gone). Audited as
    /// `operator.break_glass` and logged as a warning.
    BreakGlass {
        operator_id: String,
        #[arg(long, value_parser = ["admin", "analyst", "approver", "auditor", "gateway", "compliance", "customer_channel"])]
        role: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Show the policy in force on the server.
    Show,
    /// Check a policy file offline and print its effective limits.
    Check { file: PathBuf },
    /// Print the built-in default policy file.
    Default,
    /// What a new response policy would have done against the current one, on recorded events:
    /// keys per stage, segment and outcome under each, and every key treated differently.
    Backtest(backtest::BacktestArgs),
}

fn main() -> ExitCode {
    // `keysentinel audit list | head`: the reader went away, which is no error of ours. Rust
    // ignores SIGPIPE, so printing then panics ("failed printing to stdout: Broken pipe"); end
    // quietly instead, as a Unix tool does. Any other panic keeps the default report.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Exit::Usage as u8 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code_of(&e)
        }
    }
}

fn client(cli: &Cli) -> anyhow::Result<Client> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read token file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => {
            std::fs::read_to_string(cli.data_dir.join(local::ADMIN_TOKEN_FILE)).ok().map(|t| t.trim().to_owned())
        }
    };
    Client::new(&cli.server, token)
}

fn arg_file_or_value(v: &str) -> anyhow::Result<String> {
    match v.strip_prefix('@') {
        Some(path) => offline::read_arg_file(path),
        None => Ok(v.to_owned()),
    }
}

fn countries(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => serve(&cli, args),
        Command::Init { admin_id } => init(&cli, admin_id),
        Command::Openapi => {
            print!("{}", keysentinel_server::openapi_json());
            Ok(())
        }
        Command::Replay(args) => detect::replay(args),
        Command::Simulate(args) => detect::simulate(args),
        Command::Keys(cmd) => keys(&cli, cmd),
        Command::Accounts(cmd) => accounts(&cli, cmd),
        Command::Cases(cmd) => cases::run(&client(&cli)?, cli.json, cmd),
        Command::Operators(cmd) => operators(&cli, cmd),
        Command::Vendors(cmd) => registry::vendors_cmd(&client(&cli)?, cli.json, cmd),
        Command::Counterparties(cmd) => registry::counterparties_cmd(&client(&cli)?, cli.json, cmd),
        Command::Parties(cmd) => registry::parties_cmd(&client(&cli)?, cli.json, cmd),
        Command::Registry(cmd) => registry::registry_cmd(&client(&cli)?, cli.json, cmd),
        Command::Policy(cmd) => policy(&cli, cmd),
        Command::Audit(cmd) => offline::audit(&cli.data_dir, cli.json, cmd, || client(&cli)),
        Command::Secrets(cmd) => offline::secrets(&cli.data_dir, cli.json, cmd),
    }
}

fn init_tracing(format: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYSENTINEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    init_tracing(&args.log_format, if args.demo { "warn" } else { "info" });
    let rt = runtime()?;
    rt.block_on(async {
        let client_address = client_address(args)?;
        let log_key = args.log_key.as_deref().map(offline::value_or_file).transpose()?;
        let opened = local::open_pinned(&cli.data_dir, args.policy.as_deref(), log_key.as_deref())?;
        if log_key.is_some() {
            tracing::info!("the audit log's signing key matches the pinned --log-key");
        }
        if let Some(token) = local::bootstrap(&opened.registry, "admin", "serve (first start)").await? {
            let path = cli.data_dir.join(local::ADMIN_TOKEN_FILE);
            local::write_private(&path, &format!("{}\n", token.as_str()))?;
            tracing::warn!(path = %path.display(), "created the first admin; its token is in this file (owner-only). Move it to your secrets manager and delete the file");
        }
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let front = front::Front::bind(&args.listen, threads)
            .await
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = front.addr;
        tracing::info!(%addr, data_dir = %cli.data_dir.display(), policy = %opened.registry.policy().version, version = VERSION, "keysentinel admin API listening");
        println!("keysentinel listening on http://{addr}");
        let sweeper = keysentinel_server::spawn_expiry_sweeper(opened.registry.clone(), std::time::Duration::from_secs(args.sweep_seconds));
        let routes = match &args.routes {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read routes file {}", path.display()))?;
                keysentinel_verify::routes::RouteTable::from_toml(&text).map_err(|e| Failure::new(Exit::Invalid, format!("{}: {e}", path.display())))?
            }
            None => keysentinel_verify::routes::RouteTable::default_routes()?,
        };
        let config = keysentinel_verify::VerifyConfig {
            nonce_window_ms: args.nonce_window_seconds as i64 * 1000,
            upstream_ignores_unsigned_body: args.upstream_ignores_unsigned_body,
            ..Default::default()
        };
        // Nonces accepted before a restart (clean or not) are still refused after it.
        let now_ms = (opened.registry.now().unix_timestamp_nanos() / 1_000_000) as i64;
        let (nonce_journal, nonces) = keysentinel_server::nonce_journal::NonceJournal::open(&cli.data_dir.join("nonces"), config.nonce_window_ms, now_ms)
            .map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
        let nonce_syncer = keysentinel_server::nonce_journal::spawn_syncer(nonce_journal.clone(), std::time::Duration::from_secs(1));
        let node = format!("{:x}{:x}", std::process::id(), opened.registry.now().unix_timestamp());
        let (events, events_rx) = keysentinel_server::telemetry::EventPipeline::new(args.event_queue as usize, node.clone());
        let events_dir = args.events_dir.clone().unwrap_or_else(|| cli.data_dir.join("events"));
        let _retention = args.events_retention_days.map(|days| {
            keysentinel_server::retention::spawn(opened.registry.clone(), events_dir.clone(), days, std::time::Duration::from_secs(3600))
        });
        let response_policy = std::sync::Arc::new(match &args.response_policy {
            Some(path) => backtest::load_policy(path)?,
            None => keysentinel_domain::ResponsePolicy::default(),
        });
        // Stages held for the owner's answer are applied when their window ends, detection
        // running on this node or not.
        let _release = keysentinel_server::response::spawn_release(opened.registry.clone(), response_policy.clone());
        let detection = if args.no_detection {
            None
        } else {
            let config = detect::load_config(args.detect_config.as_deref())?;
            if args.demo {
                demo::fetch_geo_data(&args.geo);
            }
            let geo = args.geo.load()?;
            let (sink, _responder) = keysentinel_server::response::spawn_responder(opened.registry.clone(), response_policy.clone());
            tracing::info!(version = %response_policy.version, mode = ?response_policy.mode, "response policy in force");
            let dir = cli.data_dir.join("detection");
            if args.detection_reset && dir.exists() {
                let aside = cli.data_dir.join(format!("detection.reset-{}", opened.registry.now().unix_timestamp()));
                std::fs::rename(&dir, &aside)
                    .with_context(|| format!("cannot move {} aside to {}", dir.display(), aside.display()))?;
                tracing::warn!(from = %dir.display(), to = %aside.display(), "DETECTION RESET: the detection state was moved aside; the engine starts with no baselines, population statistics, link graph or event-id window");
                eprintln!("detection reset: {} moved to {}; detection starts afresh", dir.display(), aside.display());
            }
            let persistence = keysentinel_server::detection::Persistence {
                dir,
                snapshot_records: args.detection_snapshot_records,
                snapshot_interval: std::time::Duration::from_secs(args.detection_snapshot_minutes * 60),
            };
            let started = keysentinel_server::detection::Detection::start_with(config, geo, args.detection_queue as usize, Some(sink), Some(persistence));
            Some(started.map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?)
        };
        let writer = keysentinel_server::telemetry::spawn_file_writer(events_rx, events_dir, node, detection.clone());
        let stopping = detection.clone();
        let mut state = keysentinel_server::AppState::with_nonces(opened.registry.clone(), routes, config, events, std::sync::Arc::new(nonces))?;
        state.client_address = client_address;
        if let Some(d) = detection {
            state = state.with_detection(d)?;
        }
        state.response_policy = response_policy;
        // Vendors past their recertification lapse (their keys restricted), and detection learns
        // when counterparties begin and end, detection running on this node or not.
        let registry_sweeper = keysentinel_server::spawn_registry_sweeper(
            opened.registry.clone(),
            state.response_policy.clone(),
            std::time::Duration::from_secs(args.sweep_seconds),
        );
        if let Some(url) = &args.notify_webhook {
            let url = reqwest::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| Failure::new(Exit::Usage, "--notify-webhook must be an http(s) URL"))?;
            let secret = std::env::var("KEYSENTINEL_NOTIFY_SECRET").unwrap_or_default();
            if secret.len() < 32 {
                return Err(Failure::new(Exit::Usage, "KEYSENTINEL_NOTIFY_SECRET must hold at least 32 characters when --notify-webhook is set").into());
            }
            let webhook = keysentinel_server::notify::Webhook { url: url.to_string(), secret: zeroize::Zeroizing::new(secret.into_bytes()) };
            keysentinel_server::notify::spawn_notifier(opened.registry.clone(), webhook);
            tracing::info!(host = url.host_str().unwrap_or(""), "owner notices go to the notification webhook");
        }
        let state = std::sync::Arc::new(state);
        if args.demo {
            let geo_dir = args.geo.geo_dir.clone().or_else(|| Some(PathBuf::from(".cache/geo")).filter(|d| d.is_dir()));
            tokio::spawn(demo::run(state.clone(), geo_dir, cli.data_dir.join("admin.token"), format!("http://{addr}")));
        }
        let ext_authz = match &args.ext_authz_listen {
            Some(addr) => {
                let grpc = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Failure::new(Exit::Usage, format!("cannot listen on {addr}: {e}")))?;
                let grpc_addr = grpc.local_addr()?;
                tracing::info!(addr = %grpc_addr, "Envoy ext_authz gRPC listening");
                println!("keysentinel ext_authz (gRPC) listening on {grpc_addr}");
                let service = keysentinel_server::ext_authz::service(state.clone());
                Some(tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(grpc), shutdown_signal()),
                ))
            }
            None => None,
        };
        let app = keysentinel_server::router(state);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut serving = tokio::task::spawn_blocking(move || front.serve(app, stopped));
        tokio::select! {
            r = &mut serving => r?.context("the HTTP server stopped")?,
            _ = shutdown_signal() => {
                let _ = stop.send(true);
                serving.await?.context("the HTTP server failed while stopping")?;
            }
            _ = writer_stopped(opened.registry.clone(), opened.store.clone()) => {
                // Never serve reads and verifies while refusing revocations: stop serving and
                // exit, so that a supervisor restarts the node (or an operator looks at it).
                tracing::error!("the store's writer stopped: this node can no longer record changes; stopping");
                let _ = stop.send(true);
                let _ = serving.await;
                return Err(Failure::new(
                    Exit::Failure,
                    "the store's writer stopped, so this node could no longer record changes (revocations included); it stopped serving. Check the log above and restart it",
                )
                .into());
            }
        }
        if let Some(grpc) = ext_authz {
            grpc.await?.context("ext_authz server failed")?;
        }
        sweeper.abort();
        registry_sweeper.abort();
        nonce_syncer.abort();
        if let Err(e) = nonce_journal.sync() {
            tracing::error!(error = %e, "cannot sync the nonce journal at shutdown");
        }
        drop(writer); // finishes by itself once the last sender is gone
        if let Some(d) = stopping {
            // A clean stop: the journal synced and a snapshot written, so the next start loads
            // it without replaying.
            match tokio::task::spawn_blocking(move || d.shutdown()).await? {
                Ok(()) => tracing::info!("detection state saved"),
                Err(e) => tracing::error!(error = %e, "cannot save the detection state at shutdown; the journal keeps it"),
            }
        }
        opened.store.close();
        tracing::info!("keysentinel stopped");
        Ok(())
    })
}

/// The trusted proxies and their header, checked before the store opens or anything listens.
fn client_address(args: &ServeArgs) -> anyhow::Result<keysentinel_server::client_addr::ClientAddress> {
    let mut trusted = Vec::new();
    for entry in args.trusted_proxy.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let net = entry
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| Failure::new(Exit::Usage, format!("--trusted-proxy {entry:?} is not an address or CIDR")))?;
        trusted.push(net);
    }
    if axum::http::HeaderName::from_bytes(args.client_ip_header.trim().as_bytes()).is_err() {
        return Err(Failure::new(
            Exit::Usage,
            format!("--client-ip-header {:?} is not a header name", args.client_ip_header),
        )
        .into());
    }
    if !trusted.is_empty() {
        tracing::info!(proxies = ?trusted, header = %args.client_ip_header, "forward-auth takes the client's address from these proxies' header");
    }
    Ok(keysentinel_server::client_addr::ClientAddress::new(trusted, &args.client_ip_header))
}

/// Resolves when the store can no longer write.
async fn writer_stopped(
    registry: std::sync::Arc<keysentinel_registry::Registry>,
    store: std::sync::Arc<keysentinel_sqlite::SqliteStore>,
) {
    // Fault injection for the end-to-end test of this path, in debug builds only: SIGUSR1
    // stops the writer as a crash of its thread would.
    #[cfg(all(debug_assertions, unix))]
    if std::env::var_os("KEYSENTINEL_TEST_STOP_WRITER_ON_SIGUSR1").is_some() {
        if let Ok(mut usr1) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
            tokio::spawn(async move {
                usr1.recv().await;
                let _ = tokio::task::spawn_blocking(move || store.close()).await;
            });
        }
    }
    #[cfg(not(all(debug_assertions, unix)))]
    drop(store);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        if !registry.writable() {
            return;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn init(cli: &Cli, admin_id: &str) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let opened = local::open(&cli.data_dir, None)?;
        let token = local::bootstrap(&opened.registry, admin_id, "init").await?;
        opened.store.close();
        match token {
            Some(token) => {
                if cli.json {
                    output::json(&json!({ "operator_id": admin_id, "role": "admin", "token": token.as_str() }));
                } else {
                    println!("Initialised {}.\nFirst admin: {admin_id}\nToken (shown once, store it in your secrets manager):\n{}", cli.data_dir.display(), token.as_str());
                }
                Ok(())
            }
            None => Err(Failure::new(Exit::Conflict, format!("{} is already initialised: operators exist", cli.data_dir.display())).into()),
        }
    })
}

fn print_or(cli: &Cli, v: &Value, human: fn(&Value)) {
    if cli.json {
        output::json(v)
    } else {
        human(v)
    }
}

fn issued(cli: &Cli, v: &Value) {
    if cli.json {
        return output::json(v);
    }
    output::key(&v["key"]);
    if let Some(secret) = v["secret"].as_str() {
        println!("\nsecret             {secret}\n(The secret is shown this once. keysentinel stores it only encrypted and cannot show it again.)");
    }
}

fn keys(cli: &Cli, cmd: &KeysCmd) -> anyhow::Result<()> {
    let c = client(cli)?;
    match cmd {
        KeysCmd::Create {
            account,
            scheme,
            scopes,
            allow,
            ed25519_public_key,
            lifetime_days,
            vendor,
            purpose,
            purpose_note,
            terms_version,
            terms_accepted_at,
            terms_channel,
            grant_hours,
            operated_by,
        } => {
            let algorithm = match ed25519_public_key {
                Some(pk) => json!({ "kind": "ed25519", "public_key": arg_file_or_value(pk)? }),
                None => json!({ "kind": "hmac" }),
            };
            let scopes: Vec<&str> = scopes.split(',').map(str::trim).collect();
            let body = json!({
                "account_id": account, "algorithm": algorithm, "scheme": scheme, "scopes": scopes, "ip_allowlist": allow,
                "lifetime_days": lifetime_days, "vendor_id": vendor, "purpose": purpose, "purpose_note": purpose_note,
                "terms_version": terms_version, "terms_accepted_at": terms_accepted_at, "terms_channel": terms_channel,
                "sensitive_grant_hours": grant_hours, "operated_by": operated_by,
            });
            issued(cli, &c.post("/v1/keys", &body)?);
        }
        KeysCmd::Import { file, enforce_policy, batch_size } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let report = c.post_ndjson(
                "/v1/keys/import",
                &[("enforce_policy", enforce_policy.to_string()), ("batch_size", batch_size.to_string())],
                text,
            )?;
            if cli.json {
                output::json(&report);
            } else {
                println!(
                    "{} lines: {} imported, {} already present, {} errors, {} warnings",
                    report["lines"],
                    report["imported"],
                    report["unchanged"],
                    report["errors"].as_array().map_or(0, Vec::len),
                    report["warnings"].as_array().map_or(0, Vec::len)
                );
                for (kind, list) in [("error", &report["errors"]), ("warning", &report["warnings"])] {
                    for i in list.as_array().map(|a| a.as_slice()).unwrap_or_default() {
                        println!(
                            "line {}: {kind} {}: {}",
                            i["line"],
                            i["code"].as_str().unwrap_or("-"),
                            i["message"].as_str().unwrap_or("-")
                        );
                    }
                }
            }
            if report["errors"].as_array().is_some_and(|e| !e.is_empty()) {
                return Err(
                    Failure::new(Exit::Invalid, "some lines were not imported (see above); the others were").into()
                );
            }
        }
        KeysCmd::List { account, status, vendor, after, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            for (k, v) in [("account_id", account), ("status", status), ("vendor_id", vendor), ("after", after)] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            print_or(cli, &c.get("/v1/keys", &q)?, output::keys);
        }
        KeysCmd::Show { access_key } => {
            print_or(cli, &c.get(&format!("/v1/keys/{}", seg(access_key)), &[])?, output::key)
        }
        KeysCmd::Rotate { access_key, overlap_seconds, public_key, reason } => {
            let pk = public_key.as_deref().map(arg_file_or_value).transpose()?;
            let body = json!({ "overlap_seconds": overlap_seconds, "public_key": pk, "reason": reason });
            issued(cli, &c.post(&format!("/v1/keys/{}/rotate", seg(access_key)), &body)?);
        }
        KeysCmd::Suspend { access_key, reason } => key_action(cli, &c, access_key, "suspend", reason)?,
        KeysCmd::Resume { access_key, reason } => key_action(cli, &c, access_key, "resume", reason)?,
        KeysCmd::Revoke { access_key, reason } => key_action(cli, &c, access_key, "revoke", reason)?,
        KeysCmd::Grant { access_key, scope, hours, reason } => {
            let body = json!({ "scope": scope, "hours": hours, "reason": reason });
            print_or(cli, &c.post(&format!("/v1/keys/{}/grants", seg(access_key)), &body)?, output::key);
        }
        KeysCmd::ApproveIssue { access_key, reason } => key_action(cli, &c, access_key, "approve", reason)?,
        KeysCmd::Approve { access_key, scope, reason } => {
            let v = c.post(
                &format!("/v1/keys/{}/grants/{}/approve", seg(access_key), seg(scope)),
                &json!({ "reason": reason }),
            )?;
            print_or(cli, &v, output::key);
        }
    }
    Ok(())
}

fn key_action(cli: &Cli, c: &Client, access_key: &str, action: &str, reason: &str) -> anyhow::Result<()> {
    let v = c.post(&format!("/v1/keys/{}/{action}", seg(access_key)), &json!({ "reason": reason }))?;
    print_or(cli, &v, output::key);
    Ok(())
}

fn accounts(cli: &Cli, cmd: &AccountsCmd) -> anyhow::Result<()> {
    let c = client(cli)?;
    match cmd {
        AccountsCmd::Create { account_id, segment, verification, purpose, countries: list } => {
            let body = json!({ "account_id": account_id, "segment": segment, "verification": verification,
                "declared_purpose": purpose, "declared_countries": countries(list) });
            print_or(cli, &c.post("/v1/accounts", &body)?, output::account);
        }
        AccountsCmd::List { after, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(a) = after {
                q.push(("after", a.clone()));
            }
            print_or(cli, &c.get("/v1/accounts", &q)?, output::accounts);
        }
        AccountsCmd::Show { account_id } => {
            print_or(cli, &c.get(&format!("/v1/accounts/{}", seg(account_id)), &[])?, output::account)
        }
        AccountsCmd::Update { account_id, segment, verification, purpose, countries: list, reason } => {
            let mut body = json!({ "reason": reason });
            if let Some(s) = segment {
                body["segment"] = json!(s);
            }
            if let Some(v) = verification {
                body["verification"] = json!(v);
            }
            if let Some(p) = purpose {
                body["declared_purpose"] = json!(p);
            }
            if let Some(l) = list {
                body["declared_countries"] = json!(countries(l));
            }
            print_or(cli, &c.patch(&format!("/v1/accounts/{}", seg(account_id)), &body)?, output::account);
        }
    }
    Ok(())
}

fn operators(cli: &Cli, cmd: &OperatorsCmd) -> anyhow::Result<()> {
    if let OperatorsCmd::BreakGlass { operator_id, role, reason } = cmd {
        return break_glass(cli, operator_id, role, reason);
    }
    let c = client(cli)?;
    match cmd {
        OperatorsCmd::Create { operator_id, role, description } => {
            let v = c.post(
                "/v1/operators",
                &json!({ "operator_id": operator_id, "role": role, "description": description }),
            )?;
            if cli.json {
                output::json(&v);
            } else {
                println!(
                    "Operator {operator_id} ({role}) created.\nToken (shown once):\n{}",
                    v["token"].as_str().unwrap_or_default()
                );
            }
        }
        OperatorsCmd::List => print_or(cli, &c.get("/v1/operators", &[])?, output::operators),
        OperatorsCmd::Disable { operator_id, reason } => {
            let v = c.post(&format!("/v1/operators/{}/disable", seg(operator_id)), &json!({ "reason": reason }))?;
            print_or(cli, &v, |o| println!("{} disabled", o["operator_id"].as_str().unwrap_or_default()));
        }
        OperatorsCmd::Whoami => print_or(cli, &c.get("/v1/operators/me", &[])?, |o| {
            println!("{} ({})", o["operator_id"].as_str().unwrap_or_default(), o["role"].as_str().unwrap_or_default())
        }),
        OperatorsCmd::Approve { operator_id, reason } => {
            let v = c.post(&format!("/v1/operators/{}/approve", seg(operator_id)), &json!({ "reason": reason }))?;
            print_or(cli, &v, |o| println!("{} approved", o["operator_id"].as_str().unwrap_or_default()));
        }
        OperatorsCmd::BreakGlass { .. } => {}
    }
    Ok(())
}

fn break_glass(cli: &Cli, operator_id: &str, role: &str, reason: &str) -> anyhow::Result<()> {
    init_tracing("text", "warn");
    let id =
        keysentinel_domain::OperatorId::parse(operator_id).map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
    let role: keysentinel_domain::Role =
        role.parse().map_err(|e: keysentinel_domain::ValidationError| Failure::new(Exit::Invalid, e.to_string()))?;
    let rt = runtime()?;
    rt.block_on(async {
        let opened = local::open(&cli.data_dir, None)?;
        let issued = opened
            .registry
            .break_glass(keysentinel_audit::Actor::Local { command: "operators break-glass".into() }, id, role, reason.to_owned())
            .await;
        opened.store.close();
        let issued = issued?;
        if cli.json {
            output::json(&serde_json::to_value(&issued)?);
        } else {
            println!(
                "BREAK-GLASS: operator {operator_id} ({role}) created without a second approval; recorded as operator.break_glass.\nToken (shown once):\n{}",
                issued.token.as_str()
            );
        }
        Ok(())
    })
}

fn policy(cli: &Cli, cmd: &PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Show => output::json(&client(cli)?.get("/v1/policy", &[])?),
        PolicyCmd::Backtest(args) => return backtest::backtest(args, cli.json),
        PolicyCmd::Check { file } => {
            let p = local::policy(Some(file))?;
            if cli.json {
                output::json(&serde_json::to_value(&p)?);
            } else {
                println!(
                    "{} is valid: policy version {}, terms version {}",
                    file.display(),
                    p.version,
                    p.terms_version
                );
                let rows: Vec<Vec<String>> = keysentinel_domain::Segment::ALL
                    .iter()
                    .map(|s| {
                        let sp = p.for_segment(*s);
                        vec![
                            s.to_string(),
                            sp.max_lifetime_days.to_string(),
                            sp.max_keys_per_account.to_string(),
                            sp.allowlist_required.to_string(),
                            sp.max_allowlist_entries.to_string(),
                            sp.sensitive_grant_max_hours.to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &["SEGMENT", "MAX DAYS", "MAX KEYS", "ALLOWLIST REQUIRED", "MAX ALLOWLIST", "GRANT HOURS"],
                    &rows,
                );
                println!();
                let names = |v: Vec<&str>| v.join(",");
                let purposes: Vec<Vec<String>> = p
                    .purposes
                    .iter()
                    .map(|(name, r)| {
                        vec![
                            name.to_string(),
                            names(r.segments.iter().map(|s| s.as_str()).collect()),
                            names(r.scopes.iter().map(|s| s.as_str()).collect()),
                            r.allowlist_required.to_string(),
                            names(r.requires.iter().map(|q| q.as_str()).collect()),
                            r.approval.as_str().to_owned(),
                        ]
                    })
                    .collect();
                output::table(&["PURPOSE", "SEGMENTS", "SCOPES", "ALLOWLIST", "REQUIRES", "APPROVAL"], &purposes);
            }
        }
        PolicyCmd::Default => print!("{}", keysentinel_domain::policy::DEFAULT_POLICY_TOML),
    }
    Ok(())
}
