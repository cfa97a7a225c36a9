//! Assembly: connects to what `Config` names, migrates, builds the services, the schema and
//! the transports' state, and returns the `AppState` the server runs on. The top of the
//! dependency graph: it may use every module; nothing but `main`, `lib` and tests use it.

use std::sync::Arc;

use async_graphql::ValidationMode;
use migration::MigratorTrait;
use tokio_util::task::TaskTracker;

use crate::{
    audit::AuditService,
    auth::{
        service::{Bootstrap, UserService},
        sessions::LiveSessions,
        token::TokenKeys,
    },
    breaker::{
        Dependency,
        service::{BreakerService, guard_of},
    },
    budget::service::BudgetService,
    config::{Config, JwtAlgorithm},
    dlq::{capture::Consequences, jetstream::JetQueues, service::DlqService, work::QueueService},
    events::Bus,
    governance::service::GovernanceService,
    graphql::{SchemaLimits, build_schema, executor::ObservedSchema},
    infra::{self, shutdown::Shutdown, work_queue::WorkQueues},
    llm::service::LlmService,
    rate_limit::{ActionLimiter, EdgeLimit},
    sandbox::service::SandboxService,
    server::{
        AppState, Inner, console::ConsoleAssets, feed::SubscriptionHub, graphiql::GraphiqlAssets,
        ws_caps::Slots,
    },
    services::Services,
    subscriptions::{Registry, SubscriptionAdmin},
    task::service::TaskService,
};

/// Signing keys from configuration. Without a configured secret a random one is used, which
/// only works for a single replica (tokens from one replica fail on another).
fn token_keys(config: &Config) -> anyhow::Result<TokenKeys> {
    use secrecy::ExposeSecret;
    let ttl = std::time::Duration::from_secs(config.access_token_ttl_seconds);
    let algorithm = match config.jwt_algorithm {
        JwtAlgorithm::Hs256 => None,
        JwtAlgorithm::EdDsa => Some(jsonwebtoken::Algorithm::EdDSA),
        JwtAlgorithm::Rs256 => Some(jsonwebtoken::Algorithm::RS256),
    };
    if let Some(algorithm) = algorithm {
        let Some(private) = &config.jwt_private_key_file else {
            anyhow::bail!(
                "AURUM_JWT_PRIVATE_KEY_FILE: required when AURUM_JWT_ALGORITHM is {algorithm:?}"
            );
        };
        if config.jwt_public_key_files.is_empty() {
            anyhow::bail!(
                "AURUM_JWT_PUBLIC_KEY_FILES: required when AURUM_JWT_ALGORITHM is {algorithm:?}"
            );
        }
        let private_pem = std::fs::read(private).map_err(|e| {
            anyhow::anyhow!("AURUM_JWT_PRIVATE_KEY_FILE ({}): {e}", private.display())
        })?;
        let public_pems = config
            .jwt_public_key_files
            .iter()
            .map(|p| {
                std::fs::read(p).map_err(|e| {
                    anyhow::anyhow!("AURUM_JWT_PUBLIC_KEY_FILES ({}): {e}", p.display())
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return TokenKeys::asymmetric(
            algorithm,
            &private_pem,
            &public_pems,
            &config.jwt_issuer,
            &config.jwt_audience,
            ttl,
        )
        .map_err(|e| {
            anyhow::anyhow!("AURUM_JWT_PRIVATE_KEY_FILE / AURUM_JWT_PUBLIC_KEY_FILES: {e}")
        });
    }
    let secret = match &config.jwt_secret {
        Some(s) => s.expose_secret().as_bytes().to_vec(),
        None if config.nats_url.is_some() => anyhow::bail!(
            "AURUM_JWT_SECRET: required when AURUM_NATS_URL is set (every replica must verify every token)"
        ),
        None => {
            use rand::RngCore;
            tracing::warn!(
                "AURUM_JWT_SECRET unset: tokens are signed with a per-process key and end with it"
            );
            let mut bytes = vec![0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            bytes
        }
    };
    Ok(TokenKeys::hs256(
        &secret,
        &config.jwt_issuer,
        &config.jwt_audience,
        ttl,
    ))
}

impl AppState {
    /// Connects to everything the configuration names, migrates (when configured), creates
    /// the first admin if there is no user, and assembles the services and the schema.
    pub async fn build(config: Config) -> anyhow::Result<(Self, Bootstrap)> {
        let metrics = crate::telemetry::metrics_handle();
        config.shutdown_drain()?;
        let (db, statements) = infra::db::connect(&config).await?;
        if config.migrate_on_start {
            migration::Migrator::up(&db, None)
                .await
                .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
        }
        let redis = match &config.redis_url {
            Some(url) => Some(infra::redis::connect(url).await?),
            None => None,
        };
        let shutdown = Shutdown::new();
        let (guards, breaker_transitions) = BreakerService::dependency_guards();
        let capacity = usize::try_from(config.event_buffer).unwrap_or(1024);
        let (nats, bus) = match &config.nats_url {
            Some(url) => {
                let client = infra::nats::connect(url).await?;
                let bus = Bus::jetstream(
                    db.clone(),
                    client.clone(),
                    &config.nats_subject_prefix,
                    config.bus_options(),
                    Some(guard_of(&guards, Dependency::Nats)),
                    shutdown.clone(),
                );
                (Some(client), bus)
            }
            None => (
                None,
                Bus::database(db.clone(), config.bus_options(), shutdown.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("reading the event outbox: {e}"))?,
            ),
        };
        let docker = infra::docker::connect(config.docker_host.as_deref()).await;
        let keys = Arc::new(token_keys(&config)?);
        let users = UserService::new(
            db.clone(),
            keys,
            config.refresh_token_ttl_seconds,
            bus.clone(),
        )
        .with_max_failures(config.login_max_failures)
        .with_auth_cache(std::time::Duration::from_millis(config.auth_cache_ms))
        .with_hashing(crate::auth::password::Hashing::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
        )?);
        let breakers = BreakerService::new(
            db.clone(),
            bus.clone(),
            config.replica_name(),
            redis
                .clone()
                .map(|conn| (conn, config.redis_key_prefix.clone())),
            guards.clone(),
        );
        breakers
            .load()
            .await
            .map_err(|e| anyhow::anyhow!("reading the circuit breakers: {e:?}"))?;
        let limits = Arc::new(ActionLimiter::new(
            config.rate_limits.clone(),
            redis
                .clone()
                .map(|conn| (conn, config.redis_key_prefix.clone())),
            Some(breakers.guard(Dependency::Redis)),
        ));
        let bootstrap = users
            .ensure_first_admin(config.admin_password.as_ref())
            .await?;
        let tasks = TaskService::new(db.clone(), bus.clone());
        let governance = GovernanceService::new(db.clone(), bus.clone());
        governance
            .seed()
            .await
            .map_err(|e| anyhow::anyhow!("seeding the governance rules: {e:?}"))?;
        let budgets = BudgetService::new(db.clone(), bus.clone());
        let jetstream = match &nats {
            Some(client) => {
                let js = JetQueues::new(
                    WorkQueues::new(client.clone(), &config.nats_subject_prefix)
                        .with_guard(guard_of(&guards, Dependency::Nats)),
                    &config.queues.iter().cloned().collect::<Vec<_>>(),
                    config.queue_retention()?,
                );
                if client.connection_state() == async_nats::connection::State::Connected {
                    // Reachable: a declaration JetStream refuses stops start-up, naming it.
                    js.declare()
                        .await
                        .map_err(|e| anyhow::anyhow!("declaring the JetStream work queues: {e}"))?;
                }
                Some(js)
            }
            None => None,
        };
        let dlq = DlqService::new(
            QueueService::new(
                db.clone(),
                bus.clone(),
                config.queues.clone(),
                Consequences::new(tasks.clone(), budgets.clone(), bus.clone()),
                jetstream,
            ),
            tasks.clone(),
        );
        config.sandbox.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        let sandbox = SandboxService::new(db.clone(), bus.clone(), config.sandbox.clone());
        {
            let (client, why) = match &docker {
                infra::docker::DockerState::Connected(d) => (Some(d.clone()), None),
                infra::docker::DockerState::Unavailable(why)
                | infra::docker::DockerState::Disabled(why) => (None, Some(why.clone())),
            };
            crate::sandbox::runner::spawn(
                sandbox.clone(),
                client,
                why,
                guard_of(&guards, Dependency::Docker),
                config.replica_name(),
                shutdown.clone(),
            );
        }
        let services = Services {
            tasks,
            users,
            budgets,
            audit: AuditService::new(db.clone()),
            dlq,
            breakers,
            governance,
            llm: LlmService::new(db.clone()),
            sandbox,
            subscriptions: SubscriptionAdmin::new(
                Registry::new(config.replica_name()),
                nats.clone()
                    .map(|client| (client, config.nats_subject_prefix.clone())),
                db.clone(),
                bus.clone(),
            ),
            bus,
            limits: Arc::clone(&limits),
            max_page_size: config.max_page_size,
        };
        let schema_limits = SchemaLimits {
            depth: usize::try_from(config.query_depth_limit).unwrap_or(12),
            complexity: usize::try_from(config.query_complexity_limit).unwrap_or(20_000),
            introspection: config.introspection,
            suggestions: config.query_suggestions,
            dataloader_delay: std::time::Duration::from_millis(config.dataloader_delay_ms),
        };
        let schema = ObservedSchema::new(
            build_schema(services.clone(), schema_limits, ValidationMode::Strict),
            build_schema(services.clone(), schema_limits, ValidationMode::Fast),
            crate::graphql::limits::DocumentLimits {
                max_selections: config.query_max_selections,
                max_aliases: config.query_max_aliases,
                pages: crate::graphql::limits::PageSizes {
                    default: crate::graphql::context::DEFAULT_PAGE_SIZE.min(config.max_page_size),
                    max: config.max_page_size,
                },
            },
            Arc::clone(&limits),
        );
        services.subscriptions.spawn_responder(shutdown.clone());
        let subscriptions = Arc::new(SubscriptionHub::new(
            schema.clone(),
            capacity,
            Arc::clone(services.subscriptions.registry()),
        ));
        let sessions = Arc::new(LiveSessions::default());
        Arc::clone(&sessions).spawn_listener(
            services.bus.clone(),
            services.users.auth_cache(),
            shutdown.clone(),
        );
        let edge = EdgeLimit::new(
            config.http_rate_per_second,
            config.http_rate_burst,
            &config.trusted_proxies,
        )?;
        {
            let edge = edge.clone();
            let limits = Arc::clone(&limits);
            let stop = shutdown.clone();
            shutdown.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {
                            edge.forget_idle();
                            limits.forget_idle();
                        }
                    }
                }
            });
        }
        crate::idempotency::spawn_sweeper(
            db.clone(),
            crate::idempotency::SWEEP_EVERY,
            shutdown.clone(),
        );
        crate::budget::sweeper::spawn(
            services.budgets.clone(),
            std::time::Duration::from_millis(config.budget_sweep_interval_ms),
            shutdown.clone(),
        );
        crate::breaker::spawn(
            services.breakers.clone(),
            breaker_transitions,
            shutdown.clone(),
        );
        crate::governance::spawn_expiry(
            services.governance.clone(),
            std::time::Duration::from_millis(config.learning_expiry_interval_ms),
            shutdown.clone(),
        );
        let housekeeping = std::time::Duration::from_millis(config.queue_reap_interval_ms);
        crate::dlq::spawn_reaper(services.dlq.clone(), housekeeping, shutdown.clone());
        services.dlq.queues().spawn_capture(shutdown.clone());
        crate::dlq::redrive::spawn(
            services.dlq.clone(),
            config.replica_name(),
            housekeeping,
            shutdown.clone(),
        );
        let ws_per_address = Slots::new(config.ws_max_per_address);
        let ws_per_user = Slots::new(config.ws_max_per_user);
        let graphiql = GraphiqlAssets::load(&config.graphiql_assets);
        let console = ConsoleAssets::load(&config.console_assets);
        let state = Self::new(Inner {
            config,
            db,
            statements,
            redis,
            nats,
            docker,
            services,
            schema,
            subscriptions,
            sessions,
            edge,
            ws_per_address,
            ws_per_user,
            metrics,
            graphiql,
            console,
            shutdown,
            ws_tracker: TaskTracker::new(),
        });
        Ok((state, bootstrap))
    }
}
