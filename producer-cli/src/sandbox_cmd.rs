//! `envshare sandbox`: the fake WeChat API on its own, until Ctrl-C or SIGTERM (for
//! deploy/docker-compose.yml, manual trials and load tests).
//!
//! It starts the sandbox itself rather than through `run_standalone`, so that it can print the
//! address it really bound (port 0 picks one) only once binding has succeeded.

use std::net::SocketAddr;

use anyhow::Context as _;
use envshare::sandbox::{Sandbox, SandboxConfig};

use crate::cli::{SandboxArgs, SandboxPreset};

/// The access token the sandbox accepts in fixed-token mode (`ENVSHARE_ACCESS_TOKEN`).
pub const STATIC_TOKEN: &str = "sandbox-access-token";

/// Runs the sandbox on `args.addr` until Ctrl-C or SIGTERM.
pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let (config, behaviour) = match args.preset {
        SandboxPreset::Demo => (
            SandboxConfig::demo(),
            "latency 20–200 ms, ~5% errcode -1 and ~1% HTTP 502 on share calls, tokens expire \
             after 300 calls, appids ending in \"bad\" rejected",
        ),
        SandboxPreset::Clean => (SandboxConfig::default(), "no latency, no faults"),
    };
    let config = SandboxConfig {
        addr: args.addr,
        static_tokens: vec![STATIC_TOKEN.to_owned()],
        ..config
    };
    let handle = Sandbox::start(config).await.with_context(|| {
        format!(
            "starting the sandbox on {} failed: pick another --addr (port 0 picks a free one)",
            args.addr
        )
    })?;
    let url = reachable_url(handle.addr());
    println!(
        "sandbox WeChat API listening on http://{} ({behaviour})",
        handle.addr()
    );
    println!(
        "It is a fake for tests and demos. The credentials below are its own made-up values, \
         accepted only by this sandbox:"
    );
    println!("  ENVSHARE_WECHAT_BASE_URL={url}");
    println!("  component token mode:");
    println!(
        "    ENVSHARE_COMPONENT_APPID={}",
        SandboxConfig::COMPONENT_APPID
    );
    println!(
        "    ENVSHARE_COMPONENT_APPSECRET={}",
        SandboxConfig::COMPONENT_SECRET
    );
    println!(
        "    envshare ticket set {}   (the verify ticket it accepts)",
        SandboxConfig::VERIFY_TICKET
    );
    println!("  or fixed-token mode:");
    println!("    ENVSHARE_ACCESS_TOKEN={STATIC_TOKEN}");
    println!("Ctrl-C stops it.");
    shutdown_signal().await;
    println!("sandbox stopping");
    handle.shutdown().await.context("stopping the sandbox")
}

/// The URL a client on this machine uses: a wildcard bind (`0.0.0.0`, `::`) is reached through
/// the loopback address.
fn reachable_url(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// Ctrl-C, or SIGTERM (`docker stop`; as PID 1 in a container an unhandled SIGTERM is ignored).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_reached_through_loopback() {
        assert_eq!(
            reachable_url("0.0.0.0:9300".parse().unwrap()),
            "http://127.0.0.1:9300"
        );
        assert_eq!(
            reachable_url("10.0.0.2:9300".parse().unwrap()),
            "http://10.0.0.2:9300"
        );
        assert_eq!(reachable_url("[::]:1".parse().unwrap()), "http://[::1]:1");
    }
}
