//! Building and signing single-signer transactions (feature `sign`): messages, the fee, the
//! `SIGN_MODE_DIRECT` sign doc, the signed bytes and their hash.

use cosmrs::crypto::secp256k1::SigningKey;
use cosmrs::crypto::PublicKey;
use cosmrs::proto::cosmos::authz::v1beta1::{Grant, MsgExec, MsgGrant};
use cosmrs::proto::cosmos::bank::v1beta1::{MsgSend, SendAuthorization};
use cosmrs::proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmrs::tx::{Body, Fee, SignDoc, SignerInfo};
use cosmrs::Any;

use crate::error::{build, CosmosError};
use crate::tx::tx_hash;

/// Gas limit of a transaction signed only to be simulated (the chain charges the fee on the
/// gas limit, so the real transaction uses the simulated amount plus a margin).
pub const PROBE_GAS: u64 = 400_000;

/// What every transaction on one chain carries besides its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxParams {
    pub chain_id: String,
    /// Denom fees are paid in (`inj`).
    pub fee_denom: String,
    /// Price of one unit of gas in `fee_denom`.
    pub gas_price: u128,
}

/// A signed transaction: the bytes to broadcast and their hash (upper-case hex SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub bytes: Vec<u8>,
    pub hash: String,
}

/// The gas limit to sign with after a simulation used `simulated`: ×1.3 + 5000.
pub fn gas_with_margin(simulated: u64) -> u64 {
    simulated.saturating_mul(13).div_ceil(10).saturating_add(5_000)
}

/// A secp256k1 key from its 32-byte secret.
pub fn signing_key(secret: &[u8]) -> Result<SigningKey, CosmosError> {
    SigningKey::from_slice(secret).map_err(|e| CosmosError::Key(e.to_string()))
}

/// The bech32 address of a single public key.
pub fn address_of(key: &PublicKey, prefix: &str) -> Result<String, CosmosError> {
    key.account_id(prefix).map(|a| a.to_string()).map_err(|e| CosmosError::Key(e.to_string()))
}

/// The fee of a transaction of `gas_limit`: `gas_limit × gas_price` in the fee denom.
pub fn fee(params: &TxParams, gas_limit: u64) -> Result<Fee, CosmosError> {
    let amount = u128::from(gas_limit)
        .checked_mul(params.gas_price)
        .ok_or_else(|| CosmosError::Build("fee overflows".into()))?;
    let denom = params.fee_denom.parse().map_err(build("fee denom"))?;
    Ok(Fee::from_amount_and_gas(cosmrs::Coin { denom, amount }, gas_limit))
}

pub(crate) fn chain_id(params: &TxParams) -> Result<cosmrs::tendermint::chain::Id, CosmosError> {
    params
        .chain_id
        .parse()
        .map_err(|e| CosmosError::Build(format!("chain id {}: {e}", params.chain_id)))
}

/// Signs a transaction of `msgs` by `key` (`SIGN_MODE_DIRECT`), at `account_number` and
/// `sequence`, with `gas_limit` and the fee it implies.
pub fn sign_direct(
    params: &TxParams,
    key: &SigningKey,
    account_number: u64,
    sequence: u64,
    msgs: Vec<Any>,
    memo: &str,
    gas_limit: u64,
) -> Result<SignedTx, CosmosError> {
    let body = Body::new(msgs, memo, 0u32);
    let auth_info = SignerInfo::single_direct(Some(key.public_key()), sequence)
        .auth_info(fee(params, gas_limit)?);
    let raw = SignDoc::new(&body, &auth_info, &chain_id(params)?, account_number)
        .and_then(|doc| doc.sign(key))
        .map_err(build("signing"))?;
    let bytes = raw.to_bytes().map_err(build("encoding"))?;
    let hash = tx_hash(&bytes);
    Ok(SignedTx { bytes, hash })
}

fn coins(amounts: &[(String, u128)]) -> Vec<ProtoCoin> {
    amounts
        .iter()
        .map(|(denom, amount)| ProtoCoin { denom: denom.clone(), amount: amount.to_string() })
        .collect()
}

/// A `MsgSend` as `Any`.
pub fn msg_send(from: &str, to: &str, denom: &str, amount: u128) -> Result<Any, CosmosError> {
    let msg = MsgSend {
        from_address: from.into(),
        to_address: to.into(),
        amount: coins(&[(denom.to_owned(), amount)]),
    };
    Any::from_msg(&msg).map_err(|e| CosmosError::Build(format!("MsgSend: {e}")))
}

/// An authz `MsgGrant` of a `SendAuthorization` of `spend_limit`, without expiry.
pub fn msg_grant_send(
    granter: &str,
    grantee: &str,
    spend_limit: &[(String, u128)],
) -> Result<Any, CosmosError> {
    let auth = SendAuthorization { spend_limit: coins(spend_limit), allow_list: Vec::new() };
    let authorization =
        Any::from_msg(&auth).map_err(|e| CosmosError::Build(format!("SendAuthorization: {e}")))?;
    let grant = MsgGrant {
        granter: granter.into(),
        grantee: grantee.into(),
        grant: Some(Grant { authorization: Some(authorization), expiration: None }),
    };
    Any::from_msg(&grant).map_err(|e| CosmosError::Build(format!("MsgGrant: {e}")))
}

/// An authz `MsgExec` of `msgs` by `grantee`.
pub fn msg_exec(grantee: &str, msgs: Vec<Any>) -> Result<Any, CosmosError> {
    let exec = MsgExec { grantee: grantee.into(), msgs };
    Any::from_msg(&exec).map_err(|e| CosmosError::Build(format!("MsgExec: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn margin_is_thirty_percent_plus_5000() {
        assert_eq!(gas_with_margin(100_000), 135_000);
        assert_eq!(gas_with_margin(1), 5_002);
    }

    #[test]
    fn a_signed_tx_reads_back_and_its_hash_is_its_bytes() {
        let params = TxParams {
            chain_id: "injective-777".into(),
            fee_denom: "inj".into(),
            gas_price: 160_000_000,
        };
        let key = signing_key(&[0x42; 32]).unwrap();
        let from = address_of(&key.public_key(), "inj").unwrap();
        let send = msg_send(&from, &from, "inj", 1).unwrap();
        let tx = sign_direct(&params, &key, 3, 9, vec![send], "lm:v1:x", 100_000).unwrap();
        assert_eq!(tx.hash, tx_hash(&tx.bytes));
        let s = crate::tx::summarize(&tx.bytes).unwrap();
        assert_eq!(
            (s.memo.as_str(), s.sequences.as_slice(), s.signatures),
            ("lm:v1:x", &[9][..], 1)
        );
        let parsed = cosmrs::Tx::from_bytes(&tx.bytes).unwrap();
        assert_eq!(parsed.auth_info.fee.gas_limit, 100_000);
        assert_eq!(parsed.auth_info.fee.amount[0].amount, 16_000_000_000_000);
        assert!(signing_key(&[0; 32]).is_err());
        let overflow = TxParams { gas_price: u128::MAX, ..params };
        assert!(matches!(fee(&overflow, 2), Err(CosmosError::Build(_))));
    }
}
