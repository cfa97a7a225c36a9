//! Password hashing with argon2id. Parameters come from configuration (defaults: the crate's,
//! 19 MiB, 2 passes, 1 lane — OWASP's minimum); a stored hash made with other parameters
//! still verifies (its PHC string carries them) and is flagged for re-hashing. Hashing is
//! CPU-heavy: it runs on the blocking pool, never on an async worker, and at most (cores − 1)
//! at once, so health checks and other requests keep a core during a login storm.

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHasher, Version,
    password_hash::phc::{Output, PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Hashes computed at once, process-wide: one fewer than the cores (at least one), so a login
/// storm queues here instead of taking every core from the async workers.
fn hashing_slots() -> &'static Semaphore {
    static SLOTS: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

/// argon2 working memory (19 MiB at the defaults) kept between verifications, one buffer per
/// hashing slot at most: a login reuses warm pages instead of mapping and faulting in a fresh
/// block every time (about 3 ms of a 20 ms verification).
static BLOCKS: std::sync::Mutex<Vec<Vec<Block>>> = std::sync::Mutex::new(Vec::new());

fn with_blocks<T>(count: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    let mut blocks = BLOCKS
        .lock()
        .ok()
        .and_then(|mut pool| pool.pop())
        .unwrap_or_default();
    if blocks.len() < count {
        blocks.resize(count, Block::default());
    }
    let result = work(&mut blocks[..count]);
    if let Ok(mut pool) = BLOCKS.lock() {
        pool.push(blocks);
    }
    result
}

/// Runs one argon2 computation on the blocking pool, holding a hashing slot.
async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|e| anyhow::anyhow!("hashing slots closed: {e}"))?;
    tokio::task::spawn_blocking(work).await?
}

/// The argon2id parameters new hashes are made with.
#[derive(Debug, Clone)]
pub struct Hashing {
    params: Params,
}

impl Default for Hashing {
    fn default() -> Self {
        Self {
            params: Params::DEFAULT,
        }
    }
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub matches: bool,
    /// The stored hash was made with other parameters (or another algorithm or version).
    pub needs_rehash: bool,
}

impl Hashing {
    /// `memory_kib` KiB and `iterations` passes, one lane.
    pub fn new(memory_kib: u32, iterations: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| {
            anyhow::anyhow!("AURUM_ARGON2_MEMORY_KIB / AURUM_ARGON2_ITERATIONS: {e}")
        })?;
        Ok(Self { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes a password into a PHC string (`$argon2id$…`), off the async workers.
    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        let argon2 = self.argon2();
        off_workers(move || {
            argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
        })
        .await
    }

    /// Checks a password against a stored PHC string, off the async workers, with the
    /// parameters the string names. A malformed stored hash is an error, not a mismatch.
    pub async fn verify(&self, password: SecretString, stored: String) -> anyhow::Result<Verdict> {
        let current = self.params.clone();
        off_workers(move || {
            let parsed =
                PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
                anyhow::bail!("stored hash has no salt or no output");
            };
            let params =
                Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            let algorithm = Algorithm::try_from(parsed.algorithm.as_str())
                .map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            let version = parsed
                .version
                .map(Version::try_from)
                .transpose()
                .map_err(|e| anyhow::anyhow!("stored hash: {e}"))?
                .unwrap_or_default();
            // What `verify_password` does, with reused working memory; the comparison is
            // `Output`'s constant-time equality.
            let argon2 = Argon2::new(algorithm, version, params.clone());
            let mut out = vec![0u8; expected.as_bytes().len()];
            let computed = with_blocks(params.block_count(), |blocks| {
                argon2.hash_password_into_with_memory(
                    password.expose_secret().as_bytes(),
                    salt.as_ref(),
                    &mut out,
                    blocks,
                )
            });
            let matches = computed.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected);
            let same = algorithm == Algorithm::Argon2id
                && version == Version::V0x13
                && params.m_cost() == current.m_cost()
                && params.t_cost() == current.t_cost()
                && params.p_cost() == current.p_cost();
            Ok(Verdict {
                matches,
                needs_rehash: !same,
            })
        })
        .await
    }
}

/// Hashes with the default parameters (CLI bootstrap and tests).
pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    Hashing::default().hash(password).await
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
        let hashing = Hashing::default();
        let h = hashing.hash(SecretString::from("correct horse")).await?;
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        let good = hashing
            .verify(SecretString::from("correct horse"), h.clone())
            .await?;
        assert_eq!(
            good,
            Verdict {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = hashing.verify(SecretString::from("wrong"), h).await?;
        assert!(!bad.matches);
        Ok(())
    }

    #[tokio::test]
    async fn other_parameters_verify_and_ask_for_a_rehash() -> anyhow::Result<()> {
        let old = Hashing::new(8 * 1024, 1)?;
        let h = old.hash(SecretString::from("correct horse")).await?;
        assert!(h.contains("m=8192,t=1"), "{h}");
        let current = Hashing::default();
        let verdict = current
            .verify(SecretString::from("correct horse"), h)
            .await?;
        assert_eq!(
            verdict,
            Verdict {
                matches: true,
                needs_rehash: true
            }
        );
        assert!(Hashing::new(4, 1).is_err());
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
