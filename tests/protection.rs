//! Protection end to end: per-caller limits (cost, mutations, logins) in process and in Redis,
//! across replicas and through a Redis outage; the trusted-proxy chain; argon2 re-hashing;
//! login timing; asymmetric JWT keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, PrivateRedis, Profile, TestServer, error_code};
use serde_json::{Value, json};

both_profiles!(
    per_caller_limits_count_cost_and_mutations,
    trusted_proxy_chain_names_the_client,
    login_rehashes_old_parameters,
    unknown_user_and_wrong_password_look_alike,
);

const LOGIN: &str =
    "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }";
const CREATE: &str = "mutation($t: String!) { createTask(input: { title: $t }) { id } }";

/// POSTs as `token`; returns (status, Retry-After, body, elapsed).
async fn post(
    s: &TestServer,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, Option<String>, Value, Duration) {
    let mut req = s.client.post(s.url("/graphql"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let started = Instant::now();
    let res = req
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = res.json().await.unwrap();
    (status, retry, body, started.elapsed())
}

fn aliases(n: usize) -> String {
    let fields: String = (0..n).map(|i| format!("a{i}: __typename ")).collect();
    format!("{{ {fields} }}")
}

async fn task_count(s: &TestServer) -> u64 {
    s.ok("{ tasks(first: 1) { totalCount } }", json!({})).await["tasks"]["totalCount"]
        .as_u64()
        .unwrap()
}

async fn per_caller_limits_count_cost_and_mutations(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| {
        c.rate_limits = "mutation=1/1m:3,cost=1/1m:60,login=1000/1s"
            .parse()
            .unwrap();
    })
    .await
    else {
        return;
    };
    let s = &env.server;
    s.ok(
        "mutation { createUser(input: { username: \"other\", password: \"a long password!\", role: OPERATOR }) { id } }",
        json!({}),
    )
    .await;
    // Mutations: with createUser, three pass; the fourth is refused whole (429, Retry-After,
    // retryAfter), quickly, and creates nothing.
    for i in 0..2 {
        let (status, _, body, _) =
            post(s, Some(&s.token), CREATE, json!({ "t": format!("t{i}") })).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
    }
    let (status, retry, body, took) = post(s, Some(&s.token), CREATE, json!({ "t": "over" })).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(error_code(&body), "RATE_LIMITED");
    assert!(body["data"].is_null(), "{body}");
    let after = body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap();
    assert!((1..=60).contains(&after), "{body}");
    assert_eq!(retry, Some(after.to_string()));
    assert!(body["errors"][0]["extensions"]["requestId"].is_string());
    assert!(took < Duration::from_millis(50), "refusal took {took:?}");
    assert_eq!(task_count(s).await, 2);
    // Cost: so far 4 mutations × 2 fields and one count query (2 fields) = 10 of 60; a
    // 40-field query fits, a second one does not (and takes nothing).
    let (status, _, body, _) = post(s, Some(&s.token), &aliases(40), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body, took) = post(s, Some(&s.token), &aliases(40), json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (429, "RATE_LIMITED".into()),
        "{body}"
    );
    assert!(took < Duration::from_millis(50), "refusal took {took:?}");
    // The limits are per caller: another user has full buckets.
    let other = s.login("other", "a long password!").await;
    let (status, _, body, _) = post(s, Some(&other), CREATE, json!({ "t": "theirs" })).await;
    assert_eq!(status, 200, "{body}");
    // Connections are charged per item of their page: 1 + 50 × 3 fields (clamped to the
    // burst of 60) is more than the 58 left; counted without pages it would be 4 fields.
    let page = "{ tasks(first: 50) { edges { node { id } } } }";
    let (status, _, body, _) = post(s, Some(&other), page, json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (429, "RATE_LIMITED".into()),
        "{body}"
    );
    // Subscriptions are charged too: one costing 21 fields with ~10 left is refused with an
    // error and completed; the socket stays open for cheaper ones.
    let mut ws = s.ws("graphql-transport-ws").await;
    let fields: String = (0..20).map(|i| format!("k{i}: kind ")).collect();
    ws.subscribe(
        "1",
        &format!("subscription {{ taskChanged {{ {fields} }} }}"),
        json!({}),
    )
    .await;
    let msg = ws.next_json().await.unwrap();
    assert_eq!(msg["type"], "next", "{msg}");
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{msg}"
    );
    let done = ws.next_json().await.unwrap();
    assert_eq!(done["type"], "complete", "{done}");
    ws.subscribe("2", "{ __typename }", json!({})).await;
    let msg = ws.next_json().await.unwrap();
    assert_eq!(msg["payload"]["data"]["__typename"], "Query", "{msg}");
    env.finish().await;
}

/// Per-caller limits are shared by every replica through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_caller_limits_hold_across_replicas() {
    let Some(urls) = common::services_or_skip("per_caller_limits_hold_across_replicas").await
    else {
        return;
    };
    let shared = common::Shared::services(&urls).await;
    let limited = |mut c: aurum::config::Config| {
        c.rate_limits = "mutation=1/1m:4,login=1000/1s".parse().unwrap();
        c
    };
    let a = TestServer::start(limited(shared.config(Some(&urls)))).await;
    let b = TestServer::start(limited(shared.config(Some(&urls)))).await;
    let mut passed = 0;
    let mut refused = 0;
    for i in 0..10 {
        let s = if i % 2 == 0 { &a } else { &b };
        let (status, _, body, _) =
            post(s, Some(&a.token), CREATE, json!({ "t": format!("r{i}") })).await;
        match status {
            200 => passed += 1,
            429 => {
                assert_eq!(error_code(&body), "RATE_LIMITED");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    // Per replica the burst would let 4 through on each (8 in all); shared, 4 in all.
    assert_eq!((passed, refused), (4, 6));
    assert_eq!(task_count(&a).await, 4);
    a.stop().await;
    b.stop().await;
    shared.cleanup().await;
}

/// Redis down when a replica starts: the replica serves anyway (per-replica limits), `/ready`
/// says Redis is down, and once Redis answers the replica uses it, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_reported_then_used_once_it_answers() {
    let test = "redis_down_at_start_is_reported_then_used_once_it_answers";
    let Some(urls) = common::services_or_skip(test).await else {
        return;
    };
    let port = common::free_port().expect("a free port");
    let shared = common::Shared::services(&urls).await;
    let mut config = shared.config(Some(&urls));
    config.redis_url = Some(aurum::config::ServiceUrl::new(format!(
        "redis://127.0.0.1:{port}"
    )));
    let started = Instant::now();
    let s = TestServer::start(config).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start-up waited {:?} for Redis",
        started.elapsed()
    );
    let r = s.ready().await;
    assert_eq!(r["dependencies"]["redis"]["status"], "down", "{r}");
    // Served meanwhile, with in-process limits, and without waiting on Redis.
    let (status, _, body, took) = post(&s, Some(&s.token), CREATE, json!({ "t": "early" })).await;
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(1), "waited on Redis: {took:?}");

    let redis = match PrivateRedis::start_on(port).await {
        Some(r) => r,
        None if common::services_required() => panic!("could not start a private redis-server"),
        None => {
            common::record_skip(&format!("{test}: no redis-server"));
            return;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.ready().await;
        if r["dependencies"]["redis"]["status"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "Redis never reported ok: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The per-caller buckets move to Redis (after the limiter's pause following failures).
    let mut inspect = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut n = 0;
    loop {
        n += 1;
        let (status, _, body, _) = post(
            &s,
            Some(&s.token),
            CREATE,
            json!({ "t": format!("later{n}") }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*:ratelimit:*")
            .query_async(&mut inspect)
            .await
            .unwrap();
        if !keys.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rate-limit bucket reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
    shared.cleanup().await;
}

/// With Redis gone, login lockouts still lock (they live in the database) and per-caller
/// limits still hold (in process), and nothing waits on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_limits_survive_a_redis_outage() {
    let Some(urls) = common::services_or_skip("lockout_and_limits_survive_a_redis_outage").await
    else {
        return;
    };
    let mut redis = match PrivateRedis::start().await {
        Some(r) => r,
        None if common::services_required() => panic!("could not start a private redis-server"),
        None => {
            common::record_skip("lockout_and_limits_survive_a_redis_outage: no redis-server");
            return;
        }
    };
    let shared = common::Shared::services(&urls).await;
    let mut config = shared.config(Some(&urls));
    config.redis_url = Some(aurum::config::ServiceUrl::new(redis.url.clone()));
    config.login_max_failures = 2;
    config.rate_limits = "mutation=1/1m:3,login=1000/1s".parse().unwrap();
    let s = TestServer::start(config).await;
    // Redis answers: one mutation taken from the shared bucket.
    let (status, _, body, _) = post(&s, Some(&s.token), CREATE, json!({ "t": "before" })).await;
    assert_eq!(status, 200, "{body}");
    redis.child.kill().await.unwrap();
    let ready = s.ready().await;
    assert_eq!(ready["dependencies"]["redis"]["status"], "down", "{ready}");
    // Lockout: two failures, then even the right password is refused.
    for _ in 0..2 {
        let (_, _, body, took) = post(&s, None, LOGIN, json!({ "u": "admin", "p": "wrong" })).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
        assert!(
            took < Duration::from_secs(2),
            "login waited on Redis: {took:?}"
        );
    }
    let (_, _, body, _) = post(
        &s,
        None,
        LOGIN,
        json!({ "u": "admin", "p": common::ADMIN_PASSWORD }),
    )
    .await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    // Per-caller limits fall back to this replica's buckets (full ones: 3 pass, then 429),
    // and no request waits for Redis.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let (status, _, _, took) = post(
            &s,
            Some(&s.token),
            CREATE,
            json!({ "t": format!("during{i}") }),
        )
        .await;
        assert!(
            took < Duration::from_secs(1),
            "request waited on Redis: {took:?}"
        );
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    s.stop().await;
    shared.cleanup().await;
}

async fn trusted_proxy_chain_names_the_client(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| {
        c.http_rate_per_second = 1;
        c.http_rate_burst = 3;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let s = &env.server;
    let status = |xff: &'static str| {
        let req = s
            .client
            .post(s.url("/graphql"))
            .header("x-forwarded-for", xff)
            .json(&json!({ "query": "{ __typename }" }));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Each forwarded client has its own edge bucket; what a client prepends is ignored.
    for _ in 0..3 {
        assert_eq!(status("203.0.113.7").await, 200);
    }
    assert_eq!(status("203.0.113.7").await, 429);
    assert_eq!(status("198.51.100.1, 203.0.113.7").await, 429);
    // GET (GraphiQL, WebSocket upgrades) counts against the same bucket, and the refusal is
    // coded like any other, with the request id the response carries.
    let refused = s
        .client
        .get(s.url("/graphql"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-request-id", "edge-refusal-1")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-request-id"], "edge-refusal-1");
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = refused.json().await.unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["requestId"],
        "edge-refusal-1"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["retryAfter"].as_u64(),
        Some(retry)
    );
    assert!(retry >= 1);
    assert_eq!(status("203.0.113.8").await, 200);
    env.finish().await;
    // Without trusted proxies the header is ignored: one bucket for the peer.
    let Some(env) = Env::with(profile, name, |c| {
        c.http_rate_per_second = 1;
        c.http_rate_burst = 3;
    })
    .await
    else {
        return;
    };
    let s = &env.server;
    let mut codes = Vec::new();
    for i in 0..3 {
        let res = s
            .client
            .post(s.url("/graphql"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap();
        codes.push(res.status().as_u16());
    }
    // The admin login at start took one of the three.
    assert_eq!(codes, [200, 200, 429]);
    env.finish().await;
}

async fn login_rehashes_old_parameters(profile: Profile, name: &str) {
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let old = aurum::auth::password::Hashing::new(8 * 1024, 1)
        .unwrap()
        .hash(secrecy::SecretString::from(
            common::ADMIN_PASSWORD.to_owned(),
        ))
        .await
        .unwrap();
    let stored = || async {
        entity::user::Entity::find()
            .filter(entity::user::Column::Username.eq("admin"))
            .one(&s.state.db)
            .await
            .unwrap()
            .unwrap()
    };
    let mut admin: entity::user::ActiveModel = stored().await.into();
    admin.password_hash = Set(old.clone());
    entity::user::Entity::update(admin)
        .exec(&s.state.db)
        .await
        .unwrap();
    // A wrong password changes nothing.
    let (_, _, body, _) = post(s, None, LOGIN, json!({ "u": "admin", "p": "wrong" })).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(stored().await.password_hash, old);
    // The right one logs in and replaces the hash with one of the current parameters.
    s.login("admin", common::ADMIN_PASSWORD).await;
    let new = stored().await.password_hash;
    assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
    s.login("admin", common::ADMIN_PASSWORD).await;
    assert_eq!(stored().await.password_hash, new, "re-hashed only once");
    env.finish().await;
}

async fn unknown_user_and_wrong_password_look_alike(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| c.login_max_failures = 1000).await else {
        return;
    };
    let s = &env.server;
    let strip = |mut v: Value| {
        v["errors"][0]["extensions"]
            .as_object_mut()
            .map(|e| e.remove("requestId"));
        v
    };
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    // Interleaved so both see the same machine load.
    for i in 0..12 {
        let (s1, _, b1, t1) = post(
            s,
            None,
            LOGIN,
            json!({ "u": format!("ghost{i}"), "p": "guess" }),
        )
        .await;
        let (s2, _, b2, t2) = post(s, None, LOGIN, json!({ "u": "admin", "p": "guess" })).await;
        assert_eq!(s1, s2);
        assert_eq!(strip(b1), strip(b2), "the answers differ");
        unknown.push(t1);
        wrong.push(t2);
    }
    unknown.sort();
    wrong.sort();
    let (mu, mw) = (unknown[6].as_secs_f64(), wrong[6].as_secs_f64());
    let ratio = mu / mw;
    println!("median login: unknown user {mu:.4} s, wrong password {mw:.4} s, ratio {ratio:.3}");
    assert!((0.7..=1.43).contains(&ratio), "timing differs: {ratio:.3}");
    env.finish().await;
}

/// EdDSA keys from PEM files: login issues EdDSA tokens that work; HS256 tokens are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_tokens_from_configured_keys() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let Some(env) = Env::with(
        Profile::Embedded,
        "eddsa_tokens_from_configured_keys",
        |c| {
            c.jwt_algorithm = aurum::config::JwtAlgorithm::EdDsa;
            c.jwt_private_key_file = Some(fixtures.join("ed25519-b.pem"));
            c.jwt_public_key_files = vec![
                fixtures.join("ed25519-a.pub.pem"),
                fixtures.join("ed25519-b.pub.pem"),
            ];
        },
    )
    .await
    else {
        return;
    };
    let s = &env.server;
    let header = s.token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&base64_url_decode(header)).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    let me = s.ok("{ me { username } }", json!({})).await;
    assert_eq!(me["me"]["username"], "admin");
    let hs = aurum::auth::token::TokenKeys::hs256(
        common::JWT_SECRET.as_bytes(),
        "aurum",
        "aurum",
        Duration::from_secs(60),
    )
    .issue(uuid::Uuid::nil())
    .unwrap();
    let (status, _, body, _) = post(s, Some(&hs.token), "{ me { username } }", json!({})).await;
    assert_eq!((status, error_code(&body)), (401, "UNAUTHENTICATED".into()));
    env.finish().await;
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Cached callers: a role change made through one replica reaches HTTP requests on another
/// within a second (well inside the cache lifetime, so the event did it), and the same
/// replica sees it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_changes_reach_cached_callers_on_every_replica() {
    let Some(urls) =
        common::services_or_skip("role_changes_reach_cached_callers_on_every_replica").await
    else {
        return;
    };
    let shared = common::Shared::services(&urls).await;
    let cached = |mut c: aurum::config::Config| {
        c.auth_cache_ms = 30_000;
        c
    };
    let a = TestServer::start(cached(shared.config(Some(&urls)))).await;
    let b = TestServer::start(cached(shared.config(Some(&urls)))).await;
    let made = b
        .ok(
            "mutation { createUser(input: { username: \"operator1\", password: \"a long password!\", role: OPERATOR }) { id } }",
            json!({}),
        )
        .await;
    let id = made["createUser"]["id"].as_str().unwrap().to_owned();
    let token = a.login("operator1", "a long password!").await;
    // Both replicas now hold the operator in their caches.
    for s in [&a, &b] {
        let (_, _, body, _) = post(s, Some(&token), CREATE, json!({ "t": "allowed" })).await;
        assert!(body.get("errors").is_none(), "{body}");
    }
    b.ok(
        "mutation($id: ID!) { setUserRole(id: $id, role: OBSERVER) { id } }",
        json!({ "id": id }),
    )
    .await;
    let (_, _, body, _) = post(&b, Some(&token), CREATE, json!({ "t": "same replica" })).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    let started = Instant::now();
    loop {
        let (_, _, body, _) = post(&a, Some(&token), CREATE, json!({ "t": "other replica" })).await;
        if error_code(&body) == "FORBIDDEN" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "replica a still used the cached role after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "other replica saw the role change after {:?}",
        started.elapsed()
    );
    a.stop().await;
    b.stop().await;
    shared.cleanup().await;
}
