//! The sandbox's memory and its answers. Everything here is synchronous and runs under one
//! `std::sync::Mutex` held for microseconds, never across an await: latency and hangs are
//! slept outside the lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{Fault, SandboxConfig};
use crate::wechat::Endpoint;

/// Issued tokens kept for their precise error code (40014/42001); older ones answer 40001.
const KEPT_TOKENS: usize = 1024;

/// Pushed verify tickets still accepted (WeChat's live 12 h: about 72 pushes).
const KEPT_TICKETS: usize = 72;

/// One call of `batchshareenv` as the sandbox received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareCall {
    /// The env of the request.
    pub env: String,
    /// The appids of the request, in order.
    pub appids: Vec<String>,
    /// When it was processed.
    pub at: SystemTime,
}

/// A remembered binding of an env to a Mini Program.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    /// The env.
    pub env: String,
    /// The Mini Program.
    pub appid: String,
    /// Whether its administrator confirmed it (only confirmed bindings show in `batchgetenvid`).
    pub confirmed: bool,
}

struct Issued {
    issued_at: Instant,
    calls: u64,
    superseded: bool,
    expired: bool,
}

/// What a call is going to suffer before it is processed.
pub(crate) struct Plan {
    pub fault: Option<Fault>,
    pub latency: Duration,
    pub hang: Duration,
}

pub(crate) struct State {
    pub config: SandboxConfig,
    scripts: HashMap<Endpoint, VecDeque<Option<Fault>>>,
    tokens: HashMap<String, Issued>,
    current_token: Option<String>,
    token_seq: u64,
    token_fetches: u64,
    quota_used: u64,
    /// appid → env → confirmed.
    bindings: HashMap<String, BTreeMap<String, bool>>,
    calls: [u64; Endpoint::ALL.len()],
    share_calls: HashMap<String, u64>,
    share_log: Vec<ShareCall>,
    request_seq: u64,
    /// Pushed verify tickets, newest last.
    tickets: VecDeque<String>,
    tickets_pushed: u64,
}

fn index(endpoint: Endpoint) -> usize {
    Endpoint::ALL
        .iter()
        .position(|e| *e == endpoint)
        .unwrap_or(0)
}

fn is_componenttcb(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ShareEnv | Endpoint::GetEnvIds | Endpoint::UnshareEnv
    )
}

fn error(errcode: i64, errmsg: &str) -> Value {
    json!({"errcode": errcode, "errmsg": errmsg})
}

/// The `err_list` entry of an appid the sandbox is configured to refuse (`env` absent for
/// `batchgetenvid`, whose entries carry none).
fn refusal(env: Option<&str>, appid: &str) -> Value {
    let mut entry = json!({"appid": appid,
        "errmsg": "the mini program has not authorized the platform"});
    if let Some(env) = env {
        entry["env"] = json!(env);
    }
    entry
}

#[derive(Deserialize)]
struct ShareBody {
    #[serde(default)]
    data: Vec<ShareItem>,
    source_type: Option<i64>,
}

#[derive(Deserialize)]
struct ShareItem {
    env: String,
    #[serde(default)]
    appids: Vec<String>,
}

#[derive(Deserialize)]
struct GetEnvIdsBody {
    #[serde(default)]
    appids: Vec<String>,
    source_type: Option<i64>,
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    component_appid: String,
    #[serde(default)]
    component_appsecret: String,
    #[serde(default)]
    component_verify_ticket: String,
}

#[derive(Deserialize)]
struct StartPushBody {
    #[serde(default)]
    component_appid: String,
    #[serde(default)]
    component_secret: String,
}

#[derive(Deserialize)]
struct QuotaBody {
    #[serde(default)]
    cgi_path: String,
}

impl State {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        Self {
            config,
            scripts: HashMap::new(),
            tokens: HashMap::new(),
            current_token: None,
            token_seq: 0,
            token_fetches: 0,
            quota_used: 0,
            bindings: HashMap::new(),
            calls: [0; Endpoint::ALL.len()],
            share_calls: HashMap::new(),
            share_log: Vec::new(),
            request_seq: 0,
            tickets: VecDeque::new(),
            tickets_pushed: 0,
        }
    }

    /// Counts the call and decides its fault and latency: the script first, then chance.
    pub(crate) fn begin(&mut self, endpoint: Endpoint) -> Plan {
        self.calls[index(endpoint)] += 1;
        let scripted = self
            .scripts
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front);
        let fault = match scripted {
            Some(step) => step,
            None if is_componenttcb(endpoint) && !self.config.random_faults.is_empty() => {
                let mut draw: f64 = rand::rng().random();
                self.config.random_faults.iter().find_map(|&(fault, p)| {
                    draw -= p;
                    (draw < 0.0).then_some(fault)
                })
            }
            None => None,
        };
        Plan {
            fault,
            latency: self.config.latency.sample(),
            hang: self.config.hang,
        }
    }

    /// Processes one request and returns WeChat's JSON answer.
    pub(crate) fn process(
        &mut self,
        endpoint: Endpoint,
        token: Option<&str>,
        body: &[u8],
        base_url: &str,
    ) -> Value {
        self.request_seq += 1;
        let mut answer = self.answer(endpoint, token, body, base_url);
        // An undocumented field in every answer: clients must ignore unknown fields.
        answer["sandbox_request_id"] = json!(self.request_seq);
        answer
    }

    fn answer(
        &mut self,
        endpoint: Endpoint,
        token: Option<&str>,
        body: &[u8],
        base_url: &str,
    ) -> Value {
        if endpoint == Endpoint::ComponentToken {
            return match serde_json::from_slice::<TokenBody>(body) {
                Ok(b) => self.issue_token(&b),
                Err(_) => error(47001, "data format error"),
            };
        }
        if endpoint == Endpoint::StartPushTicket {
            return match serde_json::from_slice::<StartPushBody>(body) {
                Ok(b) => self.check_credentials(&b.component_appid, &b.component_secret),
                Err(_) => error(47001, "data format error"),
            };
        }
        if let Err(answer) = self.check_token(token) {
            return answer;
        }
        if is_componenttcb(endpoint) {
            if self
                .config
                .daily_quota
                .is_some_and(|q| self.quota_used >= q)
            {
                return error(45009, "reach max api daily quota limit");
            }
            self.quota_used += 1;
        }
        match endpoint {
            Endpoint::ShareEnv | Endpoint::UnshareEnv => {
                match serde_json::from_slice::<ShareBody>(body) {
                    Ok(b) if b.source_type == Some(1) && !b.data.is_empty() => {
                        if endpoint == Endpoint::ShareEnv {
                            self.share(b, base_url)
                        } else {
                            self.unshare(b)
                        }
                    }
                    _ => error(47001, "data format error"),
                }
            }
            Endpoint::GetEnvIds => match serde_json::from_slice::<GetEnvIdsBody>(body) {
                Ok(b) if b.source_type == Some(1) => self.get_env_ids(b),
                _ => error(47001, "data format error"),
            },
            Endpoint::Quota => match serde_json::from_slice::<QuotaBody>(body) {
                Ok(b) if !b.cgi_path.is_empty() => self.quota(),
                _ => error(47001, "data format error"),
            },
            Endpoint::ComponentToken | Endpoint::StartPushTicket => {
                unreachable!("answered above")
            }
        }
    }

    /// Issues a token as `api_component_token` would (superseding the others), without an HTTP
    /// call: what the platform's own token service holds when envshare runs beside it.
    pub(crate) fn issue_external_token(&mut self) -> String {
        let b = TokenBody {
            component_appid: self.config.component_appid.clone(),
            component_appsecret: self.config.component_secret.clone(),
            component_verify_ticket: self.config.verify_ticket.clone(),
        };
        let answer = self.issue_token(&b);
        // Not a fetch by a client: `token_fetches` counts `api_component_token` calls only.
        self.token_fetches -= 1;
        answer["component_access_token"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// The platform's appid and secret as `api_component_token` and `api_start_push_ticket`
    /// check them: errcode 0, 40013, 41004 or 40125.
    fn check_credentials(&self, appid: &str, secret: &str) -> Value {
        let c = &self.config;
        if appid != c.component_appid {
            return error(40013, "invalid appid");
        }
        if secret.is_empty() {
            return error(41004, "appsecret missing");
        }
        if secret != c.component_secret {
            return error(40125, "invalid appsecret");
        }
        json!({"errcode": 0, "errmsg": "ok"})
    }

    fn issue_token(&mut self, b: &TokenBody) -> Value {
        let refused = self.check_credentials(&b.component_appid, &b.component_appsecret);
        if refused["errcode"] != 0 {
            return refused;
        }
        let ticket = &b.component_verify_ticket;
        if *ticket != self.config.verify_ticket && !self.tickets.contains(ticket) {
            return error(61005, "component ticket is expired");
        }
        // A new token supersedes every issued one, as WeChat may do.
        for issued in self.tokens.values_mut() {
            issued.superseded = true;
        }
        if self.tokens.len() >= KEPT_TOKENS {
            self.tokens.clear();
        }
        self.token_seq += 1;
        self.token_fetches += 1;
        let token = format!(
            "sandbox-token-{}-{:016x}",
            self.token_seq,
            rand::rng().random::<u64>()
        );
        self.tokens.insert(
            token.clone(),
            Issued {
                issued_at: Instant::now(),
                calls: 0,
                superseded: false,
                expired: false,
            },
        );
        self.current_token = Some(token.clone());
        json!({"component_access_token": token, "expires_in": self.config.token_ttl.as_secs()})
    }

    fn check_token(&mut self, token: Option<&str>) -> Result<(), Value> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(error(41001, "access_token missing"));
        };
        if self.config.static_tokens.iter().any(|t| t == token) {
            return Ok(());
        }
        let Some(issued) = self.tokens.get_mut(token) else {
            return Err(error(
                40001,
                "invalid credential, access_token is invalid or not latest",
            ));
        };
        if issued.superseded {
            return Err(error(40014, "invalid access_token"));
        }
        issued.calls += 1;
        let over_calls = self
            .config
            .token_max_calls
            .is_some_and(|max| issued.calls > max);
        let over_time = issued.issued_at.elapsed() >= self.config.token_ttl;
        if issued.expired || over_calls || over_time {
            issued.expired = true;
            return Err(error(42001, "access_token expired"));
        }
        Ok(())
    }

    fn share(&mut self, b: ShareBody, base_url: &str) -> Value {
        let mut err_list = Vec::new();
        let mut msg_info_list = Vec::new();
        for item in &b.data {
            for appid in &item.appids {
                *self.share_calls.entry(appid.clone()).or_default() += 1;
                if self.config.rejects(appid) {
                    err_list.push(refusal(Some(&item.env), appid));
                    continue;
                }
                self.bindings
                    .entry(appid.clone())
                    .or_default()
                    .entry(item.env.clone())
                    .or_insert(false);
                msg_info_list.push(json!({"appid": appid,
                    "url": format!("{base_url}/confirm/{}/{appid}", item.env)}));
            }
        }
        if self.config.record_share_log {
            let at = SystemTime::now();
            self.share_log.extend(b.data.into_iter().map(|i| ShareCall {
                env: i.env,
                appids: i.appids,
                at,
            }));
        }
        with_lists(
            json!({"errcode": 0, "errmsg": "ok"}),
            [("err_list", err_list), ("msg_info_list", msg_info_list)],
        )
    }

    fn unshare(&mut self, b: ShareBody) -> Value {
        let mut err_list = Vec::new();
        for item in &b.data {
            for appid in &item.appids {
                if self.config.rejects(appid) {
                    err_list.push(refusal(Some(&item.env), appid));
                } else if let Some(envs) = self.bindings.get_mut(appid) {
                    envs.remove(&item.env);
                }
            }
        }
        with_lists(
            json!({"errcode": 0, "errmsg": "ok"}),
            [("err_list", err_list)],
        )
    }

    fn get_env_ids(&mut self, b: GetEnvIdsBody) -> Value {
        let mut relation_data = Vec::new();
        let mut err_list = Vec::new();
        for appid in &b.appids {
            if self.config.rejects(appid) {
                err_list.push(refusal(None, appid));
                continue;
            }
            let envs: Vec<&String> = self
                .bindings
                .get(appid)
                .map(|m| {
                    m.iter()
                        .filter(|(_, confirmed)| **confirmed)
                        .map(|(env, _)| env)
                        .collect()
                })
                .unwrap_or_default();
            relation_data.push(json!({"appid": appid, "env_list": envs}));
        }
        with_lists(
            json!({"errcode": 0, "errmsg": "ok"}),
            [("relation_data", relation_data), ("err_list", err_list)],
        )
    }

    fn quota(&self) -> Value {
        let limit = self.config.daily_quota.unwrap_or(0);
        json!({"errcode": 0, "errmsg": "ok", "quota": {
            "daily_limit": limit,
            "used": self.quota_used,
            "remain": limit.saturating_sub(self.quota_used),
        }})
    }

    pub(crate) fn script(
        &mut self,
        endpoint: Endpoint,
        steps: impl IntoIterator<Item = Option<Fault>>,
    ) {
        self.scripts.entry(endpoint).or_default().extend(steps);
    }

    /// A new verify ticket, accepted from now on (the oldest is forgotten past
    /// [`KEPT_TICKETS`]).
    pub(crate) fn new_ticket(&mut self) -> String {
        self.tickets_pushed += 1;
        let ticket = format!(
            "ticket@@@sandbox-{}-{:016x}",
            self.tickets_pushed,
            rand::rng().random::<u64>()
        );
        if self.tickets.len() >= KEPT_TICKETS {
            self.tickets.pop_front();
        }
        self.tickets.push_back(ticket.clone());
        ticket
    }

    /// Tickets made for pushes so far.
    pub(crate) fn tickets_pushed(&self) -> u64 {
        self.tickets_pushed
    }

    /// Forgets every pushed ticket: `api_component_token` answers 61005 to them.
    pub(crate) fn expire_tickets(&mut self) {
        self.tickets.clear();
    }

    pub(crate) fn expire_tokens(&mut self) {
        for issued in self.tokens.values_mut() {
            issued.expired = true;
        }
    }

    pub(crate) fn reset_quota(&mut self) {
        self.quota_used = 0;
    }

    pub(crate) fn confirm(&mut self, env: &str, appid: &str) -> bool {
        match self
            .bindings
            .get_mut(appid)
            .and_then(|envs| envs.get_mut(env))
        {
            Some(confirmed) => {
                *confirmed = true;
                true
            }
            None => false,
        }
    }

    pub(crate) fn confirm_all(&mut self) -> usize {
        let mut n = 0;
        for confirmed in self.bindings.values_mut().flat_map(BTreeMap::values_mut) {
            if !*confirmed {
                *confirmed = true;
                n += 1;
            }
        }
        n
    }

    pub(crate) fn bindings(&self) -> Vec<Binding> {
        let mut all: Vec<Binding> = self
            .bindings
            .iter()
            .flat_map(|(appid, envs)| {
                envs.iter().map(|(env, confirmed)| Binding {
                    env: env.clone(),
                    appid: appid.clone(),
                    confirmed: *confirmed,
                })
            })
            .collect();
        all.sort();
        all
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> u64 {
        self.calls[index(endpoint)]
    }

    pub(crate) fn share_calls_for(&self, appid: &str) -> u64 {
        self.share_calls.get(appid).copied().unwrap_or(0)
    }

    pub(crate) fn token_fetches(&self) -> u64 {
        self.token_fetches
    }

    pub(crate) fn current_token(&self) -> Option<String> {
        self.current_token.clone()
    }

    pub(crate) fn share_log(&self) -> Vec<ShareCall> {
        self.share_log.clone()
    }
}

/// Adds each non-empty list; empty lists are left out, as WeChat does.
fn with_lists<const N: usize>(mut answer: Value, lists: [(&str, Vec<Value>); N]) -> Value {
    for (name, list) in lists {
        if !list.is_empty() {
            answer[name] = Value::Array(list);
        }
    }
    answer
}
