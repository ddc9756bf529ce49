//! Binding a Cosmos chain address to a tenant's ed25519 key (feature `cosmos`).
//!
//! An order names `tenant_address`, the account that pays. On a Cosmos chain nothing ties that
//! bech32 address to the ed25519 key that signs orders, so the tenant proves it: with its
//! secp256k1 chain key it signs, the way a Keplr/Cosmos wallet's `signArbitrary` does (ADR-036),
//! the data `leasemesh/v1/tenant-key:<ed25519 public key hex>`. The settler checks the
//! signature, that the public key hashes to the address, and remembers address → ed25519 key.
//!
//! The signed bytes are the ADR-036 amino sign doc: a `StdSignDoc` with chain id `""`, account
//! number and sequence `"0"`, a zero fee, an empty memo and one `sign/MsgSignData` message
//! `{signer: <address>, data: <base64 of the data>}`, as JSON with sorted keys and no spaces.
//! The signature is secp256k1 ECDSA over SHA-256 of those bytes, 64 bytes `r || s`, low `s`.
//! The address is the plain Cosmos derivation `bech32(prefix, ripemd160(sha256(pubkey)))` of
//! the 33-byte compressed public key (the prefix is the address's own).
//!
//! Pure functions and no I/O, so the light client and the settler share them.

use k256::ecdsa::signature::Verifier as _;
use k256::ecdsa::{Signature as EcdsaSignature, SigningKey, VerifyingKey};
use ripemd::Ripemd160;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::PublicKey;

/// The data a tenant signs is this prefix followed by its ed25519 key in hex.
pub const TENANT_KEY_PREFIX: &str = "leasemesh/v1/tenant-key:";

/// Length of a compressed secp256k1 public key.
pub const PUBKEY_LEN: usize = 33;

/// Length of a compact `r || s` signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a binding was refused. Every malformed input is one of these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    #[error("address {address:?} is not a bech32 address: {detail}")]
    Address { address: String, detail: String },
    #[error("public key is not hex: {0}")]
    PubkeyHex(String),
    #[error("public key must be a {PUBKEY_LEN}-byte compressed secp256k1 key, got {0} bytes")]
    PubkeyLength(usize),
    #[error("public key is not a compressed point on secp256k1")]
    PubkeyPoint,
    #[error("signature is not base64: {0}")]
    SignatureBase64(String),
    #[error("signature must be {SIGNATURE_LEN} bytes r||s, got {0} bytes")]
    SignatureLength(usize),
    #[error("signature is not a valid secp256k1 (r, s) pair")]
    SignatureMalformed,
    #[error("signature has a high s: sign with low-s normalization")]
    HighS,
    #[error("tenant key is not a hex ed25519 public key: {0}")]
    TenantKey(String),
    #[error("the public key belongs to {derived}, not to {address}")]
    AddressMismatch { address: String, derived: String },
    #[error("the signature does not verify for this address, public key and tenant key")]
    BadSignature,
    #[error("secret key is not a secp256k1 secret")]
    SecretKey,
}

/// The binding as it travels in JSON (`POST /v1/ledger/bindings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// The bech32 chain address that pays.
    pub address: String,
    /// The 33-byte compressed secp256k1 public key of the address, hex.
    pub pubkey_hex: String,
    /// The 64-byte `r || s` signature over the ADR-036 sign doc, standard base64.
    pub signature_b64: String,
    /// The tenant's ed25519 key (the signer of its orders), hex.
    pub tenant_key_hex: String,
}

/// A parsed binding: `address`'s key `pubkey` says that `tenant_key` may spend from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub address: String,
    pub pubkey: [u8; PUBKEY_LEN],
    pub signature: [u8; SIGNATURE_LEN],
    pub tenant_key: PublicKey,
}

/// The data signed for `tenant_key`: `leasemesh/v1/tenant-key:<hex>`.
pub fn binding_data(tenant_key: &PublicKey) -> String {
    format!("{TENANT_KEY_PREFIX}{}", tenant_key.to_hex())
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The ADR-036 amino sign doc of `data` signed by `signer`: JSON, keys sorted, no spaces.
pub fn adr036_sign_doc(signer: &str, data: &[u8]) -> Vec<u8> {
    let b64 = String::from_utf8_lossy(&subtle_encoding::base64::encode(data)).into_owned();
    let mut out = String::with_capacity(256 + signer.len() + b64.len());
    out.push_str(r#"{"account_number":"0","chain_id":"","fee":{"amount":[],"gas":"0"},"memo":"","msgs":[{"type":"sign/MsgSignData","value":{"data":"#);
    json_str(&mut out, &b64);
    out.push_str(r#","signer":"#);
    json_str(&mut out, signer);
    out.push_str(r#"}}],"sequence":"0"}"#);
    out.into_bytes()
}

/// The plain Cosmos address of a compressed secp256k1 key: `bech32(prefix,
/// ripemd160(sha256(pubkey)))`.
pub fn address_of(prefix: &str, compressed_pubkey: &[u8]) -> Result<String, BindingError> {
    if compressed_pubkey.len() != PUBKEY_LEN {
        return Err(BindingError::PubkeyLength(compressed_pubkey.len()));
    }
    if !matches!(compressed_pubkey.first(), Some(2 | 3)) {
        return Err(BindingError::PubkeyPoint);
    }
    let id = Ripemd160::digest(Sha256::digest(compressed_pubkey));
    Ok(subtle_encoding::bech32::encode(prefix, id.as_slice()))
}

/// The human-readable part (prefix) of a bech32 address.
fn prefix_of(address: &str) -> Result<String, BindingError> {
    let (hrp, _) = subtle_encoding::bech32::decode(address)
        .map_err(|e| BindingError::Address { address: address.into(), detail: e.to_string() })?;
    Ok(hrp)
}

impl Binding {
    /// Parses the JSON form; checks sizes and encodings, not the signature (see
    /// [`Binding::verify`]).
    pub fn parse(req: &BindingRequest) -> Result<Binding, BindingError> {
        prefix_of(&req.address)?;
        let pk = hex::decode(req.pubkey_hex.trim())
            .map_err(|e| BindingError::PubkeyHex(e.to_string()))?;
        let pubkey: [u8; PUBKEY_LEN] =
            pk.as_slice().try_into().map_err(|_| BindingError::PubkeyLength(pk.len()))?;
        let sig = subtle_encoding::base64::decode(req.signature_b64.trim())
            .map_err(|e| BindingError::SignatureBase64(e.to_string()))?;
        let signature: [u8; SIGNATURE_LEN] =
            sig.as_slice().try_into().map_err(|_| BindingError::SignatureLength(sig.len()))?;
        let tenant_key = PublicKey::from_hex(req.tenant_key_hex.trim())
            .map_err(|e| BindingError::TenantKey(e.to_string()))?;
        Ok(Binding { address: req.address.clone(), pubkey, signature, tenant_key })
    }

    /// Parses and verifies the JSON form.
    pub fn verify_request(req: &BindingRequest) -> Result<Binding, BindingError> {
        let b = Binding::parse(req)?;
        b.verify()?;
        Ok(b)
    }

    /// The JSON form.
    pub fn to_request(&self) -> BindingRequest {
        BindingRequest {
            address: self.address.clone(),
            pubkey_hex: hex::encode(self.pubkey),
            signature_b64: String::from_utf8_lossy(&subtle_encoding::base64::encode(
                self.signature,
            ))
            .into_owned(),
            tenant_key_hex: self.tenant_key.to_hex(),
        }
    }

    /// The bytes the chain key signs.
    pub fn sign_doc(&self) -> Vec<u8> {
        adr036_sign_doc(&self.address, binding_data(&self.tenant_key).as_bytes())
    }

    /// Signs a binding of `tenant_key` with the chain key `secret` (32 bytes) for its address
    /// under `prefix` (`"inj"` on Injective).
    pub fn sign(
        secret: &[u8],
        prefix: &str,
        tenant_key: &PublicKey,
    ) -> Result<Binding, BindingError> {
        let key = SigningKey::from_slice(secret).map_err(|_| BindingError::SecretKey)?;
        let point = key.verifying_key().to_encoded_point(true);
        let pubkey: [u8; PUBKEY_LEN] = point
            .as_bytes()
            .try_into()
            .map_err(|_| BindingError::PubkeyLength(point.as_bytes().len()))?;
        let address = address_of(prefix, &pubkey)?;
        let mut b =
            Binding { address, pubkey, signature: [0; SIGNATURE_LEN], tenant_key: *tenant_key };
        let sig: EcdsaSignature = k256::ecdsa::signature::Signer::sign(&key, &b.sign_doc());
        // k256 signs with low s already; normalizing again costs nothing and makes it certain.
        let sig = sig.normalize_s().unwrap_or(sig);
        b.signature.copy_from_slice(&sig.to_bytes());
        Ok(b)
    }

    /// Checks that the public key hashes to the address and that the signature over the ADR-036
    /// sign doc verifies with low `s`.
    pub fn verify(&self) -> Result<(), BindingError> {
        let prefix = prefix_of(&self.address)?;
        let derived = address_of(&prefix, &self.pubkey)?;
        if derived != self.address {
            return Err(BindingError::AddressMismatch { address: self.address.clone(), derived });
        }
        let vk =
            VerifyingKey::from_sec1_bytes(&self.pubkey).map_err(|_| BindingError::PubkeyPoint)?;
        let sig = EcdsaSignature::from_slice(&self.signature)
            .map_err(|_| BindingError::SignatureMalformed)?;
        if sig.normalize_s().is_some() {
            return Err(BindingError::HighS);
        }
        vk.verify(&self.sign_doc(), &sig).map_err(|_| BindingError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::Keypair;

    const SECRET_A: [u8; 32] = [0x11; 32];
    const SECRET_B: [u8; 32] = [0x22; 32];

    fn tenant() -> PublicKey {
        Keypair::from_seed_label("tenant").public()
    }

    #[test]
    fn the_sign_doc_is_adr036_amino_json_with_sorted_keys() {
        let doc = adr036_sign_doc("inj1abc", b"hi");
        assert_eq!(
            String::from_utf8(doc).unwrap(),
            r#"{"account_number":"0","chain_id":"","fee":{"amount":[],"gas":"0"},"memo":"","msgs":[{"type":"sign/MsgSignData","value":{"data":"aGk=","signer":"inj1abc"}}],"sequence":"0"}"#
        );
        let data = binding_data(&tenant());
        assert_eq!(data, format!("leasemesh/v1/tenant-key:{}", tenant().to_hex()));
    }

    #[test]
    fn a_binding_signed_by_key_a_for_address_a_verifies() {
        let b = Binding::sign(&SECRET_A, "inj", &tenant()).unwrap();
        assert!(b.address.starts_with("inj1"));
        b.verify().unwrap();
        // Through the JSON form too.
        let req = b.to_request();
        assert_eq!(Binding::verify_request(&req).unwrap(), b);
        let json = serde_json_roundtrip(&req);
        assert_eq!(Binding::verify_request(&json).unwrap(), b);
    }

    fn serde_json_roundtrip(r: &BindingRequest) -> BindingRequest {
        serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap()
    }

    #[test]
    fn the_address_is_the_plain_cosmos_derivation() {
        // Cross-check against the reference derivation cosmrs uses for the devnet accounts.
        let b = Binding::sign(&SECRET_A, "inj", &tenant()).unwrap();
        let mut id = [0u8; 20];
        id.copy_from_slice(&Ripemd160::digest(Sha256::digest(b.pubkey)));
        assert_eq!(b.address, subtle_encoding::bech32::encode("inj", id));
        assert_eq!(address_of("cosmos", &b.pubkey).unwrap()[..7], *"cosmos1");
        assert_eq!(address_of("inj", &[2; 5]), Err(BindingError::PubkeyLength(5)));
        assert_eq!(address_of("inj", &[4; 33]), Err(BindingError::PubkeyPoint));
    }

    #[test]
    fn wrong_address_wrong_tenant_key_and_tampering_are_refused() {
        let a = Binding::sign(&SECRET_A, "inj", &tenant()).unwrap();
        let b = Binding::sign(&SECRET_B, "inj", &tenant()).unwrap();
        // A's signature and key, B's address.
        let wrong_addr = Binding { address: b.address.clone(), ..a.clone() };
        assert!(matches!(wrong_addr.verify(), Err(BindingError::AddressMismatch { .. })));
        // B's key with A's signature for B's address: the key matches, the signature not.
        let wrong_sig = Binding { signature: a.signature, ..b.clone() };
        assert_eq!(wrong_sig.verify(), Err(BindingError::BadSignature));
        // Another tenant key than the one signed.
        let other = Keypair::from_seed_label("mallory").public();
        let wrong_key = Binding { tenant_key: other, ..a.clone() };
        assert_eq!(wrong_key.verify(), Err(BindingError::BadSignature));
        // A flipped bit in the signature.
        let mut tampered = a.clone();
        tampered.signature[10] ^= 1;
        assert!(matches!(
            tampered.verify(),
            Err(BindingError::BadSignature | BindingError::SignatureMalformed)
        ));
        // Another prefix for the same key: a different address, which the doc did not sign.
        let cosmos = Binding { address: address_of("cosmos", &a.pubkey).unwrap(), ..a.clone() };
        assert_eq!(cosmos.verify(), Err(BindingError::BadSignature));
        // All zero: not a valid (r, s).
        let zero = Binding { signature: [0; 64], ..a };
        assert_eq!(zero.verify(), Err(BindingError::SignatureMalformed));
    }

    #[test]
    fn a_high_s_signature_is_refused() {
        let a = Binding::sign(&SECRET_A, "inj", &tenant()).unwrap();
        let sig = EcdsaSignature::from_slice(&a.signature).unwrap();
        // s' = n - s verifies mathematically but is not canonical.
        let (r, s) = sig.split_scalars();
        let high = EcdsaSignature::from_scalars(r, -*s).unwrap();
        let mut b = a.clone();
        b.signature.copy_from_slice(&high.to_bytes());
        assert_eq!(b.verify(), Err(BindingError::HighS));
    }

    #[test]
    fn bad_encodings_are_typed_errors() {
        let good = Binding::sign(&SECRET_A, "inj", &tenant()).unwrap().to_request();
        let with = |f: &dyn Fn(&mut BindingRequest)| {
            let mut r = good.clone();
            f(&mut r);
            Binding::verify_request(&r).unwrap_err()
        };
        assert!(matches!(
            with(&|r| r.address = "not an address".into()),
            BindingError::Address { .. }
        ));
        assert!(matches!(with(&|r| r.address.push('q')), BindingError::Address { .. }));
        assert!(matches!(with(&|r| r.pubkey_hex = "zz".into()), BindingError::PubkeyHex(_)));
        assert_eq!(with(&|r| r.pubkey_hex = "0202".into()), BindingError::PubkeyLength(2));
        assert!(matches!(
            with(&|r| r.signature_b64 = "!!!".into()),
            BindingError::SignatureBase64(_)
        ));
        assert_eq!(with(&|r| r.signature_b64 = "AAAA".into()), BindingError::SignatureLength(3));
        assert!(matches!(with(&|r| r.tenant_key_hex = "00".into()), BindingError::TenantKey(_)));
        assert!(matches!(with(&|r| r.tenant_key_hex = "xyz".into()), BindingError::TenantKey(_)));
        // A 33-byte key that is no point on the curve (but hashes to its own address).
        let mut bad_point = [0xffu8; 33];
        bad_point[0] = 2;
        let addr = address_of("inj", &bad_point).unwrap();
        let e = with(&|r| {
            r.pubkey_hex = hex::encode(bad_point);
            r.address = addr.clone();
        });
        assert_eq!(e, BindingError::PubkeyPoint);
        assert_eq!(Binding::sign(&[0; 32], "inj", &tenant()).unwrap_err(), BindingError::SecretKey);
        assert_eq!(Binding::sign(&[1; 3], "inj", &tenant()).unwrap_err(), BindingError::SecretKey);
    }
}
