//! Canonical encoding, signed envelopes and decoding with typed errors.
//!
//! The canonical bytes of a body are its postcard encoding. Decoding is strict: the input must
//! be within the type's size limit, decode completely (no trailing bytes), re-encode to exactly
//! the same bytes (no second spelling of the same value, such as an overlong varint), carry a
//! known version and pass the type's value checks. Anything else is a [`DecodeError`] and the
//! caller changes nothing.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::crypto::SignatureError;
use crate::crypto::{signing_message, verify_batch, Hash, Id, Keypair, PublicKey, Signature};
use crate::validate::ValidationError;

/// The one wire version this code speaks. A body with another version is refused, never guessed.
pub const PROTOCOL_VERSION: u8 = 1;

/// A type that travels signed: it names its domain tag, its size limit and its value checks.
pub trait Signable: Serialize + DeserializeOwned + Clone {
    /// Domain tag in front of the body bytes for the signature and the id. Unique per type.
    const DOMAIN: &'static str;
    /// Largest encoded `Signed<Self>` accepted from outside, in bytes.
    const MAX_SIZE: usize;
    /// Human name of the type for error messages ("order", "bid", ...).
    const NAME: &'static str;
    /// The highest body version this code reads (versions run from [`PROTOCOL_VERSION`]).
    const MAX_VERSION: u8 = PROTOCOL_VERSION;

    /// The version field of the body.
    fn version(&self) -> u8;

    /// The key that must have signed the body (the tenant of an order, the provider of a bid).
    /// `None` if any key may sign (the envelope's signer is then the author).
    fn author(&self) -> Option<&PublicKey>;

    /// Checks that hold whatever the time: non-zero resources, ranges, sorted lists.
    fn validate(&self) -> Result<(), ValidationError>;
}

/// Canonical bytes of any serializable value (postcard).
pub fn to_canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own types into a Vec cannot fail: they contain no maps with non-string
    // keys, no sequences of unknown length and nothing else postcard refuses.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Strictly decodes canonical bytes: no trailing bytes, and the bytes must be the one canonical
/// spelling of the value.
pub fn from_canonical<T: Serialize + DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge { what, size: bytes.len(), max });
    }
    let (value, rest): (T, &[u8]) = postcard::take_from_bytes(bytes)
        .map_err(|e| DecodeError::Malformed { what, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { what, extra: rest.len() });
    }
    if to_canonical(&value) != bytes {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok(value)
}

/// Why bytes from outside were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{what} is {size} bytes, over the limit of {max} bytes")]
    TooLarge { what: &'static str, size: usize, max: usize },
    #[error("{what} could not be decoded: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} has {extra} trailing bytes after a complete value")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("{what} is not in canonical form (a value spelled with extra bytes)")]
    NonCanonical { what: &'static str },
    #[error(
        "{what} has version {got}; this node speaks version {supported}: upgrade the older side"
    )]
    UnknownVersion { what: &'static str, got: u8, supported: u8 },
    #[error("invalid {what}: {source}")]
    Invalid {
        what: &'static str,
        #[source]
        source: ValidationError,
    },
    #[error("{what} was signed by {signer} but its author is {author}")]
    WrongSigner { what: &'static str, signer: PublicKey, author: PublicKey },
    #[error("{what} signature: {source}")]
    Signature {
        what: &'static str,
        #[source]
        source: SignatureError,
    },
}

/// A body with its signer and signature. The wire form is the postcard encoding of this struct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    pub body: T,
    pub signer: PublicKey,
    pub sig: Signature,
}

impl<T: Signable> Signed<T> {
    /// Signs `body` with `key`. The caller is responsible for the body being valid; use
    /// [`Signed::check`] on the result when in doubt.
    pub fn sign(body: T, key: &Keypair) -> Signed<T> {
        let msg = signing_message(T::DOMAIN, &to_canonical(&body));
        let sig = key.sign(&msg);
        Signed { body, signer: key.public(), sig }
    }

    /// The canonical bytes of the body.
    pub fn body_bytes(&self) -> Vec<u8> {
        to_canonical(&self.body)
    }

    /// The bytes the signature covers: domain tag then body.
    pub fn signing_message(&self) -> Vec<u8> {
        signing_message(T::DOMAIN, &self.body_bytes())
    }

    /// The object's id: hash of the domain tag and the body bytes (the signed message).
    pub fn id(&self) -> Id {
        id_of::<T>(&self.body)
    }

    /// The wire bytes of the whole envelope.
    pub fn encode(&self) -> Vec<u8> {
        to_canonical(self)
    }

    /// Decodes and checks structure, version and values; does NOT verify the signature (do that
    /// with [`Signed::verify`], or in batches with [`verify_all`]).
    pub fn decode(bytes: &[u8]) -> Result<Signed<T>, DecodeError> {
        let signed: Signed<T> = from_canonical(T::NAME, bytes, T::MAX_SIZE)?;
        signed.check()?;
        Ok(signed)
    }

    /// Decodes, checks and verifies the signature.
    pub fn decode_verified(bytes: &[u8]) -> Result<Signed<T>, DecodeError> {
        let signed = Self::decode(bytes)?;
        signed.verify()?;
        Ok(signed)
    }

    /// Version, value checks and author: everything but the signature itself.
    pub fn check(&self) -> Result<(), DecodeError> {
        let got = self.body.version();
        if !(PROTOCOL_VERSION..=T::MAX_VERSION).contains(&got) {
            return Err(DecodeError::UnknownVersion {
                what: T::NAME,
                got,
                supported: T::MAX_VERSION,
            });
        }
        self.body.validate().map_err(|source| DecodeError::Invalid { what: T::NAME, source })?;
        if let Some(author) = self.body.author() {
            if *author != self.signer {
                return Err(DecodeError::WrongSigner {
                    what: T::NAME,
                    signer: self.signer,
                    author: *author,
                });
            }
        }
        Ok(())
    }

    /// Verifies the signature over domain tag and body.
    pub fn verify(&self) -> Result<(), DecodeError> {
        self.signer
            .verify(&self.signing_message(), &self.sig)
            .map_err(|source| DecodeError::Signature { what: T::NAME, source })
    }
}

/// The id of a body without signing it.
pub fn id_of<T: Signable>(body: &T) -> Id {
    Hash::domain(T::DOMAIN, &[&to_canonical(body)])
}

/// Verifies many signed objects of one type at once (ed25519 batch verification). On failure,
/// returns the index of every invalid one, found by checking each on its own.
pub fn verify_all<T: Signable>(items: &[Signed<T>]) -> Result<(), Vec<usize>> {
    let msgs: Vec<Vec<u8>> = items.iter().map(|s| s.signing_message()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let sigs: Vec<Signature> = items.iter().map(|s| s.sig).collect();
    let keys: Vec<PublicKey> = items.iter().map(|s| s.signer).collect();
    if verify_batch(&refs, &sigs, &keys).is_ok() {
        return Ok(());
    }
    let bad: Vec<usize> =
        items.iter().enumerate().filter(|(_, s)| s.verify().is_err()).map(|(i, _)| i).collect();
    if bad.is_empty() {
        // Batch and single verification disagree only for edge-case keys; be conservative.
        return Err((0..items.len()).collect());
    }
    Err(bad)
}
