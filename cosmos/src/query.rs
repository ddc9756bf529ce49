//! ABCI queries as bytes (feature `sign`): the path and protobuf request of each query the
//! client and the settler make, and the reading of the answer. The transport is the caller's.

use cosmrs::proto::cosmos::auth::v1beta1::{
    BaseAccount, QueryAccountRequest, QueryAccountResponse,
};
use cosmrs::proto::cosmos::authz::v1beta1::{
    GenericAuthorization, Grant, QueryGrantsRequest, QueryGrantsResponse,
};
use cosmrs::proto::cosmos::bank::v1beta1::{
    QueryBalanceRequest, QueryBalanceResponse, SendAuthorization,
};
use cosmrs::proto::cosmos::tx::v1beta1::{SimulateRequest, SimulateResponse};
use cosmrs::Any;
use prost::Message;

use crate::error::{decode, CosmosError};

/// Type URL of the account wrapper Injective returns for every account, secp256k1 ones too.
pub const ETH_ACCOUNT_TYPE: &str = "/injective.types.v1beta1.EthAccount";
pub const BASE_ACCOUNT_TYPE: &str = "/cosmos.auth.v1beta1.BaseAccount";
pub const MSG_SEND_TYPE: &str = "/cosmos.bank.v1beta1.MsgSend";
pub const SEND_AUTHORIZATION_TYPE: &str = "/cosmos.bank.v1beta1.SendAuthorization";
pub const GENERIC_AUTHORIZATION_TYPE: &str = "/cosmos.authz.v1beta1.GenericAuthorization";

pub const ACCOUNT_PATH: &str = "/cosmos.auth.v1beta1.Query/Account";
pub const BALANCE_PATH: &str = "/cosmos.bank.v1beta1.Query/Balance";
pub const GRANTS_PATH: &str = "/cosmos.authz.v1beta1.Query/Grants";
pub const SIMULATE_PATH: &str = "/cosmos.tx.v1beta1.Service/Simulate";

/// One ABCI query: the gRPC method path and the encoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbciQuery {
    pub path: &'static str,
    pub data: Vec<u8>,
}

/// Account number and next sequence of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountInfo {
    pub number: u64,
    pub sequence: u64,
}

/// Whether a refused query's log says the thing does not exist (an account never funded, no
/// grant): an answer, not a failure.
pub fn is_not_found(log: &str) -> bool {
    log.contains("not found")
}

pub fn account_query(address: &str) -> AbciQuery {
    let req = QueryAccountRequest { address: address.into() };
    AbciQuery { path: ACCOUNT_PATH, data: req.encode_to_vec() }
}

/// Account number and sequence from the answer to [`account_query`].
pub fn decode_account(value: &[u8]) -> Result<Option<AccountInfo>, CosmosError> {
    let resp = QueryAccountResponse::decode(value).map_err(decode("account"))?;
    let Some(any) = resp.account else { return Ok(None) };
    let base = decode_base_account(&any)?;
    Ok(Some(AccountInfo { number: base.account_number, sequence: base.sequence }))
}

/// `injective.types.v1beta1.EthAccount`: only field 1; prost skips the others (code hash).
#[derive(Clone, PartialEq, prost::Message)]
struct EthAccount {
    #[prost(message, optional, tag = "1")]
    base_account: Option<BaseAccount>,
}

/// The `BaseAccount` of an account `Any`: a plain one, or Injective's `EthAccount` wrapper.
pub fn decode_base_account(any: &Any) -> Result<BaseAccount, CosmosError> {
    let what = any.type_url.as_str();
    match what {
        BASE_ACCOUNT_TYPE => BaseAccount::decode(any.value.as_slice()).map_err(decode(what)),
        ETH_ACCOUNT_TYPE => {
            EthAccount::decode(any.value.as_slice()).map_err(decode(what))?.base_account.ok_or_else(
                || CosmosError::Decode { what: what.into(), detail: "no base_account".into() },
            )
        }
        other => Err(CosmosError::Decode {
            what: "account".into(),
            detail: format!("unknown account type {other}"),
        }),
    }
}

pub fn simulate_query(tx_bytes: &[u8]) -> AbciQuery {
    #[allow(deprecated)]
    let req = SimulateRequest { tx: None, tx_bytes: tx_bytes.to_vec() };
    AbciQuery { path: SIMULATE_PATH, data: req.encode_to_vec() }
}

/// Gas used, from the answer to [`simulate_query`].
pub fn decode_simulate(value: &[u8]) -> Result<u64, CosmosError> {
    let resp = SimulateResponse::decode(value).map_err(decode("simulation"))?;
    resp.gas_info.map(|g| g.gas_used).ok_or_else(|| CosmosError::Decode {
        what: "simulation".into(),
        detail: "no gas info".into(),
    })
}

pub fn balance_query(address: &str, denom: &str) -> AbciQuery {
    let req = QueryBalanceRequest { address: address.into(), denom: denom.into() };
    AbciQuery { path: BALANCE_PATH, data: req.encode_to_vec() }
}

pub fn decode_balance(value: &[u8]) -> Result<u128, CosmosError> {
    let resp = QueryBalanceResponse::decode(value).map_err(decode("balance"))?;
    resp.balance.map_or(Ok(0), |c| parse_amount(&c.amount))
}

/// The grants of `granter` to `grantee` for `MsgSend`.
pub fn send_grants_query(granter: &str, grantee: &str) -> AbciQuery {
    let req = QueryGrantsRequest {
        granter: granter.into(),
        grantee: grantee.into(),
        msg_type_url: MSG_SEND_TYPE.into(),
        pagination: None,
    };
    AbciQuery { path: GRANTS_PATH, data: req.encode_to_vec() }
}

pub fn decode_grants(value: &[u8]) -> Result<Vec<Grant>, CosmosError> {
    Ok(QueryGrantsResponse::decode(value).map_err(decode("grants"))?.grants)
}

/// The spend limit of the first `SendAuthorization` among `grants`, as (denom, amount) pairs;
/// `None` when there is none.
pub fn send_limit(grants: &[Grant]) -> Result<Option<Vec<(String, u128)>>, CosmosError> {
    for grant in grants {
        let Some(auth) = &grant.authorization else { continue };
        if auth.type_url != SEND_AUTHORIZATION_TYPE {
            continue;
        }
        let send = SendAuthorization::decode(auth.value.as_slice())
            .map_err(decode("SendAuthorization"))?;
        let mut limit = Vec::with_capacity(send.spend_limit.len());
        for c in send.spend_limit {
            let amount = parse_amount(&c.amount)?;
            limit.push((c.denom, amount));
        }
        return Ok(Some(limit));
    }
    Ok(None)
}

/// What a grantee may still send on a granter's behalf in one denom, through authz `MsgExec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAllowance {
    /// No live grant for `MsgSend`, or a `SendAuthorization` without this denom.
    None,
    /// A `SendAuthorization`'s remaining spend limit in this denom.
    Limited(u128),
    /// A `GenericAuthorization` for `MsgSend`: only the balance limits it.
    Unlimited,
}

/// Reads the allowance in `denom` from the grants the chain returned for (granter, grantee,
/// `MsgSend`). Grants whose expiration is at or before `now_unix_s` are skipped (the chain
/// prunes them lazily). A `SendAuthorization`'s `allow_list` is not checked: the settler pays
/// providers, and a list that leaves one out makes the chain refuse that payment.
pub fn send_allowance_in(
    grants: &[Grant],
    denom: &str,
    now_unix_s: i64,
) -> Result<SendAllowance, CosmosError> {
    let mut out = SendAllowance::None;
    for grant in grants {
        if grant.expiration.as_ref().is_some_and(|t| t.seconds <= now_unix_s) {
            continue;
        }
        let Some(auth) = &grant.authorization else { continue };
        match auth.type_url.as_str() {
            SEND_AUTHORIZATION_TYPE => {
                let send = SendAuthorization::decode(auth.value.as_slice())
                    .map_err(decode("SendAuthorization"))?;
                for c in send.spend_limit.iter().filter(|c| c.denom == denom) {
                    let amount = parse_amount(&c.amount)?;
                    out = match out {
                        SendAllowance::Unlimited => SendAllowance::Unlimited,
                        SendAllowance::Limited(a) => SendAllowance::Limited(a.max(amount)),
                        SendAllowance::None => SendAllowance::Limited(amount),
                    };
                }
            }
            GENERIC_AUTHORIZATION_TYPE => {
                let generic = GenericAuthorization::decode(auth.value.as_slice())
                    .map_err(decode("GenericAuthorization"))?;
                if generic.msg == MSG_SEND_TYPE {
                    out = SendAllowance::Unlimited;
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A decimal coin amount.
pub fn parse_amount(s: &str) -> Result<u128, CosmosError> {
    s.parse::<u128>()
        .map_err(|e| CosmosError::Decode { what: format!("amount {s:?}"), detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cosmrs::proto::cosmos::base::v1beta1::Coin as ProtoCoin;

    #[test]
    fn eth_account_wrapper_yields_the_base_account() {
        let base = BaseAccount {
            address: "inj1xyz".into(),
            pub_key: None,
            account_number: 12,
            sequence: 34,
        };
        let mut value = EthAccount { base_account: Some(base.clone()) }.encode_to_vec();
        // A code_hash in field 2, as the chain sends it.
        value.extend_from_slice(&[0x12, 0x02, 0xab, 0xcd]);
        let any = Any { type_url: ETH_ACCOUNT_TYPE.into(), value };
        assert_eq!(decode_base_account(&any).unwrap(), base);
        let resp = QueryAccountResponse { account: Some(any) }.encode_to_vec();
        assert_eq!(decode_account(&resp).unwrap(), Some(AccountInfo { number: 12, sequence: 34 }));
        let plain = Any { type_url: BASE_ACCOUNT_TYPE.into(), value: base.encode_to_vec() };
        assert_eq!(decode_base_account(&plain).unwrap(), base);
        let other = Any { type_url: "/x.Y".into(), value: vec![] };
        assert!(decode_base_account(&other).is_err());
        assert!(decode_account(&[0xff, 0xff]).is_err());
    }

    fn coin(denom: &str, amount: &str) -> ProtoCoin {
        ProtoCoin { denom: denom.into(), amount: amount.into() }
    }

    fn grant(type_url: &str, value: Vec<u8>, expires_s: Option<i64>) -> Grant {
        Grant {
            authorization: Some(Any { type_url: type_url.into(), value }),
            expiration: expires_s.map(|seconds| cosmrs::proto::Timestamp { seconds, nanos: 0 }),
        }
    }

    #[test]
    fn send_allowance_reads_send_and_generic_authorizations() {
        let send = |coins: Vec<ProtoCoin>| {
            SendAuthorization { spend_limit: coins, allow_list: vec![] }.encode_to_vec()
        };
        let limited = grant(
            SEND_AUTHORIZATION_TYPE,
            send(vec![coin("inj", "1000000000000000000000"), coin("uusdt", "5")]),
            Some(2_000),
        );
        let now = 1_000;
        let one = std::slice::from_ref(&limited);
        assert_eq!(
            send_allowance_in(one, "inj", now).unwrap(),
            SendAllowance::Limited(1_000_000_000_000_000_000_000)
        );
        assert_eq!(send_allowance_in(one, "uusdt", now).unwrap(), SendAllowance::Limited(5));
        assert_eq!(
            send_limit(one).unwrap(),
            Some(vec![("inj".into(), 1_000_000_000_000_000_000_000), ("uusdt".into(), 5)])
        );
        // Another denom, no grant, an expired grant, another message's grant: nothing.
        assert_eq!(send_allowance_in(one, "atom", now).unwrap(), SendAllowance::None);
        assert_eq!(send_allowance_in(&[], "inj", now).unwrap(), SendAllowance::None);
        assert_eq!(send_limit(&[]).unwrap(), None);
        assert_eq!(send_allowance_in(one, "inj", 2_000).unwrap(), SendAllowance::None);
        let other = GenericAuthorization { msg: "/cosmos.staking.v1beta1.MsgDelegate".into() };
        let other = grant(GENERIC_AUTHORIZATION_TYPE, other.encode_to_vec(), None);
        assert_eq!(send_allowance_in(&[other], "inj", now).unwrap(), SendAllowance::None);
        // A generic grant for MsgSend: only the balance limits what can be sent.
        let generic = GenericAuthorization { msg: MSG_SEND_TYPE.into() };
        let generic = grant(GENERIC_AUTHORIZATION_TYPE, generic.encode_to_vec(), None);
        assert_eq!(send_allowance_in(&[generic], "inj", now).unwrap(), SendAllowance::Unlimited);
        // Garbage is an error, not a silent zero.
        let bad = grant(SEND_AUTHORIZATION_TYPE, vec![0xff, 0xff, 0xff], None);
        assert!(matches!(
            send_allowance_in(std::slice::from_ref(&bad), "inj", now),
            Err(CosmosError::Decode { .. })
        ));
        assert!(send_limit(&[bad]).is_err());
        let bad_amount = grant(SEND_AUTHORIZATION_TYPE, send(vec![coin("inj", "-1")]), None);
        assert!(send_allowance_in(&[bad_amount], "inj", now).is_err());
    }
}
