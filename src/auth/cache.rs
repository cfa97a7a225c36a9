//! What `authenticate` concluded for a credential, kept for a short time so a client's next
//! requests skip the signature check and the lookups. Keyed by the exact bearer string: the
//! same bytes carry the same, already verified signature; the token's own expiry still
//! applies to every hit. Safe because every change that narrows a caller
//! (logout, role change, disable, key revocation) evicts the subject here on the replica that
//! made it and, through the `Identity` event, on every other replica; the time limit only
//! bounds how long a lost event could leave an entry in place.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use entity::user;
use uuid::Uuid;

use super::Caller;

/// Entries past this many are dropped all at once (a cache, never a memory leak).
const MAX_ENTRIES: usize = 50_000;

struct Entry {
    caller: Caller,
    subject: Uuid,
    at: Instant,
    /// When the credential itself expires (the token's `exp`, the API key's expiry).
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Authenticated callers by credential, and user rows by id.
pub struct AuthCache {
    ttl: Duration,
    callers: RwLock<HashMap<String, Entry>>,
    users: RwLock<HashMap<Uuid, (user::Model, Instant)>>,
}

impl AuthCache {
    /// `ttl` zero = nothing is cached.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            callers: RwLock::default(),
            users: RwLock::default(),
        }
    }

    /// The caller cached for `key` (the bearer string), if still fresh and not expired.
    pub fn caller(&self, key: &str) -> Option<Caller> {
        let map = self.callers.read().ok()?;
        let e = map.get(key)?;
        let fresh =
            e.at.elapsed() < self.ttl && e.expires_at.is_none_or(|exp| exp > crate::clock::now());
        fresh.then(|| e.caller.clone())
    }

    pub fn put_caller(
        &self,
        key: String,
        subject: Uuid,
        caller: &Caller,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.callers.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(
                key,
                Entry {
                    caller: caller.clone(),
                    subject,
                    at: Instant::now(),
                    expires_at,
                },
            );
        }
    }

    /// The user row cached for `id`, if still fresh.
    pub fn user(&self, id: Uuid) -> Option<user::Model> {
        let map = self.users.read().ok()?;
        let (model, at) = map.get(&id)?;
        (at.elapsed() < self.ttl).then(|| model.clone())
    }

    pub fn put_user(&self, model: &user::Model) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.users.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(model.id, (model.clone(), Instant::now()));
        }
    }

    /// Evicts `subject` (only its token `jti` when given; the user row always).
    pub fn forget(&self, subject: Uuid, jti: Option<&str>) {
        if let Ok(mut map) = self.callers.write() {
            map.retain(|_, e| {
                let token_matches = match (&e.caller, jti) {
                    (_, None) => true,
                    (
                        Caller::User {
                            token: Some((j, _)),
                            ..
                        },
                        Some(jti),
                    ) => j == jti,
                    _ => false,
                };
                !(e.subject == subject && token_matches)
            });
        }
        if let Ok(mut map) = self.users.write() {
            map.remove(&subject);
        }
    }

    /// Evicts everything (after missed events).
    pub fn clear(&self) {
        if let Ok(mut map) = self.callers.write() {
            map.clear();
        }
        if let Ok(mut map) = self.users.write() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_caller(id: Uuid) -> Caller {
        token_caller(id, None)
    }

    fn token_caller(id: Uuid, jti: Option<&str>) -> Caller {
        Caller::User {
            id,
            username: "u".into(),
            role: super::super::permission::Role::Observer,
            tenant: None,
            token: jti.map(|j| (j.to_owned(), 0)),
            principal: super::super::Principal::Person,
        }
    }

    #[test]
    fn entries_expire_and_are_evicted_by_subject_or_token() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        cache.put_caller("t1".into(), a, &token_caller(a, Some("j1")), None);
        cache.put_caller("t2".into(), a, &token_caller(a, Some("j2")), None);
        cache.put_caller("t3".into(), b, &token_caller(b, Some("j1")), None);
        cache.forget(a, Some("j1"));
        assert!(cache.caller("t1").is_none());
        assert!(cache.caller("t2").is_some());
        assert!(
            cache.caller("t3").is_some(),
            "another subject's token stays"
        );
        cache.forget(a, None);
        assert!(cache.caller("t2").is_none());
        assert!(cache.caller("t3").is_some());
        // Expired API keys are not served.
        let past = crate::clock::now() - chrono::Duration::seconds(1);
        cache.put_caller("k".into(), b, &user_caller(b), Some(past));
        assert!(cache.caller("k").is_none());
        // A zero lifetime caches nothing.
        let off = AuthCache::new(Duration::ZERO);
        off.put_caller("j".into(), a, &user_caller(a), None);
        assert!(off.caller("j").is_none());
    }
}
