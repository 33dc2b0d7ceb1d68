//! `envshare`, the operator's tool. This file parses the command line, starts
//! logging, loads the settings and hands over to the command modules; the work itself is done by
//! the `envshare` library.
//!
//! Exit codes: 0 ok, 2 bad input or usage (clap's own usage errors are 2 as well), 1 anything
//! else. Errors print as `error: …` with their causes, each saying what to fix.

mod batch;
mod cli;
mod ctx;
mod dead;
mod demo;
mod enqueue;
mod events;
mod fail;
mod find;
mod job;
mod manual;
mod pause;
mod progress;
mod sandbox_cmd;
mod serve;
mod status;
mod sync;
mod table;
mod ticket;
mod webhooks;

use anyhow::Context as _;
use clap::Parser as _;

use cli::{
    BatchCommand, Cli, Command, DeadCommand, EventsCommand, JobCommand, TicketCommand,
    WebhooksCommand, WebhooksDeadCommand,
};
use envshare::config::Settings;

fn main() {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime failed")
        .and_then(|rt| rt.block_on(run(cli)));
    if let Err(err) = result {
        fail::report(&err);
        std::process::exit(fail::exit_code(&err));
    }
}

/// Rust ignores SIGPIPE, so `envshare status --watch | head` would panic on a closed pipe;
/// a command-line filter should end quietly instead, as other Unix tools do.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Generated from the command line alone: no settings, no logging, no Redis.
    match cli.command {
        Command::Completions(args) => return manual::print_completions(args.shell),
        Command::Man(args) => return manual::write_man_pages(&args.out_dir),
        // Needs no settings and no Redis: a receiver's developer runs it anywhere.
        Command::Webhooks {
            command:
                WebhooksCommand::Verify {
                    secret,
                    header,
                    tolerance,
                    json,
                    body,
                },
        } => return webhooks::verify(&secret, &header, tolerance, json, &body),
        _ => {}
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    if matches!(cli.command, Command::Demo(_)) && std::env::var_os("ENVSHARE_LOG").is_none() {
        // The worker's info lines would break up the demo's progress bar and summary.
        "warn".clone_into(&mut settings.log);
    }
    // Kept to the end of `run`: dropping it exports the spans still buffered (an import's).
    let _telemetry = envshare::telemetry::init(&settings.log, settings.log_format, "envshare")
        .context("fix ENVSHARE_LOG / ENVSHARE_LOG_FORMAT or the OTEL_ variables")?;
    for var in settings.unknown_env_vars() {
        tracing::warn!(variable = %var, "ignoring an ENVSHARE_ variable that names no setting");
    }
    let ctx = ctx::Ctx::new(&settings);
    match cli.command {
        Command::Import(args) => enqueue::import(&ctx, args).await,
        Command::Enqueue(args) => enqueue::pairs(&ctx, args).await,
        Command::Status(args) => status::run(&ctx, args).await,
        Command::Dead { command } => match command {
            DeadCommand::List {
                offset,
                limit,
                json,
            } => dead::list(&ctx, offset, limit, json).await,
            DeadCommand::Retry(select) => dead::retry(&ctx, select).await,
            DeadCommand::Purge { select, yes } => dead::purge(&ctx, select, yes).await,
        },
        Command::Events { command } => match command {
            EventsCommand::Tail {
                group,
                consumer,
                from_start,
                json,
                count,
            } => {
                let opts = events::TailOptions {
                    group,
                    consumer,
                    from_start,
                    json,
                    count,
                };
                events::tail(&ctx, opts).await
            }
        },
        Command::Ticket { command } => match command {
            TicketCommand::Set { ticket } => ticket::set(&ctx, &ticket).await,
            TicketCommand::Request => ticket::request(&ctx).await,
        },
        Command::Serve(args) => serve::run(settings, args).await,
        Command::Batch { command } => match command {
            BatchCommand::List {
                limit,
                offset,
                json,
            } => batch::list(&ctx, limit, offset, json).await,
            BatchCommand::Show { id, json } => batch::show(&ctx, &id, json).await,
            BatchCommand::Results(args) => batch::results(&ctx, args).await,
            BatchCommand::Cancel { id, json } => batch::cancel(&ctx, &id, json).await,
        },
        Command::Job { command } => match command {
            JobCommand::Show { id, json } => job::show(&ctx, &id, json).await,
        },
        Command::Find(args) => find::run(&ctx, &args.appid, args.json).await,
        Command::Pause(args) => pause::pause(&ctx, args.reason, args.for_, args.json).await,
        Command::Resume(args) => pause::resume(&ctx, args.json).await,
        Command::Unshare(args) => sync::unshare(&ctx, args).await,
        Command::Sync(args) => sync::run(&ctx, args).await,
        Command::Webhooks { command } => match command {
            WebhooksCommand::Status { json } => webhooks::status(&ctx, json).await,
            WebhooksCommand::Dead {
                command:
                    WebhooksDeadCommand::List {
                        endpoint,
                        limit,
                        json,
                    },
            } => webhooks::dead_list(&ctx, endpoint.as_deref(), limit, json).await,
            WebhooksCommand::Dead {
                command:
                    WebhooksDeadCommand::Retry {
                        ids,
                        all,
                        endpoint,
                        json,
                    },
            } => webhooks::dead_retry(&ctx, &ids, all, endpoint.as_deref(), json).await,
            WebhooksCommand::Verify { .. } => unreachable!("handled before the settings"),
        },
        Command::Demo(args) => demo::run(&settings, args).await,
        Command::Sandbox(args) => sandbox_cmd::run(args).await,
        Command::Completions(args) => manual::print_completions(args.shell),
        Command::Man(args) => manual::write_man_pages(&args.out_dir),
    }
}
