//! The HTTP client: one `reqwest::Client`, one generic call path, one method per endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::field::Empty;
use tracing::{Instrument as _, debug, info_span, instrument};

use super::error::{Endpoint, WechatError};
use super::types::{
    ComponentToken, ComponentTokenRequest, ComponentTokenResponse, EnvIdsResponse, Envelope,
    GetEnvIdsRequest, QuotaRequest, QuotaResponse, SOURCE_TYPE_CLOUD_HOSTING, ShareItem,
    ShareRequest, ShareResponse, StartPushTicketRequest, StartPushTicketResponse,
};
use crate::ids::{AppId, EnvId};

/// Largest response body the client reads. WeChat's answers are a few KiB; anything bigger is
/// a broken peer, and reading it unbounded would let it exhaust the worker's memory.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why a [`WechatClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The base URL is not an absolute http(s) URL.
    #[error("invalid WeChat base URL {url:?}: {reason}")]
    BaseUrl {
        /// The rejected URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// reqwest could not build its client (TLS backend initialisation).
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// Client of the WeChat third-party platform API. Cheap to clone: clones share one connection
/// pool.
#[derive(Debug, Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    /// Without a trailing slash.
    base_url: Arc<str>,
    timeout: Duration,
}

impl WechatClient {
    /// The client the settings ask for: `ENVSHARE_WECHAT_BASE_URL` with
    /// `ENVSHARE_REQUEST_TIMEOUT_MS`.
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Self, ClientBuildError> {
        Self::new(&settings.wechat_base_url, settings.request_timeout)
    }

    /// A client for `base_url` (e.g. `https://api.weixin.qq.com`, or a sandbox's URL) whose every
    /// request, body included, must finish within `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientBuildError> {
        let parsed = reqwest::Url::parse(base_url).map_err(|e| ClientBuildError::BaseUrl {
            url: base_url.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientBuildError::BaseUrl {
                url: base_url.to_owned(),
                reason: "the scheme must be http or https".into(),
            });
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ClientBuildError::BaseUrl {
                url: base_url.to_owned(),
                reason: "no query or fragment allowed".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would resend the token-bearing URL somewhere else; WeChat does not
            // redirect API calls, so a 3xx is reported as an HTTP status error instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("envshare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientBuildError::Http)?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').into(),
            timeout,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Shares `env` with `appids` (`componenttcb/batchshareenv`, `source_type` 1). An `Ok`
    /// answer may still refuse some appids: see [`ShareResponse::err_list`].
    #[instrument(name = "wechat.share_env", skip_all, fields(env = %env, appids = appids.len()))]
    pub async fn share_env(
        &self,
        token: &SecretString,
        env: &EnvId,
        appids: &[AppId],
    ) -> Result<ShareResponse, WechatError> {
        let body = share_body(env, appids);
        self.call(Endpoint::ShareEnv, Some(token), &body).await
    }

    /// Undoes a share (`componenttcb/batchunshareenv`, same body as [`Self::share_env`]).
    #[instrument(name = "wechat.unshare_env", skip_all, fields(env = %env, appids = appids.len()))]
    pub async fn unshare_env(
        &self,
        token: &SecretString,
        env: &EnvId,
        appids: &[AppId],
    ) -> Result<ShareResponse, WechatError> {
        let body = share_body(env, appids);
        self.call(Endpoint::UnshareEnv, Some(token), &body).await
    }

    /// Reads back the confirmed envs of `appids` (`componenttcb/batchgetenvid`).
    #[instrument(name = "wechat.get_env_ids", skip_all, fields(appids = appids.len()))]
    pub async fn get_env_ids(
        &self,
        token: &SecretString,
        appids: &[AppId],
    ) -> Result<EnvIdsResponse, WechatError> {
        let body = GetEnvIdsRequest {
            appids: appids.iter().map(AppId::as_str).collect(),
            source_type: SOURCE_TYPE_CLOUD_HOSTING,
        };
        self.call(Endpoint::GetEnvIds, Some(token), &body).await
    }

    /// The daily quota of one API (`cgi-bin/openapi/quota/get`), e.g.
    /// `cgi_path = "/componenttcb/batchshareenv"`.
    #[instrument(name = "wechat.quota", skip_all, fields(cgi_path = %cgi_path))]
    pub async fn quota(
        &self,
        token: &SecretString,
        cgi_path: &str,
    ) -> Result<QuotaResponse, WechatError> {
        self.call(Endpoint::Quota, Some(token), &QuotaRequest { cgi_path })
            .await
    }

    /// Fetches a new `component_access_token` (`cgi-bin/component/api_component_token`).
    /// Fetching may invalidate the previous token, so only the token owner calls this. On
    /// `Err`, [`WechatError::is_token_config_error`] tells a setup problem from a passing one.
    #[instrument(name = "wechat.component_token", skip_all, fields(component_appid = %component_appid))]
    pub async fn component_token(
        &self,
        component_appid: &str,
        secret: &SecretString,
        ticket: &SecretString,
    ) -> Result<ComponentToken, WechatError> {
        let body = ComponentTokenRequest {
            component_appid,
            component_appsecret: secret.expose_secret(),
            component_verify_ticket: ticket.expose_secret(),
        };
        let answer: ComponentTokenResponse =
            self.call(Endpoint::ComponentToken, None, &body).await?;
        Ok(ComponentToken {
            token: answer.component_access_token.into(),
            expires_in: Duration::from_secs(answer.expires_in),
        })
    }

    /// Asks WeChat to push a fresh `component_verify_ticket` to the platform's callback URL now
    /// (`cgi-bin/component/api_start_push_ticket`). The ticket arrives at the callback, not in
    /// the answer.
    #[instrument(name = "wechat.start_push_ticket", skip_all, fields(component_appid = %component_appid))]
    pub async fn start_push_ticket(
        &self,
        component_appid: &str,
        secret: &SecretString,
    ) -> Result<(), WechatError> {
        let body = StartPushTicketRequest {
            component_appid,
            component_secret: secret.expose_secret(),
        };
        let _: StartPushTicketResponse = self.call(Endpoint::StartPushTicket, None, &body).await?;
        Ok(())
    }

    /// Sends one POST and reads its answer: status, size-capped body, errcode, then `T`.
    /// Logs the endpoint, the outcome and the elapsed time; never the URL (it holds the token).
    ///
    /// Traced as one client span, `POST /{path}`, with the method, the path (never the query,
    /// which holds the token), the HTTP status, WeChat's errcode and the error class.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        token: Option<&SecretString>,
        body: &B,
    ) -> Result<T, WechatError> {
        let span = info_span!(
            "wechat.http",
            otel.kind = "client",
            otel.name = %format_args!("POST /{}", endpoint.path()),
            otel.status_code = Empty,
            http.request.method = "POST",
            url.path = %format_args!("/{}", endpoint.path()),
            http.response.status_code = Empty,
            wechat.errcode = Empty,
            "error.type" = Empty,
        );
        let started = Instant::now();
        let result = self
            .call_inner(endpoint, token, body)
            .instrument(span.clone())
            .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => {
                span.record("wechat.errcode", 0);
                debug!(parent: &span, %endpoint, elapsed_ms, "wechat call ok")
            }
            Err(e) => {
                if let WechatError::Api { errcode, .. } = e {
                    span.record("wechat.errcode", errcode);
                }
                span.record("error.type", e.class().to_string())
                    .record("otel.status_code", "ERROR");
                debug!(parent: &span, %endpoint, elapsed_ms, class = %e.class(), error = %e, "wechat call failed")
            }
        }
        result
    }

    async fn call_inner<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        token: Option<&SecretString>,
        body: &B,
    ) -> Result<T, WechatError> {
        let mut request = self
            .http
            .post(format!("{}/{}", self.base_url, endpoint.path()))
            .json(body);
        if let Some(token) = token {
            request = request.query(&[("access_token", token.expose_secret())]);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.send_error(endpoint, e))?;

        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if !status.is_success() {
            return Err(WechatError::HttpStatus {
                endpoint,
                status: status.as_u16(),
            });
        }
        let too_large = || WechatError::TooLarge {
            endpoint,
            limit: MAX_RESPONSE_BYTES,
        };
        let declared = response.content_length();
        if declared.is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
            // Refuse before reading a byte of it.
            return Err(too_large());
        }
        let mut buf = Vec::with_capacity(declared.unwrap_or(4096).min(64 * 1024) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.body_error(endpoint, e))?
        {
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }

        let decode = |source| WechatError::Decode { endpoint, source };
        let envelope: Envelope = serde_json::from_slice(&buf).map_err(decode)?;
        if envelope.errcode != 0 {
            return Err(WechatError::Api {
                endpoint,
                errcode: envelope.errcode,
                errmsg: envelope.errmsg,
            });
        }
        serde_json::from_slice(&buf).map_err(decode)
    }

    /// Maps an error of `send()`. reqwest errors carry the URL, which carries the token: strip it.
    fn send_error(&self, endpoint: Endpoint, e: reqwest::Error) -> WechatError {
        let source = e.without_url();
        if source.is_connect() {
            // Includes connect timeouts: the request was never written.
            WechatError::Connect { endpoint, source }
        } else if source.is_timeout() {
            WechatError::Timeout {
                endpoint,
                timeout: self.timeout,
            }
        } else {
            WechatError::Send { endpoint, source }
        }
    }

    /// Maps an error while reading the body.
    fn body_error(&self, endpoint: Endpoint, e: reqwest::Error) -> WechatError {
        let source = e.without_url();
        if source.is_timeout() {
            WechatError::Timeout {
                endpoint,
                timeout: self.timeout,
            }
        } else {
            WechatError::Body { endpoint, source }
        }
    }
}

fn share_body<'a>(env: &'a EnvId, appids: &'a [AppId]) -> ShareRequest<'a> {
    ShareRequest {
        data: [ShareItem {
            env: env.as_str(),
            appids: appids.iter().map(AppId::as_str).collect(),
        }],
        source_type: SOURCE_TYPE_CLOUD_HOSTING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_body_has_the_documented_shape() {
        let env = EnvId::parse("prod-1a2b").unwrap();
        let appids = [AppId::parse("wx0123456789abcdef").unwrap()];
        let json = serde_json::to_value(share_body(&env, &appids)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"data":[{"env":"prod-1a2b","appids":["wx0123456789abcdef"]}],"source_type":1})
        );
    }

    #[test]
    fn a_base_url_without_http_scheme_is_rejected() {
        assert!(WechatClient::new("ftp://example.com", Duration::from_secs(1)).is_err());
        assert!(WechatClient::new("not a url", Duration::from_secs(1)).is_err());
        assert!(WechatClient::new("http://x/?a=b", Duration::from_secs(1)).is_err());
        let c = WechatClient::new("http://127.0.0.1:1/", Duration::from_secs(1)).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:1");
    }

    #[test]
    fn responses_default_absent_lists_and_ignore_unknown_fields() {
        let r: ShareResponse =
            serde_json::from_str(r#"{"errcode":0,"errmsg":"ok","new_field":{"x":1}}"#).unwrap();
        assert!(r.err_list.is_empty() && r.msg_info_list.is_empty());
        let r: EnvIdsResponse =
            serde_json::from_str(r#"{"relation_data":[{"appid":"wx1"}]}"#).unwrap();
        assert_eq!(r.envs_of("wx1"), &[] as &[String]);
        let e: Envelope = serde_json::from_str("{}").unwrap();
        assert_eq!(e.errcode, 0);
    }

    /// Captures every span field and event field recorded on this thread.
    #[cfg(feature = "sandbox")]
    mod capture {
        use std::fmt::Debug;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};

        use tracing::field::{Field, Visit};
        use tracing::span::{Attributes, Id, Record};
        use tracing::{Event, Metadata, Subscriber};

        #[derive(Clone, Default)]
        pub(crate) struct Capture {
            pub lines: Arc<Mutex<Vec<String>>>,
            next: Arc<AtomicU64>,
        }

        struct Line<'a>(&'a mut String);

        impl Visit for Line<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
        }

        impl Capture {
            fn push(&self, head: &str, record: impl FnOnce(&mut Line<'_>)) {
                let mut line = head.to_owned();
                record(&mut Line(&mut line));
                self.lines.lock().unwrap().push(line);
            }
        }

        impl Subscriber for Capture {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, span: &Attributes<'_>) -> Id {
                self.push(span.metadata().name(), |l| span.record(l));
                Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
            }
            fn record(&self, _: &Id, values: &Record<'_>) {
                self.push("record", |l| values.record(l));
            }
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, event: &Event<'_>) {
                self.push(event.metadata().target(), |l| event.record(l));
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
    }

    #[cfg(feature = "sandbox")]
    #[test]
    fn no_log_line_contains_the_access_token() {
        use crate::sandbox::{Fault, Sandbox, SandboxConfig};

        const TOKEN: &str = "tok-LOGCHECK-93be0d";
        let capture = capture::Capture::default();
        let _guard = tracing::subscriber::set_default(capture.clone());
        // One thread: the client, the sandbox and hyper's connection tasks all log through the
        // capture installed above.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = SandboxConfig {
                static_tokens: vec![TOKEN.into()],
                ..Default::default()
            };
            let sandbox = Sandbox::start(config).await.unwrap();
            let client = WechatClient::new(sandbox.url(), Duration::from_millis(300)).unwrap();
            let token = SecretString::from(TOKEN);
            let env = EnvId::parse("e1").unwrap();
            let appids = [AppId::parse("wx0123456789abcdef").unwrap()];
            let faults = [
                Fault::Hang,
                Fault::HttpStatus(502),
                Fault::Reset,
                Fault::MalformedJson,
            ];
            sandbox.script(Endpoint::ShareEnv, faults.map(Some));
            for _ in 0..faults.len() {
                assert!(client.share_env(&token, &env, &appids).await.is_err());
            }
            assert!(client.share_env(&token, &env, &appids).await.is_ok());
            assert!(client.get_env_ids(&token, &appids).await.is_ok());
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let closed =
                WechatClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1))
                    .unwrap();
            assert!(closed.share_env(&token, &env, &appids).await.is_err());
            let secret = SecretString::from("secret-LOGCHECK-77");
            assert!(
                client
                    .component_token("wx00000000000000c0", &secret, &secret)
                    .await
                    .is_err()
            );
            sandbox.shutdown().await.unwrap();
        });
        let lines = capture.lines.lock().unwrap();
        assert!(
            lines.iter().any(|l| l.contains("wechat call failed")),
            "captured: {lines:?}"
        );
        for line in lines.iter() {
            assert!(!line.contains("LOGCHECK"), "secret in a log line: {line}");
            assert!(!line.contains("access_token="), "URL in a log line: {line}");
        }
    }
}
