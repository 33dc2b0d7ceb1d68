//! `envshare ticket set`: stores the component verify ticket, never echoing it.

use std::io::{IsTerminal, Read};

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};

use crate::ctx::Ctx;
use crate::fail::bad_input;

/// The longest ticket accepted; WeChat's are about 100 characters.
const MAX_TICKET_LEN: usize = 4096;

/// Stores `ticket` (or standard input when it is `-`) in the queue's `ticket` hash with `set_at`.
pub async fn set(ctx: &Ctx, ticket: &str) -> anyhow::Result<()> {
    let ticket = if ticket == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("paste the verify ticket, then press Enter and Ctrl-D:");
        }
        let mut buf = String::new();
        stdin
            .take(MAX_TICKET_LEN as u64 + 1)
            .read_to_string(&mut buf)
            .context("reading the ticket from standard input failed")?;
        SecretString::from(buf.trim().to_owned())
    } else {
        SecretString::from(ticket.trim().to_owned())
    };
    let len = ticket.expose_secret().chars().count();
    if len == 0 {
        bad_input!(
            "the ticket is empty: pass the component_verify_ticket WeChat pushed to your callback, \
             or `-` and write it to standard input"
        );
    }
    if len > MAX_TICKET_LEN || ticket.expose_secret().chars().any(char::is_control) {
        bad_input!(
            "that is not a verify ticket ({len} characters{}): pass the \
             component_verify_ticket value alone",
            if len > MAX_TICKET_LEN {
                ", too long"
            } else {
                ", with control characters"
            }
        );
    }
    let queue = ctx.queue().await?;
    let lifted = envshare::token::store_ticket(&queue, &ticket)
        .await
        .context("storing the ticket in Redis failed")?;
    println!("ticket stored ({len} characters)");
    if let Some(pause) = lifted {
        println!(
            "lifted the pause that was waiting for a ticket (it would have ended at {}); workers \
             resume now",
            envshare::clock::iso8601(pause.until_ms)
        );
    }
    Ok(())
}
