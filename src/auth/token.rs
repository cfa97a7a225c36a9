//! Access tokens: JWTs with a pinned algorithm (HS256), required `exp`, `iat`, `iss`, `aud`,
//! `jti` and `sub`, a `kid` naming the key, and at most 30 s of leeway. A token carries who
//! the caller is, never what they may do: the role is read from the database per request.

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
    #[error("token signed with {0:?}, only HS256 is accepted")]
    Algorithm(Algorithm),
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
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
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
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        Self {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// Seconds an access token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues an access token for `user_id`.
    pub fn issue(&self, user_id: Uuid) -> Result<Issued, jsonwebtoken::errors::Error> {
        let iat = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            exp: iat + self.ttl.as_secs(),
            iat,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
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
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Algorithm(header.alg));
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(TokenError::Invalid)?;
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
}
