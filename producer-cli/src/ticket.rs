//! `envshare ticket set`: stores the component verify ticket, never echoing it.
//! `envshare ticket request`: asks WeChat to push one (`api_start_push_ticket`).

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

/// Asks WeChat to push a verify ticket to the platform's callback URL, unless a worker or another
/// `ticket request` did within the last 10 minutes.
pub async fn request(ctx: &Ctx) -> anyhow::Result<()> {
    let s = &ctx.settings;
    let (Some(appid), Some(secret)) = (&s.component_appid, &s.component_appsecret) else {
        bad_input!(
            "`envshare ticket request` calls api_start_push_ticket with the platform's \
             credentials: set ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET"
        );
    };
    let client =
        envshare::wechat::WechatClient::from_settings(s).context("fix ENVSHARE_WECHAT_BASE_URL")?;
    let queue = ctx.queue().await?;
    let store = queue.token_store();
    let outcome = envshare::token::request_ticket_push(&store, &client, appid.as_ref(), secret)
        .await
        .map_err(|e| match e {
            envshare::token::TicketPushError::Wechat(w) => anyhow::Error::new(w).context(
                "WeChat did not accept the ticket push request (api_start_push_ticket); the next \
                 request is possible in 10 minutes",
            ),
            other => anyhow::Error::new(other),
        })?;
    match outcome {
        envshare::token::TicketPush::Requested => println!(
            "asked WeChat to push a component_verify_ticket for platform {appid}; it arrives at \
             the platform's callback URL within seconds (`envshare status` shows its age)"
        ),
        envshare::token::TicketPush::Skipped { retry_in_ms } => println!(
            "a ticket push was already asked for within the last 10 minutes (by a worker or \
             another `ticket request`); nothing sent{}",
            retry_in_ms
                .map(|ms| format!("; the next request is possible in {} s", ms.div_ceil(1000)))
                .unwrap_or_default()
        ),
    }
    Ok(())
}
