//! Sealing a [`Manifest`] to the winning provider's X25519 key, so that only that provider can
//! read the deployment (images, commands, environment with secrets).
//!
//! Scheme (an ECIES in the style of HPKE base mode, with fixed, named parts):
//! 1. the sealer makes a fresh ephemeral X25519 key and computes the shared secret with the
//!    provider's public key ([`ProviderInfo::encryption_key`](crate::ProviderInfo));
//! 2. the symmetric key is `blake3::derive_key(SEAL_CONTEXT, shared || ephemeral_pub ||
//!    recipient_pub)`: binding both public keys means a ciphertext cannot be re-targeted;
//! 3. the canonical manifest bytes are encrypted with ChaCha20-Poly1305; each key is used for
//!    exactly one message, so the nonce is the constant zero; the associated data is the two
//!    public keys.
//!
//! The provider opens the envelope with its secret, decodes the manifest strictly and refuses it
//! unless its hash equals the order's `manifest_hash`.
//!
//! Pure functions: no I/O. Randomness comes from the caller's RNG (or the OS for [`seal`]).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};

use crate::codec::{from_canonical, to_canonical, DecodeError, PROTOCOL_VERSION};
use crate::crypto::Hash;
use crate::manifest::{Manifest, MAX_MANIFEST_SIZE};

/// Context string of the key derivation (blake3 `derive_key`). Changing it is a protocol change.
pub const SEAL_CONTEXT: &str = "leasemesh/v1 manifest seal key";
/// Context string that turns a node's ed25519 secret seed into its X25519 encryption secret.
pub const ENCRYPTION_KEY_CONTEXT: &str = "leasemesh/v1 provider encryption key";
/// Poly1305 tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Largest encoded sealed manifest: the largest manifest plus keys, tag and framing.
pub const MAX_SEALED_MANIFEST_SIZE: usize = MAX_MANIFEST_SIZE + 128;

/// A manifest encrypted to one provider. Travels as its postcard bytes ([`SealedManifest::encode`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedManifest {
    pub version: u8,
    /// The sealer's one-time X25519 public key.
    pub ephemeral_key: [u8; 32],
    /// The provider key it was sealed to (lets a provider that rotated keys say so clearly).
    pub recipient_key: [u8; 32],
    /// ChaCha20-Poly1305 ciphertext of the canonical manifest bytes, tag included.
    pub ciphertext: Vec<u8>,
}

/// Why a sealed manifest could not be opened or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("the recipient key is a low-order X25519 point: refuse to seal to it")]
    WeakKey,
    #[error("the manifest was sealed to key {sealed_to}, not to this provider's key {ours}")]
    WrongRecipient { sealed_to: String, ours: String },
    #[error("the sealed manifest does not decrypt with this key (wrong key or tampered bytes)")]
    Decrypt,
    #[error("sealed manifest: {0}")]
    Decode(#[from] DecodeError),
    #[error("the manifest hashes to {got}, but the order commits to {expected}: refused")]
    HashMismatch { expected: Hash, got: Hash },
    #[error("sealed manifest has version {got}; this node speaks version {supported}")]
    UnknownVersion { got: u8, supported: u8 },
}

/// The X25519 public key for a secret (what a provider advertises in its `ProviderInfo`).
pub fn public_key(secret: &StaticSecret) -> [u8; 32] {
    XPublicKey::from(secret).to_bytes()
}

/// A provider's X25519 encryption secret derived from its ed25519 secret seed, so a node needs
/// no second key file. Domain-separated: the derived key reveals nothing about the seed.
pub fn encryption_secret_from_seed(ed25519_seed: &[u8; 32]) -> StaticSecret {
    StaticSecret::from(blake3::derive_key(ENCRYPTION_KEY_CONTEXT, ed25519_seed))
}

fn symmetric_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut material = [0u8; 96];
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(ephemeral);
    material[64..].copy_from_slice(recipient);
    blake3::derive_key(SEAL_CONTEXT, &material)
}

fn associated_data(ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 64] {
    let mut aad = [0u8; 64];
    aad[..32].copy_from_slice(ephemeral);
    aad[32..].copy_from_slice(recipient);
    aad
}

/// Seals `manifest` to `recipient` (a provider's `encryption_key`) with OS randomness.
pub fn seal(manifest: &Manifest, recipient: &[u8; 32]) -> Result<SealedManifest, SealError> {
    seal_with_rng(manifest, recipient, &mut rand::rngs::OsRng)
}

/// Seals with the caller's RNG (deterministic tests and fuzz seeds).
pub fn seal_with_rng<R: RngCore + CryptoRng>(
    manifest: &Manifest,
    recipient: &[u8; 32],
    rng: &mut R,
) -> Result<SealedManifest, SealError> {
    let ephemeral_secret = StaticSecret::random_from_rng(rng);
    let ephemeral_key = public_key(&ephemeral_secret);
    let shared = ephemeral_secret.diffie_hellman(&XPublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let key = symmetric_key(shared.as_bytes(), &ephemeral_key, recipient);
    let cipher = ChaCha20Poly1305::new(&key.into());
    let aad = associated_data(&ephemeral_key, recipient);
    let plaintext = manifest.encode();
    // Encryption of an in-memory buffer only fails for messages over ~256 GiB.
    let ciphertext = cipher
        .encrypt(&[0u8; 12].into(), Payload { msg: &plaintext, aad: &aad })
        .map_err(|_| SealError::Decrypt)?;
    Ok(SealedManifest {
        version: PROTOCOL_VERSION,
        ephemeral_key,
        recipient_key: *recipient,
        ciphertext,
    })
}

/// Opens a sealed manifest with the provider's secret and checks it is the manifest the order
/// committed to (`expected_hash` = the order's `manifest_hash`).
pub fn open(
    sealed: &SealedManifest,
    secret: &StaticSecret,
    expected_hash: &Hash,
) -> Result<Manifest, SealError> {
    if sealed.version != PROTOCOL_VERSION {
        return Err(SealError::UnknownVersion { got: sealed.version, supported: PROTOCOL_VERSION });
    }
    let ours = public_key(secret);
    if sealed.recipient_key != ours {
        return Err(SealError::WrongRecipient {
            sealed_to: hex::encode(sealed.recipient_key),
            ours: hex::encode(ours),
        });
    }
    if sealed.ciphertext.len() < TAG_LEN {
        return Err(SealError::Decrypt);
    }
    let shared = secret.diffie_hellman(&XPublicKey::from(sealed.ephemeral_key));
    if !shared.was_contributory() {
        return Err(SealError::Decrypt);
    }
    let key = symmetric_key(shared.as_bytes(), &sealed.ephemeral_key, &ours);
    let cipher = ChaCha20Poly1305::new(&key.into());
    let aad = associated_data(&sealed.ephemeral_key, &ours);
    let plaintext = cipher
        .decrypt(&[0u8; 12].into(), Payload { msg: &sealed.ciphertext, aad: &aad })
        .map_err(|_| SealError::Decrypt)?;
    let manifest = Manifest::decode(&plaintext)?;
    let got = manifest.hash();
    if got != *expected_hash {
        return Err(SealError::HashMismatch { expected: *expected_hash, got });
    }
    Ok(manifest)
}

impl SealedManifest {
    /// Wire bytes (postcard).
    pub fn encode(&self) -> Vec<u8> {
        to_canonical(self)
    }

    /// Strict decode with the size limit; does not decrypt.
    pub fn decode(bytes: &[u8]) -> Result<SealedManifest, DecodeError> {
        from_canonical("sealed manifest", bytes, MAX_SEALED_MANIFEST_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn provider_secret(label: &str) -> StaticSecret {
        encryption_secret_from_seed(Hash::domain("seal-test", &[label.as_bytes()]).as_bytes())
    }

    #[test]
    fn round_trip_through_wire_bytes() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let secret = provider_secret("p1");
        let m = samples::manifest();
        let sealed = seal_with_rng(&m, &public_key(&secret), &mut rng).unwrap();
        // The plaintext does not appear in the ciphertext.
        assert!(!sealed.ciphertext.windows(10).any(|w| w == b"nginx:1.27"));
        let bytes = sealed.encode();
        let back = SealedManifest::decode(&bytes).unwrap();
        assert_eq!(open(&back, &secret, &m.hash()).unwrap(), m);
    }

    #[test]
    fn two_seals_of_one_manifest_differ() {
        let secret = provider_secret("p1");
        let m = samples::manifest();
        let a = seal(&m, &public_key(&secret)).unwrap();
        let b = seal(&m, &public_key(&secret)).unwrap();
        assert_ne!(a.ephemeral_key, b.ephemeral_key);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn wrong_key_cannot_open() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let right = provider_secret("p1");
        let wrong = provider_secret("p2");
        let m = samples::manifest();
        let sealed = seal_with_rng(&m, &public_key(&right), &mut rng).unwrap();
        assert!(matches!(open(&sealed, &wrong, &m.hash()), Err(SealError::WrongRecipient { .. })));
        // Even when the envelope lies about its recipient, decryption fails.
        let mut lying = sealed.clone();
        lying.recipient_key = public_key(&wrong);
        assert_eq!(open(&lying, &wrong, &m.hash()), Err(SealError::Decrypt));
    }

    #[test]
    fn tampered_bytes_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let secret = provider_secret("p1");
        let m = samples::manifest();
        let sealed = seal_with_rng(&m, &public_key(&secret), &mut rng).unwrap();
        for i in [0, sealed.ciphertext.len() / 2, sealed.ciphertext.len() - 1] {
            let mut t = sealed.clone();
            t.ciphertext[i] ^= 0x01;
            assert_eq!(open(&t, &secret, &m.hash()), Err(SealError::Decrypt), "byte {i}");
        }
        let mut t = sealed.clone();
        t.ephemeral_key[3] ^= 0x80;
        assert_eq!(open(&t, &secret, &m.hash()), Err(SealError::Decrypt));
        let mut t = sealed;
        t.ciphertext.truncate(5);
        assert_eq!(open(&t, &secret, &m.hash()), Err(SealError::Decrypt));
    }

    #[test]
    fn hash_mismatch_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let secret = provider_secret("p1");
        let m = samples::manifest();
        let mut other = m.clone();
        other.groups[0].services[0].image = "evil:latest".into();
        // The tenant seals a different manifest from the one the order committed to.
        let sealed = seal_with_rng(&other, &public_key(&secret), &mut rng).unwrap();
        match open(&sealed, &secret, &m.hash()) {
            Err(SealError::HashMismatch { expected, got }) => {
                assert_eq!(expected, m.hash());
                assert_eq!(got, other.hash());
            }
            r => panic!("expected a hash mismatch, got {r:?}"),
        }
    }

    #[test]
    fn low_order_recipient_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        assert_eq!(
            seal_with_rng(&samples::manifest(), &[0u8; 32], &mut rng),
            Err(SealError::WeakKey)
        );
    }

    #[test]
    fn oversize_and_garbage_are_decode_errors() {
        assert!(SealedManifest::decode(&vec![0u8; MAX_SEALED_MANIFEST_SIZE + 1]).is_err());
        assert!(SealedManifest::decode(&[1, 2, 3]).is_err());
    }
}
