//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane — OWASP's
//! minimum). Hashing is CPU-heavy: it runs on the blocking pool, never on an async worker.

use argon2::{Argon2, PasswordHasher, PasswordVerifier, password_hash::phc::PasswordHash};
use secrecy::{ExposeSecret, SecretString};

/// Hashes a password into a PHC string (`$argon2id$…`), off the async workers.
pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await?
}

/// Checks a password against a stored PHC string, off the async workers. A malformed stored
/// hash is an error, not a mismatch.
pub async fn verify(password: SecretString, stored: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

/// A random password for the first admin: 24 characters from an unambiguous alphabet.
pub fn generate() -> SecretString {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let password: String = (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    SecretString::from(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_is_argon2id_and_verifies() -> anyhow::Result<()> {
        let h = hash(SecretString::from("correct horse")).await?;
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(SecretString::from("correct horse"), h.clone()).await?);
        assert!(!verify(SecretString::from("wrong"), h).await?);
        Ok(())
    }

    #[test]
    fn generated_passwords_differ() {
        let a = generate();
        let b = generate();
        assert_eq!(a.expose_secret().len(), 24);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
