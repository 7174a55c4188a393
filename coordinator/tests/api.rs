//! The hub's HTTP API through `app(state).oneshot(..)`, against SQLite in a temp dir and,
//! when `CONNECT_TEST_POSTGRES` names a server (scripts/test.sh starts one), against a
//! fresh PostgreSQL database per test.
#![allow(clippy::unwrap_used, clippy::wildcard_enum_match_arm)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use connect_coordinator::relay::RelayUpdate;
use connect_coordinator::store::Store;
use connect_coordinator::wire::*;
use connect_coordinator::{AppState, RandomIds, Settings, SystemClock, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Hub {
    state: AppState,
    /// Open relay pairs as the relay would count them from the updates it was sent.
    pairs: Arc<std::sync::Mutex<HashMap<(u64, u64), i64>>>,
    _dir: tempfile::TempDir,
}

async fn store(dir: &std::path::Path) -> Store {
    let postgres = BACKEND
        .try_with(|backend| *backend == "postgres")
        .unwrap_or(false);
    match std::env::var("CONNECT_TEST_POSTGRES") {
        Ok(url) if postgres => {
            // A database of its own per test, so tests run in parallel on one server.
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&url).await.unwrap();
            let name = format!("connect_test_{:016x}", rand_u64());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
            Store::open(Some(&format!("{base}/{name}")), dir)
                .await
                .unwrap()
        }
        _ => Store::open(None, dir).await.unwrap(),
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

impl Hub {
    async fn new(open_registration: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let settings = Settings {
            domain: "share.localhost".into(),
            public_url: "http://hub.test:7070".parse().expect("url"),
            relay: "hub.test:7070".into(),
            probe: None,
            open_registration,
            metrics_token: None,
        };
        let (state, inbox) =
            connect_coordinator::state(store, settings, Arc::new(SystemClock), Arc::new(RandomIds));
        let pairs = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let counted = pairs.clone();
        tokio::spawn(async move {
            let mut updates = inbox.relay.updates;
            while let Some(update) = updates.recv().await {
                let (key, by) = match update {
                    RelayUpdate::Allow(a, b) => ((a.min(b), a.max(b)), 1),
                    RelayUpdate::Disallow(a, b) => ((a.min(b), a.max(b)), -1),
                };
                *counted.lock().unwrap().entry(key).or_insert(0) += by;
            }
        });
        Self {
            state,
            pairs,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(self.state.clone(), method, path, token, body).await
    }

    async fn register(&self, name: &str, extra: Value) -> (StatusCode, Value) {
        let mut body =
            json!({"name": name, "public_key": WireKey([name.len() as u8; 32]).to_base64()});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.call(Method::POST, routes::AGENTS, None, Some(body))
            .await
    }

    /// A registered agent's token, registered from `client`.
    async fn agent_from(&self, name: &str, client: &str) -> String {
        let body = json!({"name": name, "public_key": WireKey([name.len() as u8; 32]).to_base64()});
        let (status, body) = call_from(
            self.state.clone(),
            client,
            Method::POST,
            routes::AGENTS,
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Creates the share `lookup` (an hour long) as `token`'s agent.
    async fn share(&self, token: &str, lookup: u8) {
        let (status, body) = self
            .call(
                Method::POST,
                routes::SHARES,
                Some(token),
                Some(share_body(lookup, 3600)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn agent(&self, name: &str) -> String {
        let (status, body) = self.register(name, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}

/// One request through the hub's router, as from a client at a fixed address.
async fn call(
    state: AppState,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_from(state, "198.51.100.23:50000", method, path, token, body).await
}

/// One request through the hub's router from `client`.
async fn call_from(
    state: AppState,
    client: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let mut request = request.body(body).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(client.parse::<SocketAddr>().unwrap()));
    let response = app(state).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn hex64(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

/// An access-log row at `at` for `path`.
fn log_row(at: time::OffsetDateTime, path: &str) -> HttpLogEntry {
    HttpLogEntry {
        at,
        method: "GET".into(),
        path: path.into(),
        status: 200,
        bytes: 1,
        client: "203.0.113.1".into(),
        duration_ms: 1,
    }
}

fn share_body(lookup: u8, expires: u64) -> Value {
    json!({
        "name": "staging-env",
        "lookup": hex64(lookup),
        "expires_in_secs": expires,
        "routes": [
            {"name": "postgres", "target": "localhost:5432", "port": 5432, "protocol": "tcp"},
            {"name": "web", "target": "localhost:8080", "port": 8080, "protocol": "tcp"},
        ],
        "http_port": 8080,
        "key_mac": hex64(0xaa),
    })
}

fn assert_error_shape(body: &Value) {
    let error = &body["error"];
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "not the error shape: {body}"
    );
}

/// Runs each scenario on SQLite, and on PostgreSQL when the test script provides one.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name().await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() {
                if std::env::var("CONNECT_TEST_POSTGRES").is_err() {
                    if std::env::var("CI").is_ok() {
                        panic!("CONNECT_TEST_POSTGRES is not set in CI: scripts/test.sh starts PostgreSQL");
                    }
                    eprintln!("CONNECT_TEST_POSTGRES not set; PostgreSQL variant not run");
                    return;
                }
                super::BACKEND.scope("postgres", super::$name()).await
            })*
        }
    };
}

tokio::task_local! {
    static BACKEND: &'static str;
}

both_backends!(
    registration_needs_a_usable_key,
    tokens_are_checked_with_one_error_shape,
    services_are_added_listed_and_removed,
    shares_are_created_listed_revoked_and_joined,
    expiry_fires_at_the_deadline,
    addresses_are_unique_and_reused,
    concurrent_shares_all_get_an_address,
    state_survives_reopening_the_database,
    ssh_keys_go_to_joiners_only_and_once_keys_once,
    registration_is_rate_limited_and_metrics_are_for_this_host,
    old_log_rows_and_idle_guests_are_pruned,
    a_busy_shares_log_keeps_only_its_newest_rows,
    login_links_work_once_and_sessions_end_with_their_agent,
);

/// A dashboard login link opens one session, once, before its deadline; a session ends at
/// its own deadline and when its agent is removed; the admin's has no agent.
async fn login_links_work_once_and_sessions_end_with_their_agent() {
    use connect_coordinator::store::{LinkTaken, SessionRow};
    let hub = Hub::new(true).await;
    let token = hub.agent("alice").await;
    let (status, link) = hub
        .call(Method::POST, routes::DASHBOARD_LINK, Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let url = link["url"].as_str().unwrap();
    let secret = url.strip_prefix("http://hub.test:7070/login/").unwrap();
    let (status, _) = hub
        .call(Method::POST, routes::DASHBOARD_LINK, None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let store = &hub.state.store;
    let now = hub.state.now_ms();
    let hash = connect_coordinator::secrets::hash_secret(secret);
    let LinkTaken::Valid(Some(agent_id)) = store.take_login_link(&hash, now).await.unwrap() else {
        panic!("the link did not take");
    };
    assert_eq!(
        store.take_login_link(&hash, now).await.unwrap(),
        LinkTaken::Invalid
    );
    // Past its deadline, a link is refused (and gone).
    store
        .insert_login_link("late", None, now + 10)
        .await
        .unwrap();
    assert_eq!(
        store.take_login_link("late", now + 10).await.unwrap(),
        LinkTaken::Invalid
    );

    let session = SessionRow {
        agent_id: Some(agent_id.clone()),
        csrf: "c".into(),
    };
    store
        .insert_session("s1", &session, now, now + 1000)
        .await
        .unwrap();
    assert_eq!(store.session("s1", now).await.unwrap(), Some(session));
    assert_eq!(store.session("s1", now + 1000).await.unwrap(), None);
    let admin = SessionRow {
        agent_id: None,
        csrf: "a".into(),
    };
    store
        .insert_session("s2", &admin, now, now + 1000)
        .await
        .unwrap();
    assert_eq!(store.session("s2", now).await.unwrap(), Some(admin));
    sqlx::query("DELETE FROM agents WHERE id = $1")
        .bind(&agent_id)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.session("s1", now).await.unwrap(), None);
}

/// Pruning forgets access-log rows past 30 days, guests that joined nothing after a day,
/// and guests whose joins are all on shares ended 30 days ago; nothing else.
async fn old_log_rows_and_idle_guests_are_pruned() {
    let hub = Hub::new(true).await;
    let store = &hub.state.store;
    let alice = hub.agent("alice").await;
    hub.share(&alice, 7).await;
    let (_, idle) = hub.register("idle", json!({"guest": true})).await;
    assert!(idle["token"].is_string());
    let (_, joiner) = hub.register("joiner", json!({"guest": true})).await;
    let join = json!({"lookup": hex64(7), "key_mac": hex64(0xbb)});
    let (status, _) = hub
        .call(
            Method::POST,
            routes::JOIN,
            joiner["token"].as_str(),
            Some(join),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    for at in [now - 40 * day, now, now] {
        store
            .insert_http_log(&[(hex64(7), log_row(at, "/"))])
            .await
            .unwrap();
    }
    let now_ms = hub.state.now_ms();
    let agents = store.agent_count().await.unwrap();
    let pruned = store.prune(now_ms + 2 * 86_400_000).await.unwrap();
    assert_eq!((pruned.log_rows, pruned.guests), (1, 1));
    assert_eq!(store.agent_count().await.unwrap(), agents - 1);
    assert_eq!(store.http_log(&hex64(7)).await.unwrap().len(), 2);

    let revoke = format!("/v1/shares/{}/revoke", hex64(7));
    let (status, _) = hub.call(Method::POST, &revoke, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    let pruned = store.prune(now_ms + 40 * 86_400_000).await.unwrap();
    assert_eq!((pruned.log_rows, pruned.guests), (2, 1));
    assert_eq!(store.agent_count().await.unwrap(), agents - 2);
}

/// A busy share keeps only its newest [`LOG_ROWS_PER_SHARE`] access-log rows.
async fn a_busy_shares_log_keeps_only_its_newest_rows() {
    use connect_coordinator::store::LOG_ROWS_PER_SHARE;
    let hub = Hub::new(true).await;
    let store = &hub.state.store;
    let alice = hub.agent("alice").await;
    hub.share(&alice, 8).await;
    let count = LOG_ROWS_PER_SHARE + 3;
    let now = time::OffsetDateTime::now_utc();
    let rows: Vec<(String, HttpLogEntry)> = (0..count)
        .map(|n| {
            let at = now - time::Duration::milliseconds(count - n);
            (hex64(8), log_row(at, &format!("/{n}")))
        })
        .collect();
    for batch in rows.chunks(1024) {
        store.insert_http_log(batch).await.unwrap();
    }
    let pruned = store.prune(hub.state.now_ms()).await.unwrap();
    assert_eq!(pruned.log_rows, 3, "the three oldest");
    let newest = store.http_log(&hex64(8)).await.unwrap();
    let newest = newest.last().map(|entry| entry.path.clone());
    assert_eq!(newest, Some(format!("/{}", count - 1)));
}

/// A flood of registrations from one address is cut off with 429 and the one error shape
/// (another address is not); `/metrics` answers this host only.
async fn registration_is_rate_limited_and_metrics_are_for_this_host() {
    let hub = Hub::new(true).await;
    let mut limited = 0;
    for n in 0..40 {
        let (status, body) = hub
            .register(&format!("guest{n}"), json!({"guest": true}))
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            limited += 1;
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    assert!(limited >= 9, "only {limited} of 40 registrations limited");

    // One agent joining over and over is cut off too.
    let (status, _) = hub
        .call(
            Method::POST,
            routes::SHARES,
            Some(&hub.agent_from("sharer", "203.0.113.6:1").await),
            Some(share_body(9, 600)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let joiner = hub.agent_from("joiner", "203.0.113.7:1").await;
    let join = json!({"lookup": hex64(9), "key_mac": hex64(0xbb)});
    let mut limited = 0;
    for _ in 0..30 {
        let (status, _) = call_from(
            hub.state.clone(),
            "203.0.113.7:2",
            Method::POST,
            routes::JOIN,
            Some(&joiner),
            Some(join.clone()),
        )
        .await;
        match status {
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => assert_eq!(other, StatusCode::OK),
        }
    }
    assert!(limited >= 9, "only {limited} of 30 joins limited");
    let body =
        json!({"name": "elsewhere", "public_key": WireKey([9; 32]).to_base64(), "guest": true});
    let (status, _) = call_from(
        hub.state.clone(),
        "203.0.113.5:1000",
        Method::POST,
        routes::AGENTS,
        None,
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = hub.call(Method::GET, routes::METRICS, None, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "metrics open to the internet"
    );
    let (status, text) = call_from(
        hub.state.clone(),
        "127.0.0.1:1000",
        Method::GET,
        routes::METRICS,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.as_str().is_some_and(|t| t.contains("connect_agents")),
        "{text}"
    );
}

async fn ssh_keys_go_to_joiners_only_and_once_keys_once() {
    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0\n-----END OPENSSH PRIVATE KEY-----";
    let hub = Hub::new(true).await;
    let alice = hub.agent("alice").await;
    let bob = hub.agent("bob").await;
    let carol = hub.agent("carol").await;
    let key_of = |lookup: u8| routes::SHARE_SSH_KEY.replace("{lookup}", &hex64(lookup));
    for (lookup, once) in [(1u8, false), (2, true)] {
        let mut body = share_body(lookup, 3600);
        body["ssh"] = json!({"user": "dev", "encrypted_key": KEY, "once": once});
        let (status, share) = hub
            .call(Method::POST, routes::SHARES, Some(&alice), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{share}");
        assert_eq!(share["ssh_user"], "dev");
        let join = json!({"lookup": hex64(lookup), "key_mac": hex64(0xbb)});
        let (status, joined) = hub
            .call(Method::POST, routes::JOIN, Some(&bob), Some(join))
            .await;
        assert_eq!(status, StatusCode::OK, "{joined}");
        assert_eq!(joined["ssh_user"], "dev");
    }
    // Only an agent that joined gets the key.
    let (status, body) = hub.call(Method::GET, &key_of(1), Some(&carol), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error_shape(&body);
    for _ in 0..2 {
        let (status, body) = hub.call(Method::GET, &key_of(1), Some(&bob), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["encrypted_key"], KEY);
        assert_eq!(body["user"], "dev");
    }
    // --ssh-once: the first download only.
    let (status, body) = hub.call(Method::GET, &key_of(2), Some(&bob), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = hub.call(Method::GET, &key_of(2), Some(&bob), None).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_error_shape(&body);
    // A share without --ssh has no key; an ended share's key is deleted.
    let (status, _) = hub
        .call(
            Method::POST,
            routes::SHARES,
            Some(&alice),
            Some(share_body(3, 3600)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let join = json!({"lookup": hex64(3), "key_mac": hex64(0xbb)});
    hub.call(Method::POST, routes::JOIN, Some(&bob), Some(join))
        .await;
    let (status, _) = hub.call(Method::GET, &key_of(3), Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let revoke = routes::SHARE_REVOKE.replace("{lookup}", &hex64(1));
    let (status, _) = hub.call(Method::POST, &revoke, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = hub.call(Method::GET, &key_of(1), Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Junk for a key or a user is refused.
    for ssh in [
        json!({"user": "dev", "encrypted_key": "not a key"}),
        json!({"user": "Root; rm", "encrypted_key": KEY}),
    ] {
        let mut body = share_body(4, 3600);
        body["ssh"] = ssh;
        let (status, body) = hub
            .call(Method::POST, routes::SHARES, Some(&alice), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

async fn registration_needs_a_usable_key() {
    let hub = Hub::new(false).await;
    let (status, body) = hub.register("alice", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error_shape(&body);
    let key = connect_coordinator::run_key_command(
        &hub.state.store,
        connect_coordinator::cli::KeyCommand::Create {
            reusable: false,
            expires: Some("1h".into()),
        },
        hub.state.now_ms(),
    )
    .await
    .unwrap();
    let (status, body) = hub.register("alice", json!({"auth_key": key})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap();
    assert!(token.len() >= 22, "token too short for 128 bits: {token}");
    // One use only.
    let (status, _) = hub.register("bob", json!({"auth_key": key})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Guests need no key.
    let (status, body) = hub.register("carol@laptop", json!({"guest": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn tokens_are_checked_with_one_error_shape() {
    let hub = Hub::new(true).await;
    // The database keeps only a hash of a token: no file of it holds the token itself.
    let token = hub.agent("keeper").await;
    if BACKEND.try_with(|b| *b).is_err() {
        for entry in std::fs::read_dir(hub._dir.path()).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "{} holds a token in clear",
                entry.path().display()
            );
        }
    }
    for (method, path) in [
        (Method::GET, routes::ME),
        (Method::GET, routes::SERVICES),
        (Method::GET, routes::SHARES),
        (Method::POST, routes::JOIN),
        (Method::GET, routes::STREAM),
    ] {
        for token in [None, Some("ct_wrong")] {
            let (status, body) = hub.call(method.clone(), path, token, Some(json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_error_shape(&body);
        }
    }
    let (status, body) = hub.call(Method::GET, "/v1/nothing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);
    let (status, body) = hub.call(Method::DELETE, routes::SHARES, None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error_shape(&body);
    let big = "x".repeat(100 * 1024);
    let (status, body) = hub
        .call(
            Method::POST,
            routes::AGENTS,
            None,
            Some(json!({"name": big})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(&body);
}

async fn services_are_added_listed_and_removed() {
    let hub = Hub::new(true).await;
    let token = hub.agent("alice").await;
    let pg =
        json!({"name": "postgres", "target": "localhost:5432", "port": 5432, "protocol": "tcp"});
    let (status, _) = hub
        .call(
            Method::POST,
            routes::SERVICES,
            Some(&token),
            Some(pg.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = hub
        .call(Method::POST, routes::SERVICES, Some(&token), Some(pg))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error_shape(&body);
    for bad in [
        json!({"name": "", "target": "localhost:1", "port": 1, "protocol": "tcp"}),
        json!({"name": "x", "target": "localhost", "port": 1, "protocol": "tcp"}),
        json!({"name": "x", "target": "localhost:1", "port": 0, "protocol": "tcp"}),
        json!({"name": "x", "target": "localhost:1", "port": 1, "protocol": "sctp"}),
        json!({"name": "x y", "target": "localhost:1", "port": 1, "protocol": "tcp"}),
    ] {
        let (status, body) = hub
            .call(Method::POST, routes::SERVICES, Some(&token), Some(bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_error_shape(&body);
    }
    let (_, body) = hub
        .call(Method::GET, routes::SERVICES, Some(&token), None)
        .await;
    assert_eq!(body["services"].as_array().unwrap().len(), 1);
    let (status, _) = hub
        .call(Method::DELETE, "/v1/services/postgres", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = hub
        .call(Method::DELETE, "/v1/services/postgres", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn shares_are_created_listed_revoked_and_joined() {
    let hub = Hub::new(true).await;
    let alice = hub.agent("alice").await;
    let bob = hub.agent("bob").await;
    let (status, share) = hub
        .call(
            Method::POST,
            routes::SHARES,
            Some(&alice),
            Some(share_body(1, 3600)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{share}");
    assert_eq!(share["name"], "staging-env");
    assert_eq!(share["state"], "active");
    assert_eq!(share["machine_ip"], "172.16.0.2");
    let public_name = share["public_name"].as_str().unwrap();
    let parts: Vec<&str> = public_name.split('-').collect();
    assert!(
        parts.len() >= 3 && parts.last().unwrap().len() == 4,
        "{public_name}"
    );
    assert_eq!(
        share["url"],
        format!("http://{public_name}.share.localhost:7070")
    );

    // The same code twice is refused.
    let (status, _) = hub
        .call(
            Method::POST,
            routes::SHARES,
            Some(&alice),
            Some(share_body(1, 3600)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let me = hub
        .call(Method::GET, routes::ME, Some(&alice), None)
        .await
        .1;
    let mut events = hub.state.events.subscribe(me["agent_id"].as_str().unwrap());
    let join = json!({"lookup": hex64(1), "key_mac": hex64(0xbb), "userspace": true});
    let (status, joined) = hub
        .call(Method::POST, routes::JOIN, Some(&bob), Some(join.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    // The sharer hears of the joiner as it described itself (a user-space joiner needs no
    // TCP checksums from it).
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(StreamEvent::PeerJoined { peer })) => {
            assert_eq!(peer.allowed_ip.to_string(), "172.16.0.3");
            assert!(peer.userspace, "{peer:?}");
        }
        other => panic!("no PeerJoined for the sharer: {other:?}"),
    }
    assert_eq!(joined["machine_ip"], "172.16.0.2");
    assert_eq!(joined["joiner_ip"], "172.16.0.3");
    assert_eq!(joined["sharer_key_mac"], hex64(0xaa));
    assert_eq!(joined["routes"].as_array().unwrap().len(), 2);
    // A restarted joiner joins again: still one pair for the relay, closed once at the end.
    let (status, _) = hub
        .call(Method::POST, routes::JOIN, Some(&bob), Some(join.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Bob cannot see or revoke Alice's share.
    let path = format!("/v1/shares/{}", hex64(1));
    let (status, _) = hub.call(Method::GET, &path, Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, info) = hub.call(Method::GET, &path, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["joins"][0]["agent"], "bob");
    assert_eq!(info["joins"][0]["from"], "198.51.100.23");
    let (_, list) = hub
        .call(Method::GET, routes::SHARES, Some(&alice), None)
        .await;
    assert_eq!(list["shares"][0]["joined"], 1);
    // The admin's list (the dashboard's) counts every share's joins in one query.
    let counts = hub.state.store.join_counts(None).await.unwrap();
    assert_eq!(counts.get(&hex64(1)).copied(), Some(1));

    let revoke = format!("/v1/shares/{}/revoke", hex64(1));
    let (status, _) = hub.call(Method::POST, &revoke, Some(&bob), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, revoked) = hub.call(Method::POST, &revoke, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revoked["state"], "revoked");
    let (status, _) = hub.call(Method::POST, &revoke, Some(&alice), None).await;
    assert_eq!(status, StatusCode::GONE);
    // The relay closes the pairs a moment after the end (see share_life::end).
    let open = || hub.pairs.lock().unwrap().values().any(|count| *count != 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !open(),
        "relay pairs left open: {:?}",
        hub.pairs.lock().unwrap()
    );
    let (status, body) = hub
        .call(Method::POST, routes::JOIN, Some(&bob), Some(join))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);

    // Guests join but do not share; bad share requests are refused.
    let (_, guest) = hub.register("guest", json!({"guest": true})).await;
    let guest = guest["token"].as_str().unwrap();
    let (status, _) = hub
        .call(
            Method::POST,
            routes::SHARES,
            Some(guest),
            Some(share_body(2, 60)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [
        share_body(3, 0),
        share_body(3, 400 * 86400),
        json!({"lookup": "short"}),
    ] {
        let (status, body) = hub
            .call(Method::POST, routes::SHARES, Some(&alice), Some(bad))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

async fn expiry_fires_at_the_deadline() {
    let hub = Hub::new(true).await;
    let alice = hub.agent("alice").await;
    let me = hub
        .call(Method::GET, routes::ME, Some(&alice), None)
        .await
        .1;
    let mut events = hub.state.events.subscribe(me["agent_id"].as_str().unwrap());
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(connect_coordinator_expiry(
        hub.state.clone(),
        cancel.clone(),
    ));
    let (status, _) = hub
        .call(
            Method::POST,
            routes::SHARES,
            Some(&alice),
            Some(share_body(5, 1)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        events.recv().await,
        Some(StreamEvent::ShareCreated { lookup: hex64(5) })
    );
    let started = std::time::Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no expiry within 5 s");
    assert_eq!(
        event,
        Some(StreamEvent::ShareEnded {
            lookup: hex64(5),
            state: ShareState::Expired
        })
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "expired late: {:?}",
        started.elapsed()
    );
    let (_, info) = hub
        .call(
            Method::GET,
            &format!("/v1/shares/{}", hex64(5)),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(info["state"], "expired");
    cancel.cancel();
}

async fn connect_coordinator_expiry(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    connect_coordinator::run_expiry(state, cancel).await;
}

/// Many agents sharing at once: every request gets its own block, none is turned away.
async fn concurrent_shares_all_get_an_address() {
    let hub = Hub::new(true).await;
    let alice = hub.agent("alice").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 100..164u8 {
        let (state, token) = (hub.state.clone(), alice.clone());
        tasks.spawn(async move {
            call(
                state,
                Method::POST,
                routes::SHARES,
                Some(&token),
                Some(share_body(i, 600)),
            )
            .await
        });
    }
    let mut ips = std::collections::HashSet::new();
    while let Some(result) = tasks.join_next().await {
        let (status, share) = result.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{share}");
        assert!(
            ips.insert(share["machine_ip"].as_str().unwrap().to_owned()),
            "address given twice"
        );
    }
    assert_eq!(ips.len(), 64);
}

async fn addresses_are_unique_and_reused() {
    let hub = Hub::new(true).await;
    let alice = hub.agent("alice").await;
    let mut ips = Vec::new();
    for i in 10..14u8 {
        let (_, share) = hub
            .call(
                Method::POST,
                routes::SHARES,
                Some(&alice),
                Some(share_body(i, 600)),
            )
            .await;
        ips.push(share["machine_ip"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        ips,
        ["172.16.0.2", "172.16.1.2", "172.16.2.2", "172.16.3.2"]
    );
    let (status, _) = hub
        .call(
            Method::POST,
            &format!("/v1/shares/{}/revoke", hex64(11)),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, share) = hub
        .call(
            Method::POST,
            routes::SHARES,
            Some(&alice),
            Some(share_body(20, 600)),
        )
        .await;
    assert_eq!(share["machine_ip"], "172.16.1.2", "freed block not reused");
}

async fn state_survives_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let token;
    {
        let store = Store::open(None, dir.path()).await.unwrap();
        let settings = Settings {
            domain: "d".into(),
            public_url: "http://h".parse().expect("url"),
            relay: "h:1".into(),
            probe: None,
            open_registration: true,
            metrics_token: None,
        };
        let (state, _rx) =
            connect_coordinator::state(store, settings, Arc::new(SystemClock), Arc::new(RandomIds));
        let hub = Hub {
            state,
            pairs: Arc::default(),
            _dir: tempfile::tempdir().unwrap(),
        };
        token = hub.agent("alice").await;
        let (status, _) = hub
            .call(
                Method::POST,
                routes::SHARES,
                Some(&token),
                Some(share_body(1, 600)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let store = Store::open(None, dir.path()).await.unwrap();
    let settings = Settings {
        domain: "d".into(),
        public_url: "http://h".parse().expect("url"),
        relay: "h:1".into(),
        probe: None,
        open_registration: false,
        metrics_token: None,
    };
    let (state, _rx) =
        connect_coordinator::state(store, settings, Arc::new(SystemClock), Arc::new(RandomIds));
    let hub = Hub {
        state,
        pairs: Arc::default(),
        _dir: dir,
    };
    let (status, list) = hub
        .call(Method::GET, routes::SHARES, Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["shares"][0]["state"], "active");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        /// Whatever body arrives at whatever route, the hub answers without a 5xx, and
        /// every error is the one JSON shape.
        #[test]
        fn arbitrary_bodies_never_break_the_api(
            route in prop::sample::select(vec![
                routes::AGENTS, routes::ME, routes::SERVICES, "/v1/services/x", routes::SHARES,
                "/v1/shares/00", "/v1/shares/00/revoke", "/v1/shares/00/ssh-key", routes::JOIN, routes::HEALTHZ,
            ]),
            method in prop::sample::select(vec!["GET", "POST", "DELETE", "PUT"]),
            body in prop_oneof![
                any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                "\\{\"[a-z_]{1,12}\": (\"[ -~]{0,40}\"|[0-9]{1,20}|null|true|\\[\\])\\}",
            ],
            authed in any::<bool>(),
        ) {
            let runtime = RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap());
            runtime.block_on(async {
                let hub = HUB.get_or_init(|| async { Hub::new(true).await }).await;
                let token = if authed { Some(TOKEN.get_or_init(|| async { hub.agent("prop").await }).await.as_str()) } else { None };
                let mut request = Request::builder().method(method).uri(route).header("content-type", "application/json");
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let response = app(hub.state.clone()).oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
                let status = response.status();
                prop_assert!(!status.is_server_error(), "{method} {route} -> {status}");
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                if status.is_client_error() {
                    let value: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_error_shape(&value);
                }
                Ok(())
            })?;
        }
    }

    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    static HUB: tokio::sync::OnceCell<Hub> = tokio::sync::OnceCell::const_new();
    static TOKEN: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
}
