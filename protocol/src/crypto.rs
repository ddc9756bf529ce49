//! Keys, signatures and hashes.
//!
//! Every hash in leasemesh is BLAKE3 with a domain tag in front of the input, so a hash made for
//! one purpose (an order id, a Merkle leaf, a manifest) can never be passed off as another.
//! Keys and signatures are ed25519 (the same curve and crate major version libp2p uses), wrapped
//! in plain byte newtypes so that the wire format does not depend on a crate's serde choices.

use std::fmt;

use ed25519_dalek::Signer;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Length of every hash and id, in bytes.
pub const HASH_LEN: usize = 32;

/// A 32-byte BLAKE3 hash. Object ids, manifest hashes and Merkle roots are all `Hash`es.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

/// The id of a signed object: the hash of its domain tag and canonical body bytes.
pub type Id = Hash;

impl Hash {
    /// The all-zero hash, used as "no previous batch".
    pub const ZERO: Hash = Hash([0; HASH_LEN]);

    /// Hashes `parts` after a domain tag. The tag is length-prefixed so that no tag is a prefix
    /// of another's input.
    pub fn domain(tag: &str, parts: &[&[u8]]) -> Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[tag_len(tag)]);
        hasher.update(tag.as_bytes());
        for part in parts {
            hasher.update(part);
        }
        Hash(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Hash, HexError> {
        parse_hex_array(s).map(Hash)
    }

    /// The first eight hex characters, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// Domain tags are at most 255 bytes; every tag in this crate is a short constant.
fn tag_len(tag: &str) -> u8 {
    u8::try_from(tag.len()).unwrap_or(u8::MAX)
}

/// The bytes a signature covers: the length-prefixed domain tag, then the canonical body.
pub fn signing_message(tag: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(1 + tag.len() + body.len());
    msg.push(tag_len(tag));
    msg.extend_from_slice(tag.as_bytes());
    msg.extend_from_slice(body);
    msg
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for Hash {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

/// A hex string that is not the expected length or not hex at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex characters, got {got:?}")]
pub struct HexError {
    pub expected: usize,
    pub got: String,
}

fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let err = || HexError { expected: N * 2, got: s.chars().take(80).collect() };
    let bytes = hex::decode(s).map_err(|_| err())?;
    bytes.try_into().map_err(|_| err())
}

/// An ed25519 public key (32 bytes). Compared and ordered as bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<PublicKey, HexError> {
        parse_hex_array(s).map(PublicKey)
    }

    /// Parses the bytes as a curve point; fails for bytes that are not a valid key.
    pub fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, SignatureError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::BadKey)
    }

    /// Verifies `sig` over `msg` with strict checks (no malleable signatures, no weak keys).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let key = self.verifying_key()?;
        key.verify_strict(msg, &sig.to_dalek()).map_err(|_| SignatureError::Invalid)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    fn to_dalek(self) -> ed25519_dalek::Signature {
        ed25519_dalek::Signature::from_bytes(&self.0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("the signer's public key is not a valid ed25519 point")]
    BadKey,
    #[error("the signature does not match the signer and the signed bytes")]
    Invalid,
    #[error("batch verification failed: at least one signature in the batch is invalid")]
    BatchInvalid,
}

/// An ed25519 key pair. The secret never leaves the process that holds it.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Keypair {
        Keypair::from_secret(rand::random())
    }

    /// The key for a 32-byte secret seed (as stored in a key file).
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair { signing: ed25519_dalek::SigningKey::from_bytes(&secret) }
    }

    /// A key derived from a label, for tests, samples and benches only.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn from_seed_label(label: &str) -> Keypair {
        Keypair::from_secret(*Hash::domain("leasemesh/test-key", &[label.as_bytes()]).as_bytes())
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Keypair(public: {})", self.public().to_hex())
    }
}

/// Verifies many (message, signature, key) triples at once; about twice as fast per signature
/// as one by one for large batches. Fails if any one is invalid: callers that need to know which
/// one fall back to [`PublicKey::verify`] for each.
pub fn verify_batch(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[PublicKey],
) -> Result<(), SignatureError> {
    if messages.len() != signatures.len() || messages.len() != keys.len() {
        return Err(SignatureError::BatchInvalid);
    }
    let sigs: Vec<ed25519_dalek::Signature> = signatures.iter().map(|s| s.to_dalek()).collect();
    let keys = keys.iter().map(|k| k.verifying_key()).collect::<Result<Vec<_>, _>>()?;
    ed25519_dalek::verify_batch(messages, &sigs, &keys).map_err(|_| SignatureError::BatchInvalid)
}

// --- serde: raw bytes in binary formats, hex strings in human-readable ones (JSON). ---

macro_rules! serde_bytes_newtype {
    ($ty:ident, $len:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} bytes or {} hex characters", $len, $len * 2)
                    }
                    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<$ty, E> {
                        let arr: [u8; $len] =
                            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))?;
                        Ok($ty(arr))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        parse_hex_array::<$len>(v).map($ty).map_err(E::custom)
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_bytes(V)
                }
            }
        }
    };
}

serde_bytes_newtype!(Hash, HASH_LEN);
serde_bytes_newtype!(PublicKey, 32);
serde_bytes_newtype!(Signature, 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_tags_separate_hashes() {
        let a = Hash::domain("leasemesh/a", &[b"x"]);
        let b = Hash::domain("leasemesh/b", &[b"x"]);
        assert_ne!(a, b);
        // The length prefix keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(Hash::domain("ab", &[b"c"]), Hash::domain("a", &[b"bc"]));
    }

    #[test]
    fn sign_and_verify() {
        let k = Keypair::from_seed_label("alice");
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig).is_ok());
        assert_eq!(k.public().verify(b"hellO", &sig), Err(SignatureError::Invalid));
        let other = Keypair::from_seed_label("bob");
        assert_eq!(other.public().verify(b"hello", &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn batch_verify_catches_one_bad_signature() {
        let keys: Vec<Keypair> =
            (0..8).map(|i| Keypair::from_seed_label(&format!("k{i}"))).collect();
        let msgs: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; 10]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pubs: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        assert!(verify_batch(&refs, &sigs, &pubs).is_ok());
        sigs[5] = keys[5].sign(b"something else");
        assert_eq!(verify_batch(&refs, &sigs, &pubs), Err(SignatureError::BatchInvalid));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::domain("t", &[b"x"]);
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert!(Hash::from_hex("abcd").is_err());
        assert!(Hash::from_hex(&"zz".repeat(32)).is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
    }
}
