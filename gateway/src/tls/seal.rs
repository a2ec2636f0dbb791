//! Private keys at rest: sealed with the operator's key-encryption key (ChaCha20-Poly1305, a
//! random nonce per seal, the tenant and certificate name as associated data so a sealed key
//! copied to another tenant's row does not open).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the key-encryption key must be 64 hex characters (32 bytes)")]
    BadKey,
    #[error("sealing failed")]
    Seal,
    #[error("the sealed key does not open with this node's key-encryption key (another operator key, or a damaged row)")]
    Open,
}

pub struct KeySealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl KeySealer {
    /// From 32 bytes in hex.
    pub fn from_hex(hex_key: &str) -> Result<Self, SealError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| SealError::BadKey)?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| SealError::BadKey)?;
        Ok(KeySealer {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// A fresh random key, in hex.
    pub fn generate_hex() -> Result<String, SealError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Seal)?;
        Ok(hex::encode(bytes))
    }

    pub fn seal(&self, context: &str, secret: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Seal)?;
        let mut buf = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend(buf);
        Ok(format!("{VERSION}{}", hex::encode(out)))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = sealed
            .strip_prefix(VERSION)
            .and_then(|h| hex::decode(h).ok())
            .ok_or(SealError::Open)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

/// The associated data binding a sealed key to its row.
pub fn context(tenant: &str, name: &str) -> String {
    format!("wharf-tls-key/{tenant}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_in_its_context() {
        let s = KeySealer::from_hex(&KeySealer::generate_hex().unwrap()).unwrap();
        let sealed = s.seal(&context("a", "main"), b"secret key").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(
            s.open(&context("a", "main"), &sealed).unwrap(),
            b"secret key"
        );
        assert!(
            s.open(&context("b", "main"), &sealed).is_err(),
            "another tenant's row"
        );
        let other = KeySealer::from_hex(&KeySealer::generate_hex().unwrap()).unwrap();
        assert!(
            other.open(&context("a", "main"), &sealed).is_err(),
            "another operator key"
        );
        assert!(KeySealer::from_hex("abcd").is_err());
    }
}
