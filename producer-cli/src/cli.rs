//! The command line: every subcommand and flag of `envshare`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `--version` prints after the name: the package version and the commit the binary was
/// built from (`0.1.0 (0123456789ab 2026-12-03)`, or `(unknown)` for a build without git and
/// without `ENVSHARE_BUILD_COMMIT`; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ENVSHARE_COMMIT"),
    ")"
);

/// The envshare operator's tool: import share requests, follow batches and their per-appid
/// results, pause the queue, handle dead jobs.
///
/// Settings come from the environment (`ENVSHARE_REDIS_URL`, `ENVSHARE_QUEUE`,
/// `ENVSHARE_CHUNK_SIZE`, …) and an optional TOML file (`--config`).
/// Exit codes: 0 ok, 2 bad input or usage, 1 anything else.
#[derive(Debug, Parser)]
#[command(name = "envshare", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// A TOML settings file (same names as the environment variables, lower-case, no prefix).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enqueue share requests from a CSV or JSONL file (or `-` for stdin).
    Import(ImportArgs),
    /// Enqueue share requests for one env and a few appids.
    Enqueue(EnqueueArgs),
    /// Show the queue: jobs per state, workers, pause, token and ticket age, a batch's progress.
    Status(StatusArgs),
    /// List, retry or purge dead jobs.
    Dead {
        /// What to do with dead jobs.
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Read the result events.
    Events {
        /// What to do with events.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Webhook deliveries: per-endpoint status, dead deliveries, signature checks.
    Webhooks {
        /// What to do.
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Manage the component verify ticket.
    Ticket {
        /// What to do with the ticket.
        #[command(subcommand)]
        command: TicketCommand,
    },
    /// Serve HTTP until SIGTERM/SIGINT: the WeChat callback (verify tickets and authorization
    /// events at POST /wechat/callback), /healthz, /readyz and /metrics.
    Serve(ServeArgs),
    /// Batches: list them, show one's progress, write its per-appid results, cancel it.
    Batch {
        /// What to do with batches.
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// Look up a job by id.
    Job {
        /// What to do with the job.
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Every share of one appid still on record, newest batch first.
    Find(FindArgs),
    /// Pause the queue: workers take no new job until `envshare resume` (or the end of --for).
    Pause(PauseArgs),
    /// End the pause in force now, a manual one or an automatic one (quota spent, token
    /// misconfigured).
    Resume(JsonArgs),
    /// Remove env bindings from Mini Programs (batchunshareenv), through the queue with the
    /// same retries and events as shares (`share.unshared`). Input as for `import`, or
    /// `--env ENV --appid APPID…`.
    Unshare(UnshareArgs),
    /// Make the bindings match a file of desired (env, appid) pairs: print the plan (to share,
    /// already bound, awaiting confirmation, to unshare with --prune), and with --apply enqueue
    /// it as one batch. Running it again enqueues nothing new.
    Sync(SyncArgs),
    /// Run the whole pipeline on this machine: a fake WeChat API with faults, a worker, an
    /// import of generated pairs, live progress and a summary of the events.
    Demo(DemoArgs),
    /// Run the fake WeChat API (for tests and demos) until Ctrl-C.
    Sandbox(SandboxArgs),
    /// Print a shell completion script to standard output (e.g. `envshare completions bash >
    /// /usr/share/bash-completion/completions/envshare`).
    Completions(CompletionsArgs),
    /// Write the man pages (`envshare.1` and one `envshare-<subcommand>.1` per subcommand) into
    /// a directory; the repository keeps them in docs/man.
    #[command(hide = true)]
    Man(ManArgs),
}

/// `envshare completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `envshare man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing; pages there are replaced).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

/// `envshare serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on, overriding ENVSHARE_SERVE_ADDR (default 127.0.0.1:8080; port 0
    /// picks a free port). A non-loopback address needs ENVSHARE_API_TOKEN.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<std::net::SocketAddr>,
}

/// `envshare demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many (env, appid) pairs to generate and import.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pairs: u32,
}

/// `envshare sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9300")]
    pub addr: std::net::SocketAddr,

    /// How the fake API behaves.
    #[arg(long, value_enum, default_value_t = SandboxPreset::Demo)]
    pub preset: SandboxPreset,
}

/// A behaviour of `envshare sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxPreset {
    /// Latency 20–200 ms, some errcode -1 and HTTP 502, tokens that expire after 300 calls,
    /// appids ending in `bad` rejected.
    Demo,
    /// No latency and no faults.
    Clean,
}

/// An input format for `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// CSV with a header naming `env` and `appid`.
    Csv,
    /// One JSON object per line: `{"env","appid"}` or `{"env","appids":[…]}`.
    #[value(alias = "ndjson")]
    Jsonl,
}

impl From<FormatArg> for envshare::import::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => Self::Csv,
            FormatArg::Jsonl => Self::Jsonl,
        }
    }
}

/// Flags shared by `import` and `enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueFlags {
    /// The batch id to enqueue into (default: a new `b-<ULID>`).
    #[arg(long, value_name = "ID")]
    pub batch: Option<String>,

    /// Appids per job (default: ENVSHARE_CHUNK_SIZE, 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub chunk_size: Option<u32>,

    /// Show what would be enqueued; touch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Enqueue pairs even if they are already queued within the dedupe window.
    #[arg(long)]
    pub force: bool,

    /// Ask WeChat (batchgetenvid, ENVSHARE_CONFIRM_BATCH appids per call, within
    /// ENVSHARE_RATE_LIMIT) which pairs are already bound, and enqueue no job for those. Needs
    /// a token (ENVSHARE_ACCESS_TOKEN, or the component credentials and a stored ticket).
    #[arg(long)]
    pub skip_bound: bool,

    /// Print one JSON summary object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `envshare import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import, or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,

    /// The input format (default: from the extension .csv / .jsonl / .ndjson, else from the
    /// first line).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Enqueue the valid rows and report the invalid ones instead of enqueueing nothing.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Invalid lines to list before summing up the rest.
    #[arg(long, value_name = "N", default_value_t = envshare::import::DEFAULT_MAX_REPORTED)]
    pub max_errors: usize,

    /// Flags shared with `enqueue`.
    #[command(flatten)]
    pub common: EnqueueFlags,
}

/// `envshare enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The cloud environment to share.
    #[arg(long, value_name = "ENV")]
    pub env: String,

    /// The Mini Programs to share it with (repeat the flag or give several values).
    #[arg(long, value_name = "APPID", required = true, num_args = 1..)]
    pub appid: Vec<String>,

    /// Flags shared with `import`.
    #[command(flatten)]
    pub common: EnqueueFlags,
}

/// `envshare unshare`.
#[derive(Debug, Args)]
pub struct UnshareArgs {
    /// A file of pairs to unshare (CSV `env,appid` or JSONL, as for `import`), or `-` for
    /// standard input; or give --env and --appid instead.
    #[arg(value_name = "FILE|-", conflicts_with_all = ["env", "appid"], required_unless_present = "env")]
    pub file: Option<PathBuf>,

    /// The cloud environment to unshare (with --appid).
    #[arg(long, value_name = "ENV", requires = "appid")]
    pub env: Option<String>,

    /// The Mini Programs to unshare it from (with --env; repeat the flag or give several
    /// values).
    #[arg(long, value_name = "APPID", num_args = 1.., requires = "env")]
    pub appid: Vec<String>,

    /// The input format of FILE (default: from the extension, else from the first line).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Enqueue the valid rows of FILE and report the invalid ones instead of enqueueing
    /// nothing.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Invalid lines to list before summing up the rest.
    #[arg(long, value_name = "N", default_value_t = envshare::import::DEFAULT_MAX_REPORTED)]
    pub max_errors: usize,

    /// The batch id to enqueue into (default: a new `b-<ULID>`).
    #[arg(long, value_name = "ID")]
    pub batch: Option<String>,

    /// Appids per job (default: ENVSHARE_CHUNK_SIZE, 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub chunk_size: Option<u32>,

    /// Show what would be enqueued; touch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Enqueue pairs even if an unshare of them is already queued within the dedupe window.
    #[arg(long)]
    pub force: bool,

    /// Print one JSON summary object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `envshare sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The desired (env, appid) pairs: CSV `env,appid` or JSONL, as for `import`, or `-` for
    /// standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,

    /// The input format (default: from the extension, else from the first line).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Also plan to unshare the bindings of the file's envs that the file does not list.
    #[arg(long)]
    pub prune: bool,

    /// Enqueue the plan as one batch (without it, only print the plan).
    #[arg(long)]
    pub apply: bool,

    /// With --apply --prune: do not ask before unsharing (required when not on a terminal).
    #[arg(long)]
    pub yes: bool,

    /// The batch id to enqueue into (default: a new `b-<ULID>`).
    #[arg(long, value_name = "ID")]
    pub batch: Option<String>,

    /// Appids per job (default: ENVSHARE_CHUNK_SIZE, 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub chunk_size: Option<u32>,

    /// Print one JSON object (the plan, and what was enqueued) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `envshare status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show this batch's progress too.
    #[arg(long, value_name = "ID")]
    pub batch: Option<String>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// With --batch: follow the batch with a progress bar until it completes; without it:
    /// refresh the status every interval until Ctrl-C.
    #[arg(long)]
    pub watch: bool,

    /// Refresh interval for --watch, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub interval_ms: u64,
}

/// `envshare dead …`.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead jobs, most recent first.
    List {
        /// Skip this many dead jobs.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON (one array) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put dead jobs back in the ready queue.
    Retry(DeadSelectionArgs),
    /// Delete dead jobs for good.
    Purge {
        /// Which dead jobs.
        #[command(flatten)]
        select: DeadSelectionArgs,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Which dead jobs a command applies to.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct DeadSelectionArgs {
    /// Job ids.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Every dead job.
    #[arg(long)]
    pub all: bool,
}

/// `envshare webhooks …`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Per endpoint: undelivered events, attempts in flight, dead deliveries, the oldest
    /// undelivered event's age and the last error.
    Status {
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List or re-send deliveries that were given up.
    Dead {
        /// What to do with dead deliveries.
        #[command(subcommand)]
        command: WebhooksDeadCommand,
    },
    /// Check an `Envshare-Signature` header against a body and a secret (exit 0 valid, 1 not
    /// matching, 2 bad input).
    Verify {
        /// The shared secret.
        #[arg(long, env = "ENVSHARE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The `Envshare-Signature` header value (`t=…,v1=…`).
        #[arg(long, value_name = "H")]
        header: String,
        /// Also reject a signature made more than this many seconds from now.
        #[arg(long, value_name = "SECONDS")]
        tolerance: Option<u64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// The request body, byte for byte (`-` for stdin).
        #[arg(value_name = "BODYFILE")]
        body: PathBuf,
    },
}

/// `envshare webhooks dead …`.
#[derive(Debug, Subcommand)]
pub enum WebhooksDeadCommand {
    /// List dead deliveries, oldest first, per endpoint.
    List {
        /// Only this endpoint (its id, from `envshare webhooks status`).
        #[arg(long, value_name = "ID")]
        endpoint: Option<String>,
        /// Show at most this many per endpoint.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Schedule dead deliveries again, due now, with attempts and max age starting over.
    Retry {
        /// Event ids.
        #[arg(
            value_name = "EVENT_ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        ids: Vec<String>,
        /// Every dead delivery.
        #[arg(long)]
        all: bool,
        /// Only this endpoint (its id, from `envshare webhooks status`).
        #[arg(long, value_name = "ID")]
        endpoint: Option<String>,
        /// Print the count as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `envshare events …`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as they arrive, as a consumer group member; acks what it printed.
    Tail {
        /// The consumer group (created if missing; an existing group keeps its position).
        #[arg(long, default_value = "envshare-cli")]
        group: String,
        /// The consumer name within the group (default: host-pid).
        #[arg(long)]
        consumer: Option<String>,
        /// When the group is new, start from the oldest event kept instead of new ones.
        #[arg(long)]
        from_start: bool,
        /// Print each event's JSON as stored instead of a readable line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events (default: follow until Ctrl-C).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

/// `envshare ticket …`.
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Store the component verify ticket WeChat pushed to the callback (never echoed).
    Set {
        /// The ticket, or `-` to read it from standard input (keeps it out of shell history).
        #[arg(value_name = "TICKET|-")]
        ticket: String,
    },
    /// Ask WeChat to push a fresh verify ticket to the platform's callback URL now
    /// (api_start_push_ticket, with ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET).
    /// At most once per 10 minutes, shared with the workers' own requests.
    Request,
}

/// Just `--json`.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `envshare pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why (shown by `status`, the workers' /readyz and their logs).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// How long (`30m`, `2h`, `1d`, `1h 30m`); without it the pause lasts until `envshare
    /// resume`.
    #[arg(long = "for", value_name = "DURATION")]
    pub for_: Option<String>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `envshare find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// The Mini Program's appid (`wx` + 16 lowercase hex digits).
    #[arg(value_name = "APPID")]
    pub appid: String,

    /// Print the rows as one JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `envshare job …`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show a job: env, appids, batch, state, attempts, why it died; once it finished, its
    /// batch and each of its appids' outcome.
    Show {
        /// The job id (from the events, `envshare dead list` or `envshare batch results`).
        #[arg(value_name = "ID")]
        id: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `envshare batch …`.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// List batches on record, newest first, with their progress.
    List {
        /// Show at most this many.
        #[arg(long, value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Skip this many of the newest first.
        #[arg(long, value_name = "N", default_value_t = 0)]
        offset: usize,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one batch: progress, confirmation, appids per result state.
    Show {
        /// The batch id (`envshare batch list` shows them).
        #[arg(value_name = "ID")]
        id: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a batch's per-appid results (confirmation URLs, failures) as CSV or JSONL.
    Results(ResultsArgs),
    /// Cancel a batch: its waiting jobs leave the queue and their appids end `cancelled`;
    /// running jobs finish. A batch that already completed is left as it is.
    Cancel {
        /// The batch id (`envshare batch list` shows them).
        #[arg(value_name = "ID")]
        id: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `envshare batch results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The batch id (`envshare batch list` shows them).
    #[arg(value_name = "ID")]
    pub id: String,

    /// The output format.
    #[arg(long, value_enum, default_value_t = ResultsFormat::Csv)]
    pub format: ResultsFormat,

    /// Only the appids in this state.
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<StateArg>,

    /// Write to this file instead of standard output (replaced whole, only once complete).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Start a CSV with a UTF-8 byte order mark, so Excel reads it as UTF-8.
    #[arg(long)]
    pub bom: bool,

    /// The same as `--format jsonl`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// An output format of `batch results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultsFormat {
    /// CSV with a header row (RFC 4180: CRLF line ends, quoted where needed), UTF-8.
    Csv,
    /// One JSON object per line, with the CSV's columns as keys.
    #[value(alias = "ndjson")]
    Jsonl,
}

/// A per-appid result state, for `--state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Not answered by WeChat yet (waiting, running or retrying).
    Pending,
    /// Shared; waiting for the administrator to open the confirmation URL.
    Accepted,
    /// Failed for good.
    Failed,
    /// Confirmed: the binding is live.
    Bound,
    /// The confirmation window ended without the binding.
    Unconfirmed,
    /// Cancelled before it ran.
    Cancelled,
    /// The binding was removed.
    Unshared,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enqueue_takes_several_appids_either_way() {
        let cli = Cli::parse_from([
            "envshare", "enqueue", "--env", "e", "--appid", "a", "b", "--appid", "c",
        ]);
        let Command::Enqueue(args) = cli.command else {
            panic!("not enqueue")
        };
        assert_eq!(args.appid, ["a", "b", "c"]);
    }

    #[test]
    fn dead_retry_needs_ids_or_all_but_not_both() {
        assert!(Cli::try_parse_from(["envshare", "dead", "retry"]).is_err());
        assert!(Cli::try_parse_from(["envshare", "dead", "retry", "x", "--all"]).is_err());
        assert!(Cli::try_parse_from(["envshare", "dead", "retry", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["envshare", "dead", "purge", "a", "b", "--yes"]).is_ok());
    }
}
