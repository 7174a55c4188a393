//! A typed client of the hub's API over `connect-api`, mapping transport and API errors
//! to the lines users see.

use std::sync::Arc;
use std::time::Duration;

use connect_api::*;
use connect_netstack::io::relay_stream::{DialFuture, RelayConn, RelayDialer, RelayLink};
use connect_netstack::relay;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Fail;

#[derive(Clone)]
pub struct Hub {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Hub {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Fail::Usage(format!(
                "Hub URL must start with http:// or https://: {base}"
            ))
            .into());
        }
        // One TLS implementation for the whole program: ring, which rustls and boringtun
        // already bring, instead of reqwest's default second one (aws-lc, ~1.3 MB of code
        // in every agent's memory). Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self { base, http, token })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// `HOST:PORT` of the hub's API (the port its scheme implies when none is written):
    /// where a relay stream goes.
    pub fn endpoint(&self) -> String {
        reqwest::Url::parse(&self.base)
            .ok()
            .and_then(|url| {
                Some(format!(
                    "{}:{}",
                    url.host_str()?,
                    url.port_or_known_default()?
                ))
            })
            .unwrap_or_else(|| self.base.clone())
    }

    pub fn with_token(&self, token: String) -> Self {
        Self {
            token: Some(token),
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request; a failed one comes back as what the hub said of it.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Refusal> {
        let response = request
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .map_err(|_| Refusal::Fail(Fail::HubUnreachable(self.base.clone())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(match response.json::<ErrorBody>().await {
            Ok(body) => Refusal::Api(body.error),
            Err(_) if status.as_u16() == 401 => Refusal::Fail(Fail::NotConfigured),
            Err(_) => Refusal::Fail(Fail::Hub(format!("The hub answered {status}"))),
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.exchange(request).await.map_err(Refusal::into_fail)?;
        response.json::<T>().await.map_err(|err| {
            Fail::Hub(format!(
                "The hub sent an answer this agent does not understand: {err}"
            ))
            .into()
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn register(&self, request: &RegisterRequest) -> anyhow::Result<RegisterResponse> {
        self.post(routes::AGENTS, request).await
    }

    /// Where netcheck probes go; needs no token.
    pub async fn netcheck_info(&self) -> anyhow::Result<NetcheckInfo> {
        self.get(routes::NETCHECK).await
    }

    pub async fn me(&self) -> anyhow::Result<AgentInfo> {
        self.get(routes::ME).await
    }

    /// Gives the hub a copy of an exposed service (for listing), replacing one of the same
    /// name. What shares serve is decided by this machine's own list, not by this copy.
    pub async fn copy_service(&self, route: &Route) -> anyhow::Result<()> {
        let add = || {
            self.request(reqwest::Method::POST, routes::SERVICES)
                .json(route)
        };
        match self.exchange(add()).await {
            Ok(_) => Ok(()),
            Err(Refusal::Api(detail)) if detail.code == ErrorCode::Conflict => {
                self.forget_service(&route.name).await?;
                self.exchange(add()).await.map_err(Refusal::into_fail)?;
                Ok(())
            }
            Err(refusal) => Err(refusal.into_fail().into()),
        }
    }

    /// Removes the hub's copy of a service; one it never had is fine.
    pub async fn forget_service(&self, name: &str) -> anyhow::Result<()> {
        let path = routes::SERVICE.replace("{name}", name);
        match self
            .exchange(self.request(reqwest::Method::DELETE, &path))
            .await
        {
            Ok(_) => Ok(()),
            Err(Refusal::Api(detail)) if detail.code == ErrorCode::ServiceNotFound => Ok(()),
            Err(refusal) => Err(refusal.into_fail().into()),
        }
    }

    pub async fn create_share(&self, request: &CreateShareRequest) -> anyhow::Result<Share> {
        self.post(routes::SHARES, request).await
    }

    pub async fn shares(&self) -> anyhow::Result<Vec<Share>> {
        Ok(self.get::<ShareList>(routes::SHARES).await?.shares)
    }

    pub async fn share_info(&self, lookup: &str) -> anyhow::Result<ShareInfo> {
        self.get(&routes::SHARE.replace("{lookup}", lookup)).await
    }

    pub async fn revoke(&self, lookup: &str) -> anyhow::Result<Share> {
        self.send(self.request(
            reqwest::Method::POST,
            &routes::SHARE_REVOKE.replace("{lookup}", lookup),
        ))
        .await
    }

    /// A one-time login link to the hub's dashboard for this agent.
    pub async fn dashboard_link(&self) -> anyhow::Result<connect_api::DashboardLink> {
        self.send(self.request(reqwest::Method::POST, routes::DASHBOARD_LINK))
            .await
    }

    /// Tells the hub this machine refused a joiner of its share, so the joiner hears it.
    pub async fn decide(
        &self,
        lookup: &str,
        decision: &connect_api::Decision,
    ) -> anyhow::Result<()> {
        let path = routes::DECISIONS.replace("{lookup}", lookup);
        self.exchange(self.request(reqwest::Method::POST, &path).json(decision))
            .await
            .map_err(Refusal::into_fail)?;
        Ok(())
    }

    /// Tells the hub what this agent sees of its joiners, for the dashboard.
    pub async fn report_peers(&self, report: &connect_api::PeerReport) -> anyhow::Result<()> {
        self.exchange(
            self.request(reqwest::Method::PUT, routes::PEERS)
                .json(report),
        )
        .await
        .map_err(Refusal::into_fail)?;
        Ok(())
    }

    pub async fn join(&self, request: &JoinRequest) -> anyhow::Result<JoinResponse> {
        self.post(routes::JOIN, request).await
    }

    /// The encrypted SSH key of a share this agent joined.
    pub async fn ssh_key(&self, lookup: &str) -> anyhow::Result<SshKey> {
        self.get(&routes::SHARE_SSH_KEY.replace("{lookup}", lookup))
            .await
    }

    /// The agent's event stream; ends when the connection drops.
    pub async fn stream(&self) -> anyhow::Result<impl Stream<Item = StreamEvent> + use<>> {
        let response = self
            .request(reqwest::Method::GET, routes::STREAM)
            .send()
            .await
            .map_err(|_| Fail::HubUnreachable(self.base.clone()))?;
        if response.status().as_u16() == 401 {
            return Err(Fail::NotConfigured.into());
        }
        if !response.status().is_success() {
            return Err(Fail::Hub(format!(
                "The hub refused the event stream: {}",
                response.status()
            ))
            .into());
        }
        use eventsource_stream::Eventsource;
        Ok(response
            .bytes_stream()
            .eventsource()
            .filter_map(|event| async move {
                let event = event.ok()?;
                serde_json::from_str::<StreamEvent>(&event.data).ok()
            }))
    }
}

impl Hub {
    /// Opens relay streams (the relay over TCP/TLS, for networks that drop UDP) as this
    /// client: its token, its TLS roots and the HTTP proxy it honours.
    pub fn relay_dialer(&self) -> Arc<dyn RelayDialer> {
        Arc::new(StreamDialer(self.clone()))
    }

    async fn open_relay_stream(&self) -> std::io::Result<Box<dyn RelayConn>> {
        use reqwest::header::{CONNECTION, UPGRADE};
        let response = self
            .request(reqwest::Method::GET, routes::RELAY)
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, relay::STREAM_UPGRADE)
            .send()
            .await
            .map_err(std::io::Error::other)?;
        if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Err(std::io::Error::other(format!(
                "the hub answered {} instead of opening a relay stream",
                response.status()
            )));
        }
        let upgraded = response.upgrade().await.map_err(std::io::Error::other)?;
        Ok(Box::new(upgraded))
    }
}

struct StreamDialer(Hub);

impl RelayDialer for StreamDialer {
    fn dial(&self) -> DialFuture<'_> {
        Box::pin(async { self.0.open_relay_stream().await.map(RelayLink::Stream) })
    }
}

/// Resolves `HOST:PORT` the way the hub advertised its relay.
pub async fn resolve_relay(addr: &str) -> anyhow::Result<std::net::SocketAddr> {
    use anyhow::Context as _;
    tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("cannot resolve the hub relay {addr}"))
}

/// A request the hub did not carry out: its own error body, or a failure already in the
/// user's words.
enum Refusal {
    Api(ErrorDetail),
    Fail(Fail),
}

impl Refusal {
    /// Decided by `error.code`; the message is shown only when no code has a line of
    /// its own.
    fn into_fail(self) -> Fail {
        let detail = match self {
            Refusal::Fail(fail) => return fail,
            Refusal::Api(detail) => detail,
        };
        match detail.code {
            ErrorCode::Unauthorized => Fail::NotConfigured,
            ErrorCode::ShareNotFound | ErrorCode::ShareEnded => Fail::ShareNotFound,
            ErrorCode::NoSsh => Fail::NoSsh,
            ErrorCode::NameTaken => Fail::NameTaken(crate::output::capitalize(&detail.message)),
            ErrorCode::Forbidden
            | ErrorCode::NotFound
            | ErrorCode::ServiceNotFound
            | ErrorCode::InvalidRequest
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Conflict
            | ErrorCode::Gone
            | ErrorCode::Unavailable
            | ErrorCode::TooLarge
            | ErrorCode::RateLimited
            | ErrorCode::Internal
            | ErrorCode::Error => Fail::Hub(crate::output::capitalize(&detail.message)),
        }
    }
}
