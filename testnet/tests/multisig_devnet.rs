//! k-of-n settlement with the chain's own multisig, on a fresh `injectived` devnet: a 2-of-3
//! `LegacyAminoPubKey` account of three settlers' keys is the grantee of a tenant's authz
//! `SendAuthorization` and pays a provider through `MsgExec(MsgSend)`.
//!
//! - Two settlers sign (`SIGN_MODE_DIRECT` inside the multisig): the chain accepts, the provider
//!   gains exactly the amount, the tenant's grant shrinks by it; another pair signs the next one.
//! - One settler alone: the chain refuses the transaction and nothing moves.
//! - The chain accepts `SIGN_MODE_LEGACY_AMINO_JSON` inside the multisig as well.
//! - A settler that tampers with one amount gets no second signature: the co-signer rebuilds the
//!   transaction from its own data and refuses bytes that are not its own.
//!
//! Needs `injectived` on PATH (scripts/install-chain.sh).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use leasemesh_cosmos::cosmrs::proto::cosmos::crypto::multisig::v1beta1::CompactBitArray;
use leasemesh_cosmos::cosmrs::proto::cosmos::tx::v1beta1::mode_info::Sum;
use leasemesh_cosmos::cosmrs::proto::cosmos::tx::v1beta1::{AuthInfo, SignDoc};
use leasemesh_cosmos::multisig::{CombineError, CosignError, Multisig, MultisigPlan, MultisigTx};
use leasemesh_cosmos::sign::{gas_with_margin, msg_exec, msg_send, TxParams, PROBE_GAS};
use leasemesh_cosmos::tx::{tx_hash, TxRaw};
use leasemesh_settlement::cosmos::{ChainClient, ChainError, SigningKey};
use leasemesh_testnet::chain::chain_config;
use leasemesh_testnet::devnet::{Devnet, DevnetConfig, DENOM};
use prost::Message;

const INJ: u128 = 1_000_000_000_000_000_000;
const GRANT: u128 = 100 * INJ;
const AMOUNT: u128 = 7 * INJ + 123;
const GAS_PRICE: u128 = 160_000_000;

/// What every settler builds from its own data: the tenant pays the provider `amount`
/// through the multisig's grant.
fn payment(
    ms: &Multisig,
    params: &TxParams,
    plan: &MultisigPlan,
    tenant: &str,
    provider: &str,
    amount: u128,
) -> MultisigTx {
    let grantee = ms.address("inj").unwrap();
    let exec =
        msg_exec(&grantee, vec![msg_send(tenant, provider, DENOM, amount).unwrap()]).unwrap();
    ms.build_tx(params, plan, vec![exec], "lm:v1:multisig-devnet").unwrap()
}

/// The same transaction re-planned for one signer only (the bit array and mode infos of one
/// key), signed by that key: what a lone settler could send.
fn signed_by_one(
    tx: &MultisigTx,
    chain_id: &str,
    account_number: u64,
    key: &SigningKey,
    index: usize,
) -> Vec<u8> {
    let mut auth = AuthInfo::decode(tx.auth_info_bytes.as_slice()).unwrap();
    let Some(Sum::Multi(multi)) = auth.signer_infos[0].mode_info.as_mut().unwrap().sum.as_mut()
    else {
        panic!("not a multisig signer")
    };
    multi.bitarray = Some(CompactBitArray { extra_bits_stored: 3, elems: vec![0x80 >> index] });
    multi.mode_infos.truncate(1);
    let auth_info_bytes = auth.encode_to_vec();
    let doc = SignDoc {
        body_bytes: tx.body_bytes.clone(),
        auth_info_bytes: auth_info_bytes.clone(),
        chain_id: chain_id.into(),
        account_number,
    };
    let sig = key.sign(&doc.encode_to_vec()).unwrap().to_bytes().to_vec();
    let multi_sig =
        leasemesh_cosmos::cosmrs::proto::cosmos::crypto::multisig::v1beta1::MultiSignature {
            signatures: vec![sig],
        };
    TxRaw {
        body_bytes: tx.body_bytes.clone(),
        auth_info_bytes,
        signatures: vec![multi_sig.encode_to_vec()],
    }
    .encode_to_vec()
}

/// A 2-of-3 `MsgSend` from the multisig account signed in `SIGN_MODE_LEGACY_AMINO_JSON`
/// inside the multisig, by keys 0 and 1.
fn amino_json_send(
    ms: &Multisig,
    keys: &[SigningKey],
    chain_id: &str,
    account_number: u64,
    sequence: u64,
    to: &str,
    amount: u128,
) -> Vec<u8> {
    use leasemesh_cosmos::cosmrs::proto::cosmos::tx::signing::v1beta1::SignMode;
    use leasemesh_cosmos::cosmrs::proto::cosmos::tx::v1beta1::mode_info::{Multi, Single};
    use leasemesh_cosmos::cosmrs::proto::cosmos::tx::v1beta1::{ModeInfo, SignerInfo};
    let from = ms.address("inj").unwrap();
    let gas: u64 = 300_000;
    let fee = u128::from(gas) * GAS_PRICE;
    let memo = "lm:v1:amino";
    let body = leasemesh_cosmos::cosmrs::tx::Body::new(
        vec![msg_send(&from, to, DENOM, amount).unwrap()],
        memo,
        0u32,
    );
    let body_bytes = body.into_bytes().unwrap();
    let single =
        ModeInfo { sum: Some(Sum::Single(Single { mode: SignMode::LegacyAminoJson.into() })) };
    let auth = AuthInfo {
        signer_infos: vec![SignerInfo {
            public_key: Some(ms.public_key_any().unwrap()),
            mode_info: Some(ModeInfo {
                sum: Some(Sum::Multi(Multi {
                    bitarray: Some(CompactBitArray {
                        extra_bits_stored: 3,
                        elems: vec![0b1100_0000],
                    }),
                    mode_infos: vec![single.clone(), single],
                })),
            }),
            sequence,
        }],
        fee: Some(
            leasemesh_cosmos::sign::fee(
                &TxParams {
                    chain_id: chain_id.into(),
                    fee_denom: DENOM.into(),
                    gas_price: GAS_PRICE,
                },
                gas,
            )
            .unwrap()
            .into(),
        ),
        #[allow(deprecated)]
        tip: None,
    };
    let doc = format!(
        r#"{{"account_number":"{account_number}","chain_id":"{chain_id}","fee":{{"amount":[{{"amount":"{fee}","denom":"{DENOM}"}}],"gas":"{gas}"}},"memo":"{memo}","msgs":[{{"type":"cosmos-sdk/MsgSend","value":{{"amount":[{{"amount":"{amount}","denom":"{DENOM}"}}],"from_address":"{from}","to_address":"{to}"}}}}],"sequence":"{sequence}"}}"#
    );
    let sigs: Vec<Vec<u8>> =
        keys[..2].iter().map(|k| k.sign(doc.as_bytes()).unwrap().to_bytes().to_vec()).collect();
    let multi_sig =
        leasemesh_cosmos::cosmrs::proto::cosmos::crypto::multisig::v1beta1::MultiSignature {
            signatures: sigs,
        };
    TxRaw {
        body_bytes,
        auth_info_bytes: auth.encode_to_vec(),
        signatures: vec![multi_sig.encode_to_vec()],
    }
    .encode_to_vec()
}

async fn broadcast_and_wait(
    client: &ChainClient,
    bytes: &[u8],
) -> leasemesh_settlement::cosmos::TxOutcome {
    client.broadcast(bytes).await.unwrap();
    client.wait_tx(&tx_hash(bytes), Duration::from_secs(30)).await.unwrap().expect("tx in a block")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_of_three_multisig_pays_and_one_settler_cannot() {
    let devnet =
        Devnet::start(DevnetConfig { accounts: 6, ..DevnetConfig::default() }).await.unwrap();
    let a = devnet.accounts.clone();
    let (tenant, provider, funder) = (&a[0], &a[1], &a[5]);
    let settlers: Vec<SigningKey> = a[2..5].iter().map(|s| s.signing_key().unwrap()).collect();
    let chain = chain_config(&devnet);
    let params = chain.tx_params();
    let client = ChainClient::new(chain).unwrap();

    let ms = Multisig::new(2, settlers.iter().map(SigningKey::public_key).collect()).unwrap();
    let ms_addr = ms.address("inj").unwrap();
    // The multisig account exists once funded (it pays the fees); the tenant grants it.
    client.send(&funder.signing_key().unwrap(), &ms_addr, DENOM, 10 * INJ).await.unwrap();
    client
        .grant_send(&tenant.signing_key().unwrap(), &ms_addr, &[(DENOM.into(), GRANT)])
        .await
        .unwrap();
    let account = client.account(&ms_addr).await.unwrap().expect("funded multisig account");
    assert_eq!(account.sequence, 0);

    // The assembler (settler 0) plans with settler 2, simulates with placeholder signatures.
    let mut plan = MultisigPlan {
        account_number: account.number,
        sequence: account.sequence,
        gas_limit: PROBE_GAS,
        signers: vec![0, 2],
    };
    let probe = payment(&ms, &params, &plan, &tenant.address, &provider.address, AMOUNT);
    let simulated = client.simulate(&probe.placeholder_bytes()).await.unwrap();
    plan.gas_limit = gas_with_margin(simulated);

    // A tampering assembler: one amount changed. The honest co-signer, rebuilding from its own
    // data, refuses; the assembler's own signature is not enough to make a transaction.
    let honest = payment(&ms, &params, &plan, &tenant.address, &provider.address, AMOUNT);
    let tampered = payment(&ms, &params, &plan, &tenant.address, &provider.address, AMOUNT + 1);
    assert_eq!(honest.cosign(&tampered, &ms, &settlers[2]), Err(CosignError::BodyMismatch));
    let own = tampered.cosign(&tampered, &ms, &settlers[0]).unwrap();
    assert_eq!(
        tampered.combine(&ms, std::slice::from_ref(&own)),
        Err(CombineError::Threshold { got: 1, need: 2 })
    );

    let before_tenant = client.balance(&tenant.address, DENOM).await.unwrap();
    let before_provider = client.balance(&provider.address, DENOM).await.unwrap();
    let before_ms = client.balance(&ms_addr, DENOM).await.unwrap();

    // One settler alone signs a one-signer version of the payment: the chain refuses it.
    let lone = signed_by_one(&honest, &devnet.chain_id, account.number, &settlers[0], 0);
    match client.broadcast(&lone).await {
        Err(ChainError::Rejected { code, log }) => {
            eprintln!("one of three signatures: code {code}: {log}");
            // The SDK's multisig check: fewer signatures than the threshold.
            assert_eq!(code, 4, "{log}");
            assert!(log.contains("signature size is incorrect 1"), "{log}");
        }
        other => panic!("the chain must refuse a single signature, got {other:?}"),
    }
    assert_eq!(client.account(&ms_addr).await.unwrap().unwrap().sequence, 0);

    // Two of three: each signs the same sign bytes; the chain accepts.
    let proposed = honest.clone();
    let s0 = proposed.cosign(&proposed, &ms, &settlers[0]).unwrap();
    let s2 = honest.cosign(&proposed, &ms, &settlers[2]).unwrap();
    let signed = proposed.combine(&ms, &[s0, s2]).unwrap();
    let out = broadcast_and_wait(&client, &signed.bytes).await;
    assert_eq!(out.code, 0, "{}", out.log);
    eprintln!(
        "2-of-3 MsgExec(MsgSend): simulated {simulated}, gas limit {}, used {}",
        plan.gas_limit, out.gas_used
    );
    assert_eq!(client.balance(&provider.address, DENOM).await.unwrap(), before_provider + AMOUNT);
    assert_eq!(client.balance(&tenant.address, DENOM).await.unwrap(), before_tenant - AMOUNT);
    let fee = u128::from(plan.gas_limit) * GAS_PRICE;
    assert_eq!(client.balance(&ms_addr, DENOM).await.unwrap(), before_ms - fee);
    let left = client.send_grant(&tenant.address, &ms_addr).await.unwrap();
    assert_eq!(left, Some(vec![(DENOM.to_string(), GRANT - AMOUNT)]));

    // The next payment, signed by another pair (settlers 1 and 2), now that the account's
    // public key is on chain.
    let plan2 = MultisigPlan { sequence: 1, signers: vec![1, 2], ..plan.clone() };
    let tx2 = payment(&ms, &params, &plan2, &tenant.address, &provider.address, 5);
    let s1 = tx2.cosign(&tx2, &ms, &settlers[1]).unwrap();
    let s2 = tx2.cosign(&tx2, &ms, &settlers[2]).unwrap();
    let out2 = broadcast_and_wait(&client, &tx2.combine(&ms, &[s1, s2]).unwrap().bytes).await;
    assert_eq!(out2.code, 0, "{}", out2.log);
    assert_eq!(
        client.balance(&provider.address, DENOM).await.unwrap(),
        before_provider + AMOUNT + 5
    );

    // The chain accepts LEGACY_AMINO_JSON inside the multisig too (docs/cosmos.md): a send
    // from the multisig account itself, signed by settlers 0 and 1 over the amino JSON doc.
    let amino =
        amino_json_send(&ms, &settlers, &devnet.chain_id, account.number, 2, &provider.address, 9);
    let out3 = broadcast_and_wait(&client, &amino).await;
    assert_eq!(out3.code, 0, "{}", out3.log);
    assert_eq!(
        client.balance(&provider.address, DENOM).await.unwrap(),
        before_provider + AMOUNT + 5 + 9
    );

    // The same payment from a single-key grantee, for the gas comparison.
    client
        .grant_send(&tenant.signing_key().unwrap(), &funder.address, &[(DENOM.into(), GRANT)])
        .await
        .unwrap();
    let single_exec = msg_exec(
        &funder.address,
        vec![msg_send(&tenant.address, &provider.address, DENOM, AMOUNT).unwrap()],
    )
    .unwrap();
    let single = client
        .send_and_wait(
            &funder.signing_key().unwrap(),
            vec![single_exec],
            "lm:v1:multisig-devnet",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    eprintln!(
        "gas used: single-key MsgExec(MsgSend) {}, 2-of-3 multisig {} (first tx), {} (second), \
         {} (amino JSON MsgSend)",
        single.gas_used, out.gas_used, out2.gas_used, out3.gas_used
    );
    assert!(out.gas_used > single.gas_used && out2.gas_used > single.gas_used);
}
