//! The `aurum` command: `serve`, `migrate up|down|status`, `schema`, `roles`, `user create` and
//! `healthcheck`.
//! It reads configuration and arguments and calls into the library; no logic of its own.

use std::process::ExitCode;

/// jemalloc rather than glibc's malloc (issue 14). With glibc, RSS was 20 MB idle but stayed at
/// 126 MB after three passes of twenty hostile requests (megabyte bodies, strings, documents)
/// and never came back: freed memory stays in glibc's per-thread arenas, and once the first
/// admin's argon2id block (19 MiB) has been freed at start, glibc's dynamic mmap threshold
/// is above 1 MiB, so body buffers come from those arenas too (with MALLOC_ARENA_MAX=1 it
/// stayed at 43 MB, with a fixed MALLOC_MMAP_THRESHOLD_ at 34 MB). jemalloc returns freed pages
/// after its 10 s decay, purged by a background thread (the `background_threads` feature) so it
/// happens once the load has stopped too: 33 MB 30 s after the same burst. Measured with
/// `cargo bench --bench aurum-bench -- h`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use aurum::{
    auth::service::Bootstrap,
    config::{Config, LogFormat},
};
use clap::{Parser, Subcommand};
use migration::MigratorTrait;
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(
    name = "aurum",
    version,
    about = "Control plane for fleets of LLM agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates first unless AURUM_MIGRATE_ON_START=false).
    Serve(Box<Config>),
    /// Apply or roll back database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the GraphQL schema (SDL), as committed in schema.graphql.
    Schema,
    /// Print the role → permission table (Markdown), as in the README.
    Roles,
    /// Manage users from the command line (bootstrapping).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Exit 0 when the local server answers 200 on `path` (the image's HEALTHCHECK: the image
    /// has no shell or curl).
    Healthcheck {
        /// The server's listen address (a wildcard address is asked on loopback).
        #[arg(long, env = "AURUM_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "/health")]
        path: String,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last `steps` migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user. The password comes from AURUM_USER_PASSWORD, or is generated and printed.
    Create {
        #[arg(long)]
        username: String,
        /// admin, operator, developer or observer.
        #[arg(long)]
        role: String,
        /// Confine the user to one tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(clap::Args)]
struct DbArgs {
    /// Database URL, as for `serve`.
    #[arg(
        long,
        env = "AURUM_DATABASE_URL",
        default_value = "sqlite://aurum.db?mode=rwc"
    )]
    database_url: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return config_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::Migrate { action, db } => migrate(action, db).await,
            Command::Schema => {
                print!("{}", aurum::graphql::sdl());
                Ok(())
            }
            Command::User { action, db } => user(action, db).await,
            Command::Healthcheck { listen, path } => healthcheck(listen, &path).await,
            Command::Roles => {
                print!("{}", aurum::auth::permission::role_table_markdown());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line naming the failing setting or step.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version print as usual; a bad setting prints one line naming the flag and its
/// environment variable.
fn config_error(err: clap::Error) -> ExitCode {
    use clap::{
        CommandFactory,
        error::{ContextKind, ContextValue, ErrorKind},
    };
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.split_whitespace().next().unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    let env = Cli::command()
        .get_subcommands()
        .flat_map(|c| c.get_arguments().cloned().collect::<Vec<_>>())
        .find(|a| a.get_long().is_some_and(|l| arg == format!("--{l}")))
        .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
    let first_line = err
        .render()
        .to_string()
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned();
    match env {
        Some(env) => eprintln!("error: {env} ({arg}): {first_line}"),
        None => eprintln!("error: {first_line}"),
    }
    ExitCode::from(2)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    aurum::telemetry::init_logging(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("AURUM_LISTEN ({}): {e}", config.listen))?;
    let text_logs = config.log_format == LogFormat::Text;
    // Purging waits for the background thread while it runs (up to ~15 s), but without it
    // the 19 MiB block of the first admin's hash is purged as soon as it is freed: off while
    // starting, so the idle figure is not 41 MB for the first 15 s.
    background_purging(false);
    let (state, bootstrap) = aurum::AppState::build(config).await?;
    background_purging(true);
    match bootstrap {
        Bootstrap::CreatedWithGenerated(password) => {
            // Printed once, to the terminal only; never logged.
            println!(
                "\n  First admin created. Username: admin  Password: {}\n  It is shown only now; store it.\n",
                password.expose_secret()
            );
            tracing::warn!("first admin created with a generated password (printed on stdout)");
        }
        Bootstrap::Created => tracing::info!("first admin created from AURUM_ADMIN_PASSWORD"),
        Bootstrap::AlreadyInitialised => {}
    }
    let addr = listener.local_addr()?;
    if text_logs {
        println!("Aurum listening on http://{addr}/graphql (GraphiQL in a browser)");
    }
    aurum::run(listener, state, shutdown_signal()).await
}

/// jemalloc's background thread, which purges freed pages after their decay even when no
/// allocation happens (without it, RSS stayed at 50 MB after the burst instead of 33 MB).
fn background_purging(on: bool) {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(on) {
        tracing::warn!(error = %e, on, "setting jemalloc's background thread");
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One `GET path` over HTTP/1.1 to the server at `listen`, within 3 s; Ok on status 200.
async fn healthcheck(mut listen: std::net::SocketAddr, path: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if listen.ip().is_unspecified() {
        listen.set_ip(match listen {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(listen).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), probe)
        .await
        .map_err(|_| anyhow::anyhow!("{listen}{path}: no answer within 3 s"))??;
    match &head {
        b"HTTP/1.1 200" => Ok(()),
        other => anyhow::bail!(
            "{listen}{path}: {}",
            String::from_utf8_lossy(other).trim_end()
        ),
    }
}

async fn migrate(action: MigrateAction, db: DbArgs) -> anyhow::Result<()> {
    let conn = sea_orm::Database::connect(&db.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("AURUM_DATABASE_URL: {e}"))?;
    match action {
        MigrateAction::Up => migration::Migrator::up(&conn, None).await?,
        MigrateAction::Down { steps } => migration::Migrator::down(&conn, Some(steps)).await?,
        MigrateAction::Status => {
            for m in migration::Migrator::get_migration_with_status(&conn).await? {
                println!("{:<40} {}", m.name(), m.status());
            }
        }
    }
    Ok(())
}

async fn user(action: UserAction, db: DbArgs) -> anyhow::Result<()> {
    use std::sync::Arc;

    use aurum::auth::{
        RequestMeta,
        permission::Role,
        service::{NewUser, UserService},
        token::TokenKeys,
    };
    let UserAction::Create {
        username,
        role,
        tenant,
    } = action;
    let role: Role = role
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--role: {e}"))?;
    let conn = sea_orm::Database::connect(&db.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("AURUM_DATABASE_URL: {e}"))?;
    migration::Migrator::up(&conn, None).await?;
    let (password, generated) = match std::env::var("AURUM_USER_PASSWORD") {
        Ok(p) => (p, false),
        Err(_) => (
            aurum::auth::password::generate().expose_secret().to_owned(),
            true,
        ),
    };
    // Only user creation is used: tokens signed with this throwaway key are never issued.
    let keys = Arc::new(TokenKeys::hs256(
        uuid::Uuid::new_v4().as_bytes(),
        "cli",
        "cli",
        std::time::Duration::from_secs(60),
    ));
    let users = UserService::new(conn.clone(), keys, 60, aurum::events::Bus::writer(conn));
    let meta = RequestMeta::system(format!("cli-{}", uuid::Uuid::now_v7()));
    let input = NewUser {
        username,
        password: secrecy::SecretString::from(password.clone()),
        role,
        tenant,
    };
    let created = users
        .create_user(&meta, input)
        .await
        .map_err(|e| anyhow::anyhow!("{} ({})", e.message(), e.code()))?;
    println!(
        "created user {} ({}) with role {}",
        created.username,
        created.id,
        Role::from(created.role).name()
    );
    if generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}
