//! Access tokens: JWTs with a pinned algorithm (HS256 from a shared secret by default, or
//! EdDSA / RS256 from PEM keys), required `exp`, `iat`, `iss`, `aud`, `jti` and `sub`, a `kid`
//! naming the key, and at most 30 s of leeway. A token carries who the caller is, never what
//! they may do: the role is read from the database per request.
//!
//! Rotation (EdDSA / RS256): every accepted public key is configured, each named by a `kid`
//! derived from its PEM; tokens are signed with the one private key, whose `kid` is found by
//! signing a probe and verifying it. To rotate, add the new public key everywhere, then switch
//! the private key, then drop the old public key once its tokens have expired.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    pub aud: String,
    /// Unique per token; logging out revokes it.
    pub jti: String,
}

/// Why a token was refused (logged; clients only see `UNAUTHENTICATED`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token header: {0}")]
    Header(jsonwebtoken::errors::Error),
    #[error("token names no key or an unknown key")]
    UnknownKey,
    #[error("token signed with {0:?}, only {1:?} is accepted")]
    Algorithm(Algorithm, Algorithm),
    #[error("invalid token: {0}")]
    Invalid(jsonwebtoken::errors::Error),
    #[error("token issued in the future")]
    IssuedInFuture,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub expires_at: u64,
}

/// Signing and verification keys.
pub struct TokenKeys {
    algorithm: Algorithm,
    kid: String,
    encoding: EncodingKey,
    /// Every accepted key by `kid` (the signing key's included).
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// Pinned algorithm, required claims, issuer, audience and leeway.
fn validation(algorithm: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECS;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    /// HS256 keys from a shared secret; the `kid` is derived from the secret, so every replica
    /// with the same secret names the same key and a rotated secret gets a new one.
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str, ttl: Duration) -> Self {
        let kid = hex::encode(&Sha256::digest(secret)[..8]);
        Self {
            algorithm: Algorithm::HS256,
            decoding: vec![(kid.clone(), DecodingKey::from_secret(secret))],
            kid,
            encoding: EncodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256, issuer, audience),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// EdDSA or RS256 keys: `private_pem` signs, `public_pems` (the matching public key and
    /// any others still accepted) verify. Errors name what is wrong, not the key material.
    pub fn asymmetric(
        algorithm: Algorithm,
        private_pem: &[u8],
        public_pems: &[Vec<u8>],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> Result<Self, String> {
        let encoding = match algorithm {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem),
            other => return Err(format!("{other:?} is not an asymmetric algorithm here")),
        }
        .map_err(|e| format!("private key is not a {algorithm:?} PEM key: {e}"))?;
        let mut decoding = Vec::with_capacity(public_pems.len());
        for (i, pem) in public_pems.iter().enumerate() {
            let key = match algorithm {
                Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
                _ => DecodingKey::from_rsa_pem(pem),
            }
            .map_err(|e| format!("public key #{} is not a {algorithm:?} PEM key: {e}", i + 1))?;
            let kid = hex::encode(&Sha256::digest(pem.trim_ascii())[..8]);
            if decoding.iter().any(|(k, _)| *k == kid) {
                return Err(format!("public key #{} is listed twice", i + 1));
            }
            decoding.push((kid, key));
        }
        let mut keys = Self {
            algorithm,
            kid: String::new(),
            encoding,
            decoding,
            validation: validation(algorithm, issuer, audience),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        };
        // The signing key's kid: the public key that verifies a probe it signed.
        let probe_claims = keys.claims(Uuid::nil());
        let probe = encode(&Header::new(algorithm), &probe_claims, &keys.encoding)
            .map_err(|e| format!("signing with the private key: {e}"))?;
        keys.kid = keys
            .decoding
            .iter()
            .find(|(_, key)| decode::<Claims>(&probe, key, &keys.validation).is_ok())
            .map(|(kid, _)| kid.clone())
            .ok_or("no public key matches the private key")?;
        Ok(keys)
    }

    /// The `kid` new tokens are signed with.
    pub fn signing_kid(&self) -> &str {
        &self.kid
    }

    fn claims(&self, user_id: Uuid) -> Claims {
        let iat = now_secs();
        Claims {
            sub: user_id.to_string(),
            exp: iat + self.ttl.as_secs(),
            iat,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4().to_string(),
        }
    }

    /// Seconds an access token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues an access token for `user_id`.
    pub fn issue(&self, user_id: Uuid) -> Result<Issued, jsonwebtoken::errors::Error> {
        let claims = self.claims(user_id);
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let token = encode(&header, &claims, &self.encoding)?;
        Ok(Issued {
            token,
            jti: claims.jti,
            expires_at: claims.exp,
        })
    }

    /// Verifies signature, algorithm, key id and claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token).map_err(TokenError::Header)?;
        if header.alg != self.algorithm {
            return Err(TokenError::Algorithm(header.alg, self.algorithm));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.iter().find(|(k, _)| k == kid))
            .map(|(_, key)| key)
            .ok_or(TokenError::UnknownKey)?;
        let data = decode::<Claims>(token, key, &self.validation).map_err(TokenError::Invalid)?;
        if data.claims.iat > now_secs() + LEEWAY_SECS {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::hs256(
            b"0123456789abcdef0123456789abcdef",
            "aurum",
            "aurum",
            Duration::from_secs(60),
        )
    }

    fn forge(header: &Header, claims: &serde_json::Value, secret: &[u8]) -> String {
        encode(header, claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
    }

    #[test]
    fn issued_tokens_verify() {
        let k = keys();
        let Ok(issued) = k.issue(Uuid::nil()) else {
            panic!("issue")
        };
        let claims = k.verify(&issued.token).map_err(|e| e.to_string());
        assert_eq!(claims.map(|c| c.jti), Ok(issued.jti));
    }

    #[test]
    fn tampered_foreign_and_incomplete_tokens_fail() {
        let k = keys();
        let Ok(issued) = k.issue(Uuid::nil()) else {
            panic!("issue")
        };
        // Flip a character of the signature.
        let mut bad = issued.token.clone();
        let last = bad
            .pop()
            .map(|c| if c == 'A' { 'B' } else { 'A' })
            .unwrap_or('A');
        bad.push(last);
        assert!(k.verify(&bad).is_err());
        // alg: none.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            issued.token.split('.').nth(1).unwrap_or_default()
        );
        assert!(k.verify(&none).is_err());
        let now = now_secs();
        let full = serde_json::json!({"sub": "x", "exp": now + 60, "iat": now, "iss": "aurum", "aud": "aurum", "jti": "j"});
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(k.kid.clone());
        assert!(
            k.verify(&forge(&header, &full, b"0123456789abcdef0123456789abcdef"))
                .is_ok()
        );
        // Wrong kid, wrong secret, missing aud / iss, expired beyond leeway, wrong audience.
        let mut wrong_kid = header.clone();
        wrong_kid.kid = Some("other".into());
        assert!(matches!(
            k.verify(&forge(
                &wrong_kid,
                &full,
                b"0123456789abcdef0123456789abcdef"
            )),
            Err(TokenError::UnknownKey)
        ));
        assert!(
            k.verify(&forge(&header, &full, b"another secret of enough length!!"))
                .is_err()
        );
        for drop in ["aud", "iss", "jti", "iat", "exp", "sub"] {
            let mut c = full.clone();
            c.as_object_mut().map(|o| o.remove(drop));
            assert!(
                k.verify(&forge(&header, &c, b"0123456789abcdef0123456789abcdef"))
                    .is_err(),
                "missing {drop}"
            );
        }
        let mut expired = full.clone();
        expired["exp"] = serde_json::json!(now - LEEWAY_SECS - 5);
        assert!(
            k.verify(&forge(
                &header,
                &expired,
                b"0123456789abcdef0123456789abcdef"
            ))
            .is_err()
        );
        let mut other_aud = full.clone();
        other_aud["aud"] = serde_json::json!("someone-else");
        assert!(
            k.verify(&forge(
                &header,
                &other_aud,
                b"0123456789abcdef0123456789abcdef"
            ))
            .is_err()
        );
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn asym(alg: Algorithm, private: &str, public: &[&str]) -> Result<TokenKeys, String> {
        let pubs: Vec<Vec<u8>> = public.iter().map(|p| fixture(p)).collect();
        TokenKeys::asymmetric(
            alg,
            &fixture(private),
            &pubs,
            "aurum",
            "aurum",
            Duration::from_secs(60),
        )
    }

    #[test]
    fn eddsa_keys_rotate_by_kid() {
        // Before rotation: key a signs, only a is accepted.
        let Ok(old) = asym(Algorithm::EdDSA, "ed25519-a.pem", &["ed25519-a.pub.pem"]) else {
            panic!("old keys")
        };
        let Ok(old_token) = old.issue(Uuid::nil()) else {
            panic!("issue")
        };
        // During rotation: b signs, a and b are accepted; a's tokens still verify.
        let Ok(mid) = asym(
            Algorithm::EdDSA,
            "ed25519-b.pem",
            &["ed25519-a.pub.pem", "ed25519-b.pub.pem"],
        ) else {
            panic!("rotating keys")
        };
        assert_ne!(mid.signing_kid(), old.signing_kid());
        assert!(mid.verify(&old_token.token).is_ok());
        let Ok(new_token) = mid.issue(Uuid::nil()) else {
            panic!("issue")
        };
        assert!(mid.verify(&new_token.token).is_ok());
        // The old set does not know b's kid.
        assert!(matches!(
            old.verify(&new_token.token),
            Err(TokenError::UnknownKey)
        ));
        // After rotation: a is dropped, its tokens are refused.
        let Ok(new) = asym(Algorithm::EdDSA, "ed25519-b.pem", &["ed25519-b.pub.pem"]) else {
            panic!("new keys")
        };
        assert!(matches!(
            new.verify(&old_token.token),
            Err(TokenError::UnknownKey)
        ));
        assert!(new.verify(&new_token.token).is_ok());
    }

    #[test]
    fn rs256_works_and_algorithms_are_pinned() {
        let Ok(rsa) = asym(Algorithm::RS256, "rsa-a.pem", &["rsa-a.pub.pem"]) else {
            panic!("rsa keys")
        };
        let Ok(token) = rsa.issue(Uuid::nil()) else {
            panic!("issue")
        };
        assert!(rsa.verify(&token.token).is_ok());
        // An HS256 token is refused by an RS256 verifier, whatever its kid.
        let hs = keys();
        let Ok(hs_token) = hs.issue(Uuid::nil()) else {
            panic!("issue")
        };
        assert!(matches!(
            rsa.verify(&hs_token.token),
            Err(TokenError::Algorithm(Algorithm::HS256, Algorithm::RS256))
        ));
        assert!(matches!(
            hs.verify(&token.token),
            Err(TokenError::Algorithm(Algorithm::RS256, Algorithm::HS256))
        ));
    }

    #[test]
    fn mismatched_or_wrong_key_files_are_refused() {
        assert!(
            asym(Algorithm::EdDSA, "ed25519-a.pem", &["ed25519-b.pub.pem"])
                .is_err_and(|e| e.contains("no public key matches"))
        );
        assert!(asym(Algorithm::EdDSA, "rsa-a.pem", &["ed25519-a.pub.pem"]).is_err());
        assert!(asym(Algorithm::RS256, "rsa-a.pem", &["ed25519-a.pub.pem"]).is_err());
        assert!(
            asym(
                Algorithm::EdDSA,
                "ed25519-a.pem",
                &["ed25519-a.pub.pem", "ed25519-a.pub.pem"]
            )
            .is_err_and(|e| e.contains("twice"))
        );
    }
}
