//! k-of-n transactions signed by the chain's own multisig (feature `sign`): a
//! `LegacyAminoPubKey` of k of n secp256k1 keys is an account like any other; the chain checks
//! that at least k of its keys signed a transaction it sends.
//!
//! The flow, with no I/O here:
//! 1. Everyone derives the same [`Multisig`] (threshold and keys in one agreed order) and its
//!    [`Multisig::address`], the grantee of the tenants' authz grants.
//! 2. The assembler picks a [`MultisigPlan`] (account number, sequence, gas, which k keys sign)
//!    and builds the [`MultisigTx`]; [`MultisigTx::placeholder_bytes`] simulates it for gas.
//! 3. Each co-signer rebuilds the transaction from its own inputs and the plan, and signs with
//!    [`MultisigTx::cosign`] only if the proposal's body and auth info are byte for byte its own.
//! 4. [`MultisigTx::combine`] checks each signature against its key and makes the `TxRaw`.
//!
//! Sign mode: `SIGN_MODE_DIRECT` inside the multisig (what Injective's devnet accepts, see
//! docs/cosmos.md). In direct mode the signed bytes include the auth info, and with it the bit
//! array of who signs, so the signer set is part of the plan: a co-signer that does not answer
//! means a new plan and new signatures.

use cosmrs::crypto::secp256k1::SigningKey;
use cosmrs::crypto::PublicKey;
use cosmrs::proto::cosmos::crypto::multisig::v1beta1::{CompactBitArray, MultiSignature};
use cosmrs::proto::cosmos::crypto::multisig::LegacyAminoPubKey;
use cosmrs::proto::cosmos::tx::signing::v1beta1::SignMode;
use cosmrs::proto::cosmos::tx::v1beta1::mode_info::{Multi, Single, Sum};
use cosmrs::proto::cosmos::tx::v1beta1::{AuthInfo, ModeInfo, SignDoc, SignerInfo};
use cosmrs::tx::Body;
use cosmrs::Any;
use k256::ecdsa::signature::Verifier as _;
use prost::Message;
use sha2::{Digest as _, Sha256};

use crate::error::{build, CosmosError};
use crate::sign::{chain_id, fee, SignedTx, TxParams};
use crate::tx::{tx_hash, TxRaw};

/// Type URL of the multisig public key.
pub const LEGACY_AMINO_PUBKEY_TYPE: &str = "/cosmos.crypto.multisig.LegacyAminoPubKey";

/// Most keys in one multisig (the Cosmos SDK's default `TxSigLimit` is 7 signatures per tx;
/// the key count itself is bounded here to keep bit arrays and gas small).
pub const MAX_KEYS: usize = 64;

/// Amino prefix of `tendermint/PubKeyMultisigThreshold`.
const AMINO_MULTISIG_PREFIX: [u8; 4] = [0x22, 0xc1, 0xf7, 0xe2];
/// Amino prefix of `tendermint/PubKeySecp256k1`.
const AMINO_SECP256K1_PREFIX: [u8; 4] = [0xeb, 0x5a, 0xe9, 0x87];

/// A k-of-n multisig of secp256k1 keys, in the order every party agreed on (the order is part
/// of the address: the keys are not sorted here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multisig {
    threshold: u32,
    keys: Vec<PublicKey>,
}

/// One co-signer's signature, with the index of its key in the multisig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoSignature {
    pub index: usize,
    /// 64 bytes `r || s`, low s.
    pub signature: Vec<u8>,
}

/// What the assembler fixes before anyone signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultisigPlan {
    pub account_number: u64,
    pub sequence: u64,
    pub gas_limit: u64,
    /// Indexes (into the multisig's keys) of the k keys that sign, ascending, no repeats.
    pub signers: Vec<usize>,
}

/// A multisig transaction before its signatures: the bytes everyone must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultisigTx {
    pub body_bytes: Vec<u8>,
    pub auth_info_bytes: Vec<u8>,
    /// The `SIGN_MODE_DIRECT` sign doc: what each co-signer signs.
    pub sign_bytes: Vec<u8>,
    pub signers: Vec<usize>,
}

/// Why a co-signer refused to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignError {
    /// The proposed messages or memo are not what this co-signer built from its own data.
    #[error("the proposed transaction body differs from the one this co-signer built")]
    BodyMismatch,
    /// Fee, gas, sequence, signer set or key differ.
    #[error(
        "the proposed auth info (fee, gas, sequence or signers) differs from this co-signer's"
    )]
    AuthInfoMismatch,
    #[error("this key is not one of the multisig's keys chosen to sign")]
    NotASigner,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Why signatures could not be combined into a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CombineError {
    #[error("{got} signatures for a {need}-of-n multisig")]
    Threshold { got: usize, need: usize },
    #[error("key {0} is not in the plan's signer set, or signed twice")]
    NotPlanned(usize),
    #[error("the signature of key {0} does not verify over the sign bytes")]
    BadSignature(usize),
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

impl Multisig {
    /// `threshold` of `keys`: 1 ≤ k ≤ n ≤ [`MAX_KEYS`], secp256k1 keys, no key twice.
    pub fn new(threshold: u32, keys: Vec<PublicKey>) -> Result<Multisig, CosmosError> {
        let n = keys.len();
        if n == 0 || n > MAX_KEYS {
            return Err(CosmosError::Key(format!("a multisig has 1 to {MAX_KEYS} keys, not {n}")));
        }
        if threshold == 0 || threshold as usize > n {
            return Err(CosmosError::Key(format!("threshold {threshold} of {n} keys")));
        }
        for (i, k) in keys.iter().enumerate() {
            if k.type_url() != PublicKey::SECP256K1_TYPE_URL {
                return Err(CosmosError::Key(format!("key {i} is not secp256k1")));
            }
            if keys[..i].contains(k) {
                return Err(CosmosError::Key(format!("key {i} appears twice")));
            }
        }
        Ok(Multisig { threshold, keys })
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Where `key` sits in the multisig.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.keys.iter().position(|k| k == key)
    }

    /// The amino encoding the SDK hashes for the address.
    fn amino_bytes(&self) -> Vec<u8> {
        let mut out = AMINO_MULTISIG_PREFIX.to_vec();
        out.push(0x08);
        varint(u64::from(self.threshold), &mut out);
        for k in &self.keys {
            let raw = k.to_bytes();
            let mut inner = AMINO_SECP256K1_PREFIX.to_vec();
            varint(raw.len() as u64, &mut inner);
            inner.extend_from_slice(&raw);
            out.push(0x12);
            varint(inner.len() as u64, &mut out);
            out.extend_from_slice(&inner);
        }
        out
    }

    /// The account address: the first 20 bytes of SHA-256 of the amino-encoded key.
    pub fn address(&self, prefix: &str) -> Result<String, CosmosError> {
        let hash = Sha256::digest(self.amino_bytes());
        cosmrs::AccountId::new(prefix, &hash[..20])
            .map(|a| a.to_string())
            .map_err(|e| CosmosError::Key(format!("multisig address: {e}")))
    }

    /// The `LegacyAminoPubKey` as it goes into a signer info.
    pub fn public_key_any(&self) -> Result<Any, CosmosError> {
        let public_keys = self
            .keys
            .iter()
            .map(PublicKey::to_any)
            .collect::<Result<Vec<_>, _>>()
            .map_err(build("key"))?;
        let key = LegacyAminoPubKey { threshold: self.threshold, public_keys };
        Ok(Any { type_url: LEGACY_AMINO_PUBKEY_TYPE.into(), value: key.encode_to_vec() })
    }

    /// The bit array of `signers` over the multisig's keys.
    fn bitarray(&self, signers: &[usize]) -> CompactBitArray {
        let n = self.keys.len();
        let mut elems = vec![0u8; n.div_ceil(8)];
        for &i in signers {
            if let Some(byte) = elems.get_mut(i / 8) {
                *byte |= 1 << (7 - i % 8);
            }
        }
        CompactBitArray { extra_bits_stored: (n % 8) as u32, elems }
    }

    /// Checks a signer set: exactly k indexes, ascending, each a key of the multisig.
    fn check_signers(&self, signers: &[usize]) -> Result<(), CosmosError> {
        if signers.len() != self.threshold as usize {
            return Err(CosmosError::Build(format!(
                "{} signers planned for a {}-of-{} multisig",
                signers.len(),
                self.threshold,
                self.keys.len()
            )));
        }
        if signers.windows(2).any(|w| w[0] >= w[1]) || signers.iter().any(|&i| i >= self.keys.len())
        {
            return Err(CosmosError::Build(format!(
                "signer set {signers:?} is not ascending keys"
            )));
        }
        Ok(())
    }

    /// Builds the transaction of `msgs` and `memo` under `plan`; everyone who builds it from
    /// the same inputs gets the same bytes.
    pub fn build_tx(
        &self,
        params: &TxParams,
        plan: &MultisigPlan,
        msgs: Vec<Any>,
        memo: &str,
    ) -> Result<MultisigTx, CosmosError> {
        self.check_signers(&plan.signers)?;
        let body_bytes = Body::new(msgs, memo, 0u32).into_bytes().map_err(build("body"))?;
        let single = ModeInfo { sum: Some(Sum::Single(Single { mode: SignMode::Direct.into() })) };
        let mode_info = ModeInfo {
            sum: Some(Sum::Multi(Multi {
                bitarray: Some(self.bitarray(&plan.signers)),
                mode_infos: vec![single; plan.signers.len()],
            })),
        };
        let signer = SignerInfo {
            public_key: Some(self.public_key_any()?),
            mode_info: Some(mode_info),
            sequence: plan.sequence,
        };
        let auth_info = AuthInfo {
            signer_infos: vec![signer],
            fee: Some(fee(params, plan.gas_limit)?.into()),
            #[allow(deprecated)]
            tip: None,
        };
        let auth_info_bytes = auth_info.encode_to_vec();
        let sign_bytes = SignDoc {
            body_bytes: body_bytes.clone(),
            auth_info_bytes: auth_info_bytes.clone(),
            chain_id: chain_id(params)?.to_string(),
            account_number: plan.account_number,
        }
        .encode_to_vec();
        Ok(MultisigTx { body_bytes, auth_info_bytes, sign_bytes, signers: plan.signers.clone() })
    }
}

impl MultisigTx {
    fn raw(&self, signatures: Vec<Vec<u8>>) -> Vec<u8> {
        let multi = MultiSignature { signatures }.encode_to_vec();
        TxRaw {
            body_bytes: self.body_bytes.clone(),
            auth_info_bytes: self.auth_info_bytes.clone(),
            signatures: vec![multi],
        }
        .encode_to_vec()
    }

    /// The transaction with k all-zero signatures: what to simulate for gas (the chain does not
    /// check signatures in a simulation, but counts their size and verification gas).
    pub fn placeholder_bytes(&self) -> Vec<u8> {
        self.raw(vec![vec![0; 64]; self.signers.len()])
    }

    /// A co-signer's signature, given only when `proposed` (the assembler's transaction) is
    /// byte for byte `self` (the transaction this co-signer built from its own inputs).
    pub fn cosign(
        &self,
        proposed: &MultisigTx,
        multisig: &Multisig,
        key: &SigningKey,
    ) -> Result<CoSignature, CosignError> {
        if proposed.body_bytes != self.body_bytes {
            return Err(CosignError::BodyMismatch);
        }
        if proposed.auth_info_bytes != self.auth_info_bytes || proposed.signers != self.signers {
            return Err(CosignError::AuthInfoMismatch);
        }
        let index = multisig.index_of(&key.public_key()).ok_or(CosignError::NotASigner)?;
        if !self.signers.contains(&index) {
            return Err(CosignError::NotASigner);
        }
        let sig = key.sign(&self.sign_bytes).map_err(|e| CosignError::Sign(e.to_string()))?;
        Ok(CoSignature { index, signature: sig.to_bytes().to_vec() })
    }

    /// The signed transaction from the planned signers' signatures, each checked against its
    /// key over the sign bytes.
    pub fn combine(
        &self,
        multisig: &Multisig,
        signatures: &[CoSignature],
    ) -> Result<SignedTx, CombineError> {
        let need = self.signers.len();
        let mut by_index: Vec<Option<&[u8]>> = vec![None; need];
        for s in signatures {
            let slot = self
                .signers
                .iter()
                .position(|&i| i == s.index)
                .and_then(|p| by_index.get_mut(p))
                .filter(|slot| slot.is_none())
                .ok_or(CombineError::NotPlanned(s.index))?;
            let ok = multisig
                .keys
                .get(s.index)
                .is_some_and(|k| verifies(k, &self.sign_bytes, &s.signature));
            if !ok {
                return Err(CombineError::BadSignature(s.index));
            }
            *slot = Some(&s.signature);
        }
        let sigs: Vec<Vec<u8>> = by_index.into_iter().flatten().map(<[u8]>::to_vec).collect();
        if sigs.len() < need {
            return Err(CombineError::Threshold { got: sigs.len(), need });
        }
        let bytes = self.raw(sigs);
        let hash = tx_hash(&bytes);
        Ok(SignedTx { bytes, hash })
    }
}

fn verifies(key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(vk) = k256::ecdsa::VerifyingKey::from_sec1_bytes(&key.to_bytes()) else { return false };
    let Ok(sig) = k256::ecdsa::Signature::from_slice(sig) else { return false };
    vk.verify(msg, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sign::{msg_exec, msg_send, signing_key};

    fn keys() -> Vec<SigningKey> {
        (1..=3u8).map(|i| signing_key(&[i; 32]).unwrap()).collect()
    }

    fn params() -> TxParams {
        TxParams {
            chain_id: "injective-777".into(),
            fee_denom: "inj".into(),
            gas_price: 160_000_000,
        }
    }

    fn multisig() -> Multisig {
        Multisig::new(2, keys().iter().map(SigningKey::public_key).collect()).unwrap()
    }

    fn tx(ms: &Multisig, amount: u128, signers: Vec<usize>) -> MultisigTx {
        let grantee = ms.address("inj").unwrap();
        let send = msg_send("inj1tenant", "inj1provider", "inj", amount).unwrap();
        let exec = msg_exec(&grantee, vec![send]).unwrap();
        let plan = MultisigPlan { account_number: 5, sequence: 0, gas_limit: 200_000, signers };
        ms.build_tx(&params(), &plan, vec![exec], "lm:v1:1:0/1:ab").unwrap()
    }

    #[test]
    fn a_multisig_is_k_of_n_distinct_secp256k1_keys() {
        let pks: Vec<PublicKey> = keys().iter().map(SigningKey::public_key).collect();
        assert!(Multisig::new(0, pks.clone()).is_err());
        assert!(Multisig::new(4, pks.clone()).is_err());
        assert!(Multisig::new(1, vec![]).is_err());
        assert!(Multisig::new(2, vec![pks[0], pks[0], pks[1]]).is_err());
        let ms = multisig();
        let addr = ms.address("inj").unwrap();
        // What `injectived keys add ms --multisig k1,k2,k3 --multisig-threshold 2 --nosort`
        // derives for the public keys of the secrets [1; 32], [2; 32], [3; 32].
        assert_eq!(addr, "inj1896yggmlu07f0cgd8jrc8mfn2rslkjm8urxy4u");
        // The key order is part of the address; the threshold too.
        let swapped = Multisig::new(2, vec![pks[1], pks[0], pks[2]]).unwrap();
        assert_ne!(swapped.address("inj").unwrap(), addr);
        assert_ne!(Multisig::new(3, pks).unwrap().address("inj").unwrap(), addr);
        // The key as cosmrs reads it back.
        let any = ms.public_key_any().unwrap();
        let back = cosmrs::crypto::LegacyAminoMultisig::try_from(&any).unwrap();
        assert_eq!((back.threshold, back.public_keys.as_slice()), (2, ms.keys()));
    }

    #[test]
    fn two_co_signers_combine_and_a_tampered_amount_gets_no_signature() {
        let ms = multisig();
        let ks = keys();
        let proposed = tx(&ms, 1_000, vec![0, 2]);
        // Co-signer 2 rebuilds the same thing from its own data: it signs.
        let mine = tx(&ms, 1_000, vec![0, 2]);
        assert_eq!(mine, proposed);
        let s0 = proposed.cosign(&proposed, &ms, &ks[0]).unwrap();
        let s2 = mine.cosign(&proposed, &ms, &ks[2]).unwrap();
        let signed = proposed.combine(&ms, &[s2.clone(), s0.clone()]).unwrap();
        let parsed = cosmrs::Tx::from_bytes(&signed.bytes).unwrap();
        assert_eq!(parsed.body.memo, "lm:v1:1:0/1:ab");
        assert_eq!(crate::tx::summarize(&signed.bytes).unwrap().signatures, 1);
        // One amount changed by the assembler: the honest co-signer refuses.
        let tampered = tx(&ms, 1_001, vec![0, 2]);
        assert_eq!(mine.cosign(&tampered, &ms, &ks[2]), Err(CosignError::BodyMismatch));
        // Another signer set or gas: refused too; a key not chosen, or not in the multisig.
        assert_eq!(
            tx(&ms, 1_000, vec![0, 1]).cosign(&proposed, &ms, &ks[2]),
            Err(CosignError::AuthInfoMismatch)
        );
        assert_eq!(mine.cosign(&proposed, &ms, &ks[1]), Err(CosignError::NotASigner));
        let stranger = signing_key(&[9; 32]).unwrap();
        assert_eq!(mine.cosign(&proposed, &ms, &stranger), Err(CosignError::NotASigner));
        // Combining: fewer than k, twice the same key, a key not planned, a bad signature.
        assert_eq!(
            proposed.combine(&ms, std::slice::from_ref(&s0)),
            Err(CombineError::Threshold { got: 1, need: 2 })
        );
        assert_eq!(
            proposed.combine(&ms, &[s0.clone(), s0.clone()]),
            Err(CombineError::NotPlanned(0))
        );
        let s1 = CoSignature { index: 1, signature: s0.signature.clone() };
        assert_eq!(proposed.combine(&ms, &[s0.clone(), s1]), Err(CombineError::NotPlanned(1)));
        let forged = CoSignature { index: 2, signature: s0.signature.clone() };
        assert_eq!(proposed.combine(&ms, &[s0, forged]), Err(CombineError::BadSignature(2)));
        // A plan that is not k ascending keys is refused before anything is built.
        let plan =
            MultisigPlan { account_number: 5, sequence: 0, gas_limit: 1, signers: vec![2, 0] };
        assert!(ms.build_tx(&params(), &plan, vec![], "").is_err());
        let plan = MultisigPlan { signers: vec![0, 3], ..plan };
        assert!(ms.build_tx(&params(), &plan, vec![], "").is_err());
    }

    #[test]
    fn the_bit_array_marks_the_signers_from_the_high_bit() {
        let ms = multisig();
        let b = ms.bitarray(&[0, 2]);
        assert_eq!((b.extra_bits_stored, b.elems), (3, vec![0b1010_0000]));
    }
}
