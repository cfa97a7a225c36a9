//! Standalone migration CLI (`cargo run -p migration -- up`); `aurum migrate` does the same.
use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
