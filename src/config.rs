//! Typed configuration: every setting is a flag and an `AURUM_*` environment variable, with
//! its default and effect documented here (the README's configuration table mirrors this).
//! Secrets are wrapped so they never reach a log line; this module does no I/O.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};
use secrecy::SecretString;

use crate::{dlq::queues::QueueSet, rate_limit::ActionQuotas};

/// Settings for `aurum serve` (and, in part, for `aurum migrate` / `aurum schema`).
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP/WebSocket server binds to.
    #[arg(long, env = "AURUM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH?mode=rwc` (embedded) or `postgres://…` (production).
    #[arg(long, env = "AURUM_DATABASE_URL", default_value = "sqlite://aurum.db?mode=rwc", value_parser = parse_database_url)]
    pub database_url: ServiceUrl,

    /// Maximum database connections in the pool.
    #[arg(long, env = "AURUM_DATABASE_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// Run pending migrations when `serve` starts.
    #[arg(long, env = "AURUM_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Redis URL (`redis://…`): per-caller rate-limit buckets shared by every replica; unset =
    /// each replica holds them in process. Login lockouts and idempotency are in the database.
    #[arg(long, env = "AURUM_REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<ServiceUrl>,

    /// Prefix of every Redis key this instance writes (`<prefix>:<domain>:<purpose>:<id>`).
    #[arg(long, env = "AURUM_REDIS_KEY_PREFIX", default_value = "aurum", value_parser = parse_prefix)]
    pub redis_key_prefix: String,

    /// NATS URL (`nats://…`); unset = in-process event bus (single replica only).
    #[arg(long, env = "AURUM_NATS_URL", value_parser = parse_nats_url)]
    pub nats_url: Option<ServiceUrl>,

    /// First token of every NATS subject (`<prefix>.<domain>.<id>.<event>`).
    #[arg(long, env = "AURUM_NATS_SUBJECT_PREFIX", default_value = "aurum", value_parser = parse_prefix)]
    pub nats_subject_prefix: String,

    /// Docker endpoint (`unix:///var/run/docker.sock`, `tcp://…`); falls back to `DOCKER_HOST`,
    /// then the default socket. Unreachable = sandbox disabled, reported on `/ready`.
    #[arg(long, env = "AURUM_DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// Sandbox runs: runtime, pool, languages, limits (`AURUM_SANDBOX_*`).
    #[command(flatten)]
    pub sandbox: crate::sandbox::config::SandboxConfig,

    /// Password of the first admin (`admin`), used only when no user exists yet; unset =
    /// generated and printed once.
    #[arg(long, env = "AURUM_ADMIN_PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub admin_password: Option<SecretString>,

    /// Secret (at least 32 bytes) that signs access tokens (HS256). Every replica needs the
    /// same one; unset = a random secret per process (tokens die with it), refused when
    /// AURUM_NATS_URL is set.
    #[arg(long, env = "AURUM_JWT_SECRET", hide_env_values = true, value_parser = parse_jwt_secret)]
    pub jwt_secret: Option<SecretString>,

    /// Signing algorithm of access tokens: `HS256` (AURUM_JWT_SECRET), `EdDSA` or `RS256`
    /// (AURUM_JWT_PRIVATE_KEY_FILE + AURUM_JWT_PUBLIC_KEY_FILES). Tokens with any other
    /// algorithm are refused.
    #[arg(long, env = "AURUM_JWT_ALGORITHM", default_value = "HS256")]
    pub jwt_algorithm: JwtAlgorithm,

    /// PEM private key that signs access tokens (EdDSA: Ed25519 PKCS#8; RS256: RSA).
    #[arg(long, env = "AURUM_JWT_PRIVATE_KEY_FILE")]
    pub jwt_private_key_file: Option<PathBuf>,

    /// PEM public keys accepted on presented tokens (comma-separated): the signing key's own
    /// and any being rotated out. Each is named by a `kid` derived from the file's content.
    #[arg(long, env = "AURUM_JWT_PUBLIC_KEY_FILES", value_delimiter = ',')]
    pub jwt_public_key_files: Vec<PathBuf>,

    /// `iss` claim of issued tokens, required on presented ones.
    #[arg(long, env = "AURUM_JWT_ISSUER", default_value = "aurum")]
    pub jwt_issuer: String,

    /// `aud` claim of issued tokens, required on presented ones.
    #[arg(long, env = "AURUM_JWT_AUDIENCE", default_value = "aurum")]
    pub jwt_audience: String,

    /// How long an authenticated caller (role, tenant, state) is reused for the same token or
    /// API key, in milliseconds; 0 = read the database on every request. Logout, role
    /// changes, disabling and key revocation evict at once on every replica (through the
    /// event bus); this only bounds the effect of a lost event.
    #[arg(long, env = "AURUM_AUTH_CACHE_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub auth_cache_ms: u64,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "AURUM_ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub access_token_ttl_seconds: u64,

    /// Lifetime of a refresh token, in seconds.
    #[arg(long, env = "AURUM_REFRESH_TOKEN_TTL_SECONDS", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    pub refresh_token_ttl_seconds: u64,

    /// Log format: `json` (one object per line) or `text`.
    #[arg(long, env = "AURUM_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Folder holding the npm-installed GraphiQL assets (`web/node_modules` after `npm ci --prefix web`).
    /// A relative path is looked for in the working directory, next to the binary, then in
    /// the checkout the binary was built from.
    #[arg(
        long,
        env = "AURUM_GRAPHIQL_ASSETS",
        default_value = "web/node_modules"
    )]
    pub graphiql_assets: PathBuf,

    /// Folder holding the built ops console (`console/dist` after `npm ci --prefix console &&
    /// npm run --prefix console build`), served at `/console`. A relative path is looked for
    /// like the GraphiQL assets.
    #[arg(long, env = "AURUM_CONSOLE_ASSETS", default_value = "console/dist")]
    pub console_assets: PathBuf,

    /// Largest `first` a connection accepts; larger values are clamped down.
    #[arg(long, env = "AURUM_MAX_PAGE_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_page_size: u64,

    /// Events buffered per replica for local subscribers; a subscriber further behind is dropped.
    #[arg(long, env = "AURUM_EVENT_BUFFER", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pub event_buffer: u64,

    /// Hours events are kept for subscribers resuming with a cursor (in the JetStream stream
    /// with NATS, in the outbox table without); an older cursor gets `CURSOR_EXPIRED`.
    #[arg(long, env = "AURUM_EVENT_RETENTION_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub event_retention_hours: u64,

    /// Milliseconds between a replica's looks for outbox rows no relay has taken (those of a
    /// replica that died between commit and relay); its own commits wake its relay at once.
    #[arg(long, env = "AURUM_OUTBOX_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub outbox_poll_ms: u64,

    /// Test hook: milliseconds an outbox row must wait before this replica relays it (0 in
    /// production). Set high on one replica, it holds that replica's events between commit
    /// and relay, so a test can kill it there and watch another replica relay them.
    #[arg(long, env = "AURUM_OUTBOX_RELAY_DELAY_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub outbox_relay_delay_ms: u64,

    /// Work queues: comma-separated names with the default rules (5 deliveries, 30 s ack
    /// wait, backoff 1 s, 5 s, 30 s, 2 min), or a JSON array of `{"name", "maxDeliver",
    /// "ackWaitSeconds", "backoffSeconds"}`.
    #[arg(long, env = "AURUM_QUEUES", default_value = QueueSet::DEFAULT, value_parser = QueueSet::from_str)]
    pub queues: QueueSet,

    /// Hours JetStream keeps a task message (`max_age` of the task stream). Must exceed the
    /// longest life a message can have in any queue (maxDeliver × (ackWait + longest
    /// backoff)), or a message could age out before it is done or dead-lettered: start-up
    /// refuses a shorter one.
    #[arg(long, env = "AURUM_QUEUE_RETENTION_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub queue_retention_hours: u64,

    /// Milliseconds between a replica's queue housekeeping passes: dead-lettering deliveries
    /// whose last attempt lapsed, sweeping settled rows, publishing the queue gauges (every
    /// fifth pass), and looking for DLQ redrives to run or take over.
    #[arg(long, env = "AURUM_QUEUE_REAP_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub queue_reap_interval_ms: u64,

    /// This replica's name in `activeSubscriptions`; the host name when unset.
    #[arg(long, env = "AURUM_REPLICA_ID", default_value = "")]
    pub replica_id: String,

    /// How long a DataLoader batch stays open after its first key, in milliseconds. Nested
    /// fields requested within this window load in one query.
    #[arg(long, env = "AURUM_DATALOADER_DELAY_MS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub dataloader_delay_ms: u64,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "AURUM_MAX_BODY_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1024..=67_108_864))]
    pub max_body_bytes: u64,

    /// Deepest selection nesting a GraphQL document may have.
    #[arg(long, env = "AURUM_QUERY_DEPTH_LIMIT", default_value_t = 12, value_parser = clap::value_parser!(u64).range(2..=256))]
    pub query_depth_limit: u64,

    /// Largest complexity (fields, multiplied by page sizes) a GraphQL document may have.
    #[arg(long, env = "AURUM_QUERY_COMPLEXITY_LIMIT", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub query_complexity_limit: u64,

    /// Fields a document may expand to, counting every fragment spread in full.
    #[arg(long, env = "AURUM_QUERY_MAX_SELECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub query_max_selections: u64,

    /// Aliases a document may use.
    #[arg(long, env = "AURUM_QUERY_MAX_ALIASES", default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub query_max_aliases: u64,

    /// "Did you mean …" hints in validation errors (they reveal field names).
    #[arg(long, env = "AURUM_QUERY_SUGGESTIONS", default_value_t = false, action = clap::ArgAction::Set)]
    pub query_suggestions: bool,

    /// Requests per second one client address may send to `/graphql` (sustained), at the edge
    /// of each replica.
    #[arg(long, env = "AURUM_HTTP_RATE_PER_SECOND", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub http_rate_per_second: u64,

    /// Requests one client address may send to `/graphql` in a burst.
    #[arg(long, env = "AURUM_HTTP_RATE_BURST", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_rate_burst: u32,

    /// Per-caller limits (per user or API key; per client address when anonymous), as
    /// `action=COUNT/PERIOD[:BURST]` or `action=off`, comma-separated; unnamed actions keep
    /// their defaults. Actions: `login` (attempts per client address), `cost` (fields an
    /// operation expands to), `mutation` (root mutation fields), `sandbox` (runs started).
    /// Held in Redis when AURUM_REDIS_URL is set (shared by every replica), else in process.
    #[arg(long, env = "AURUM_RATE_LIMITS", default_value = ActionQuotas::DEFAULT, value_parser = ActionQuotas::from_str)]
    pub rate_limits: ActionQuotas,

    /// Reverse proxies (comma-separated addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed: the client is the right-most address in that header not in this list. Empty =
    /// the TCP peer is the client and the header is ignored.
    #[arg(long, env = "AURUM_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// argon2id memory per password hash, in KiB. Stored hashes made with other parameters
    /// are re-hashed at the user's next successful login.
    #[arg(long, env = "AURUM_ARGON2_MEMORY_KIB", default_value_t = 19_456, value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    pub argon2_memory_kib: u32,

    /// argon2id passes per password hash.
    #[arg(long, env = "AURUM_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub argon2_iterations: u32,

    /// Failed logins per (username, client address) before each further failure locks that
    /// pair out for a doubling time (1 s, 2 s, 4 s … up to 15 min).
    #[arg(long, env = "AURUM_LOGIN_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub login_max_failures: u32,

    /// Origins allowed to call the API from a browser (comma-separated, exact match, e.g.
    /// `https://ops.example.com`); also checked on WebSocket upgrades. Empty = same origin only.
    #[arg(
        long,
        env = "AURUM_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_origins: Vec<String>,

    /// Answer introspection queries (`__schema`, `__type`); GraphiQL needs it.
    #[arg(long, env = "AURUM_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspection: bool,

    /// WebSocket read buffer per connection, in bytes (tungstenite's default is 128 KiB). What
    /// clients send is small (`connection_init`, subscribe documents) and a larger frame grows
    /// the buffer as it is read; at 4096 the buffer was ~3 of the 18 KiB each idle socket cost
    /// at 10,000 subscribers (issue 21), at 512 the total is ~15 KiB.
    #[arg(long, env = "AURUM_WS_READ_BUFFER_BYTES", default_value_t = 512, value_parser = clap::value_parser!(u64).range(512..=1_048_576))]
    pub ws_read_buffer_bytes: u64,

    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "AURUM_WS_MAX_MESSAGE_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub ws_max_message_bytes: u64,

    /// Seconds between server pings on idle WebSockets.
    #[arg(long, env = "AURUM_WS_KEEPALIVE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_keepalive_seconds: u64,

    /// Seconds a new WebSocket has to send `connection_init` before it is closed with 4408.
    #[arg(long, env = "AURUM_WS_INIT_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub ws_init_timeout_seconds: u64,

    /// Operations (subscriptions) one WebSocket may run at once; one more closes it with 4429.
    #[arg(long, env = "AURUM_WS_MAX_OPERATIONS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub ws_max_operations: u64,

    /// WebSockets one client address may hold open on a replica (more are refused with 429).
    #[arg(long, env = "AURUM_WS_MAX_PER_ADDRESS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_max_per_address: u32,

    /// WebSockets one user or API key may hold open on a replica (more are closed with 4429).
    #[arg(long, env = "AURUM_WS_MAX_PER_USER", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_max_per_user: u32,

    /// Milliseconds between budget sweeps (expiring reservations past their TTL, starting new
    /// period windows, dropping old idempotency keys); every replica sweeps.
    #[arg(long, env = "AURUM_BUDGET_SWEEP_INTERVAL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub budget_sweep_interval_ms: u64,

    /// Milliseconds between sweeps that expire learning updates nobody approved in time
    /// (their rule's `approvalExpiryHours`); every replica sweeps.
    #[arg(long, env = "AURUM_LEARNING_EXPIRY_INTERVAL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub learning_expiry_interval_ms: u64,

    /// Seconds from SIGTERM until the process exits at the latest: the drain delay, then
    /// in-flight requests, WebSockets and background work get the rest; what is still open
    /// then is dropped.
    #[arg(long, env = "AURUM_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub shutdown_timeout_seconds: u64,

    /// Seconds between SIGTERM and closing the listener. Meanwhile `/ready` answers 503 and
    /// everything else is served as before, so a load balancer (or Kubernetes' endpoint
    /// removal) takes the replica out of rotation before connections are refused. Set it to
    /// the balancer's health-check interval × its failure threshold, plus a margin; must be
    /// shorter than `AURUM_SHUTDOWN_TIMEOUT_SECONDS`. 0: stop at once (local runs).
    #[arg(long, env = "AURUM_SHUTDOWN_DRAIN_SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_drain_seconds: u64,
}

impl Config {
    /// The configuration from `AURUM_*` environment variables alone (no flags), with defaults
    /// for everything unset. Tests start from this and override what they need.
    pub fn from_env() -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches, Parser};
        #[derive(Parser)]
        #[command(no_binary_name = true)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let matches = Wrapper::command().try_get_matches_from(Vec::<String>::new())?;
        Ok(Wrapper::from_arg_matches(&matches)?.config)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }

    /// `AURUM_SHUTDOWN_DRAIN_SECONDS`, checked to leave time for the rest of the shutdown.
    pub fn shutdown_drain(&self) -> anyhow::Result<Duration> {
        if self.shutdown_drain_seconds >= self.shutdown_timeout_seconds {
            anyhow::bail!(
                "AURUM_SHUTDOWN_DRAIN_SECONDS ({} s) must be shorter than AURUM_SHUTDOWN_TIMEOUT_SECONDS ({} s): the drain counts toward the shutdown timeout",
                self.shutdown_drain_seconds,
                self.shutdown_timeout_seconds
            );
        }
        Ok(Duration::from_secs(self.shutdown_drain_seconds))
    }

    pub fn ws_init_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_init_timeout_seconds)
    }

    /// The bus settings this configuration names.
    pub fn bus_options(&self) -> crate::infra::event_bus::BusOptions {
        crate::infra::event_bus::BusOptions {
            capacity: usize::try_from(self.event_buffer).unwrap_or(1024),
            retention: Duration::from_secs(self.event_retention_hours * 3600),
            poll: Duration::from_millis(self.outbox_poll_ms),
            relay_delay: Duration::from_millis(self.outbox_relay_delay_ms),
        }
    }

    /// `AURUM_QUEUE_RETENTION_HOURS`, checked against the longest life of a message.
    pub fn queue_retention(&self) -> anyhow::Result<Duration> {
        let retention = Duration::from_secs(self.queue_retention_hours * 3600);
        for q in self.queues.iter() {
            let longest = q.backoff_seconds.iter().copied().max().unwrap_or(0);
            let life = u64::from(q.max_deliver) * (q.ack_wait_seconds + longest);
            if Duration::from_secs(life) >= retention {
                anyhow::bail!(
                    "AURUM_QUEUE_RETENTION_HOURS ({} h) is shorter than queue {}'s longest message life ({life} s = maxDeliver × (ackWait + longest backoff)); raise it",
                    self.queue_retention_hours,
                    q.name
                );
            }
        }
        Ok(retention)
    }

    /// This replica's name: `AURUM_REPLICA_ID`, else the host name, else `aurum`.
    pub fn replica_name(&self) -> String {
        if !self.replica_id.is_empty() {
            return self.replica_id.clone();
        }
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "aurum".into())
    }

    pub fn ws_keepalive(&self) -> Duration {
        Duration::from_secs(self.ws_keepalive_seconds)
    }

    /// `true` when the database URL names SQLite (the embedded profile).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }
}

/// Signing algorithm of access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "EdDSA")]
    EdDsa,
    #[value(name = "RS256")]
    Rs256,
}

/// `10.0.0.0/8` or a single address.
fn parse_net(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{value:?} is not an address or CIDR range"))
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// A service URL that may carry a password: `Display`/`Debug` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceUrl(String);

impl ServiceUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, for handing to a client library. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // set_password only fails for URLs that cannot have one, excluded above.
                let _ = url.set_password(Some("***"));
                f.write_str(url.as_str())
            }
            _ => f.write_str(&self.0),
        }
    }
}

impl fmt::Debug for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceUrl({self})")
    }
}

fn parse_with_schemes(value: &str, schemes: &[&str]) -> Result<ServiceUrl, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "scheme `{}` is not one of: {}",
            url.scheme(),
            schemes.join(", ")
        ));
    }
    Ok(ServiceUrl(value.to_owned()))
}

fn parse_database_url(value: &str) -> Result<ServiceUrl, String> {
    parse_with_schemes(value, &["sqlite", "postgres", "postgresql"])
}

fn parse_redis_url(value: &str) -> Result<ServiceUrl, String> {
    parse_with_schemes(value, &["redis", "rediss"])
}

fn parse_nats_url(value: &str) -> Result<ServiceUrl, String> {
    parse_with_schemes(value, &["nats", "tls"])
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(value.to_owned()))
}

fn parse_jwt_secret(value: &str) -> Result<SecretString, String> {
    if value.len() < 32 {
        return Err("must be at least 32 bytes".into());
    }
    Ok(SecretString::from(value.to_owned()))
}

fn parse_prefix(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err("use 1-64 characters from [A-Za-z0-9_-]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_profile() {
        let Ok(c) = Config::from_env() else {
            panic!("defaults must parse")
        };
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.is_sqlite());
        assert!(c.redis_url.is_none() && c.nats_url.is_none());
        assert!(c.migrate_on_start);
    }

    #[test]
    fn urls_hide_passwords() {
        let url = ServiceUrl::new("postgres://bob:hunter2@db/aurum");
        assert_eq!(url.to_string(), "postgres://bob:***@db/aurum");
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn bad_schemes_are_refused() {
        assert!(parse_redis_url("http://x").is_err());
        assert!(parse_database_url("mysql://x").is_err());
        assert!(parse_nats_url("nats://127.0.0.1:4222").is_ok());
        assert!(parse_prefix("a.b").is_err());
    }
}
