//! The shared idempotency module (`aurum::idempotency`) against both real databases, without
//! a server: claim, replay, reuse with another input, a call still in flight, rollback, giving
//! a key back, and expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use aurum::{
    auth::{Caller, Principal, permission::Role},
    error::AppError,
    idempotency::{self, Key},
    infra::db,
};
use common::{Profile, Shared};
use migration::MigratorTrait;
use sea_orm::DatabaseConnection;
use serde_json::json;

both_profiles!(
    claims_replay_and_refuse,
    rollback_and_release_give_the_key_back,
    expired_keys_are_swept
);

/// A migrated database of the profile's kind, and what to clean up.
async fn database(profile: Profile, test: &str) -> Option<(DatabaseConnection, Shared)> {
    let shared = match profile {
        Profile::Embedded => Shared::embedded(),
        Profile::Services => Shared::services(&common::services_or_skip(test).await?).await,
    };
    let config = shared.config(None);
    let (conn, _) = db::connect(&config).await.expect("connect");
    migration::Migrator::up(&conn, None).await.expect("migrate");
    Some((conn, shared))
}

fn user(n: u128) -> Caller {
    Caller::User {
        id: uuid::Uuid::from_u128(n),
        username: format!("user{n}"),
        role: Role::Developer,
        tenant: None,
        token: None,
        principal: Principal::Person,
    }
}

fn code<T>(r: Result<T, AppError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().into(),
    }
}

async fn claims_replay_and_refuse(profile: Profile, name: &str) {
    let Some((conn, shared)) = database(profile, name).await else {
        return;
    };
    let now = chrono::Utc::now();
    let key = Key::new(&user(1), "r-1", "testOp", &json!({ "amount": 5 })).unwrap();

    // First call: no previous answer; the answer stored with the key commits with it.
    let txn = db::begin_write(&conn).await.unwrap();
    let first: Option<Vec<String>> = idempotency::claim(&txn, &key, None, now).await.unwrap();
    assert_eq!(first, None);
    idempotency::store(&txn, &key, &vec!["answer".to_owned(), "é\"\n".to_owned()])
        .await
        .unwrap();
    txn.commit().await.unwrap();

    // Same key, same input: the stored answer, whatever the new call would have answered.
    let txn = db::begin_write(&conn).await.unwrap();
    let replay = idempotency::claim(&txn, &key, Some(&vec!["other".to_owned()]), now)
        .await
        .unwrap();
    assert_eq!(replay, Some(vec!["answer".to_owned(), "é\"\n".to_owned()]));
    drop(txn);

    // Same key, another input: refused.
    let other = Key::new(&user(1), "r-1", "testOp", &json!({ "amount": 6 })).unwrap();
    let txn = db::begin_write(&conn).await.unwrap();
    let reused = idempotency::claim::<Vec<String>>(&txn, &other, None, now).await;
    assert_eq!(code(reused), "IDEMPOTENCY_KEY_REUSED");
    drop(txn);
    // Another operation under the same key is another input too.
    let op = Key::new(&user(1), "r-1", "otherOp", &json!({ "amount": 5 })).unwrap();
    let txn = db::begin_write(&conn).await.unwrap();
    let reused = idempotency::claim::<Vec<String>>(&txn, &op, None, now).await;
    assert_eq!(code(reused), "IDEMPOTENCY_KEY_REUSED");
    drop(txn);

    // Keys are per caller: another caller's same request id is a first call.
    let theirs = Key::new(&user(2), "r-1", "testOp", &json!({ "amount": 5 })).unwrap();
    let txn = db::begin_write(&conn).await.unwrap();
    let fresh = idempotency::claim(&txn, &theirs, Some(&1_i64), now)
        .await
        .unwrap();
    assert_eq!(fresh, None);
    txn.commit().await.unwrap();

    // In flight: a second call while the first transaction holds the key. PostgreSQL answers
    // IDEMPOTENCY_IN_PROGRESS at once; SQLite's second writer waits for the first and replays.
    let flight = Key::new(&user(3), "r-2", "testOp", &json!({})).unwrap();
    let first = db::begin_write(&conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&first, &flight, Some(&7_i64), now)
            .await
            .unwrap(),
        None
    );
    match profile {
        Profile::Services => {
            let second = db::begin_write(&conn).await.unwrap();
            let started = std::time::Instant::now();
            let busy = idempotency::claim::<i64>(&second, &flight, Some(&8), now).await;
            assert_eq!(code(busy), "IDEMPOTENCY_IN_PROGRESS");
            assert!(started.elapsed() < Duration::from_secs(1), "did not wait");
            drop(second);
            first.commit().await.unwrap();
        }
        Profile::Embedded => {
            let conn2 = conn.clone();
            let flight2 = flight.clone();
            let second = tokio::spawn(async move {
                let txn = db::begin_write(&conn2).await.unwrap();
                idempotency::claim::<i64>(&txn, &flight2, Some(&8), now).await
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!second.is_finished(), "the second writer must wait");
            first.commit().await.unwrap();
            assert_eq!(second.await.unwrap().unwrap(), Some(7));
        }
    }
    // Once the first committed, everyone replays it.
    let txn = db::begin_write(&conn).await.unwrap();
    assert_eq!(
        idempotency::claim::<i64>(&txn, &flight, Some(&9), now)
            .await
            .unwrap(),
        Some(7)
    );
    drop(txn);

    conn.close().await.ok();
    shared.cleanup().await;
}

async fn rollback_and_release_give_the_key_back(profile: Profile, name: &str) {
    let Some((conn, shared)) = database(profile, name).await else {
        return;
    };
    let now = chrono::Utc::now();
    let key = Key::new(&user(1), "r-1", "testOp", &json!({})).unwrap();

    // A call that fails rolls back: nothing was stored, the key is free.
    let txn = db::begin_write(&conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&txn, &key, Some(&1_i64), now)
            .await
            .unwrap(),
        None
    );
    txn.rollback().await.unwrap();

    // A call that commits another effect gives its key back.
    let txn = db::begin_write(&conn).await.unwrap();
    assert_eq!(
        idempotency::claim::<i64>(&txn, &key, None, now)
            .await
            .unwrap(),
        None
    );
    idempotency::release(&txn, &key).await.unwrap();
    txn.commit().await.unwrap();

    // Either way a later call with the same key acts.
    let txn = db::begin_write(&conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&txn, &key, Some(&3_i64), now)
            .await
            .unwrap(),
        None
    );
    txn.commit().await.unwrap();
    let txn = db::begin_write(&conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&txn, &key, Some(&4_i64), now)
            .await
            .unwrap(),
        Some(3)
    );
    drop(txn);

    conn.close().await.ok();
    shared.cleanup().await;
}

async fn expired_keys_are_swept(profile: Profile, name: &str) {
    let Some((conn, shared)) = database(profile, name).await else {
        return;
    };
    let now = chrono::Utc::now();
    let old = now - chrono::Duration::hours(idempotency::RETENTION_HOURS + 1);
    let stale = Key::new(&user(1), "old", "testOp", &json!({})).unwrap();
    let fresh = Key::new(&user(1), "new", "testOp", &json!({})).unwrap();
    let txn = db::begin_write(&conn).await.unwrap();
    idempotency::claim(&txn, &stale, Some(&1_i64), old)
        .await
        .unwrap();
    idempotency::claim(&txn, &fresh, Some(&2_i64), now)
        .await
        .unwrap();
    txn.commit().await.unwrap();

    assert_eq!(idempotency::sweep(&conn, now).await.unwrap(), 1);
    assert_eq!(idempotency::sweep(&conn, now).await.unwrap(), 0);
    // The swept key is free again; the fresh one still replays.
    let txn = db::begin_write(&conn).await.unwrap();
    assert_eq!(
        idempotency::claim(&txn, &stale, Some(&5_i64), now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        idempotency::claim(&txn, &fresh, Some(&6_i64), now)
            .await
            .unwrap(),
        Some(2)
    );
    drop(txn);

    conn.close().await.ok();
    shared.cleanup().await;
}
