//! The Akash-style baseline: the same market as on-chain transactions on the same devnet.
//!
//! Per lease, as Akash's flow does it (`x/deployment`, `x/market`, `x/escrow`):
//! 1. the tenant's order: one tx with a deposit to the escrow account and a memo as large as
//!    the `MsgCreateDeployment` of the bench's SDL ([`deployment_memo`]);
//! 2. a bid from every provider: one tx each, with the provider's bid deposit, memo the bid;
//! 3. after the bid window (and once the bids are in blocks) the tenant takes the cheapest bid
//!    with a lease tx;
//! 4. the provider's withdrawal: one tx.
//!
//! Every step waits until its tx is in a block, as the Akash CLI does. The txs are bank
//! `MsgSend`s carrying memos: what is copied is the message count, the signers, the deposits
//! and the waiting for blocks; not copied are the modules' own state writes and checks (so the
//! gas is a lower bound of Akash's), the escrow module's accounting (the escrow here is a plain
//! account), and the provider's off-chain bid engine delay.

use std::time::{Duration, Instant};

use cosmrs::rpc::{Client as _, HttpClient};
use leasemesh_settlement::cosmos::{msg_send, ChainClient, SigningKey};
use serde::Serialize;

use super::BenchArgs;
use crate::devnet::{DevAccount, Devnet, DENOM};

/// Akash's minimum deployment deposit (5 AKT) and bid deposit (5 AKT), in base units, applied
/// to inj base units: the amounts only need to move.
pub const ORDER_DEPOSIT: u128 = 5_000_000;
pub const BID_DEPOSIT: u128 = 5_000_000;

/// Accounts the baseline takes from the devnet (after the mesh's): the escrow, then per lane a
/// tenant and its providers.
pub fn accounts_needed(lanes: usize, providers: usize) -> usize {
    1 + lanes * (1 + providers)
}

/// What the Akash CLI would put in a `MsgCreateDeployment` for the bench's SDL (demo.yaml:
/// one service, 0.25 CPU, 64 MiB, 128 MiB storage, one global HTTP port, price 100 uakt per
/// block), written out as its proto JSON: owner and depositor addresses, dseq, the group spec
/// with its resources and price, the 32-byte manifest version hash and the deposit.
pub fn deployment_memo(owner: &str, dseq: u64) -> String {
    format!(
        concat!(
            r#"{{"@type":"/akash.deployment.v1beta3.MsgCreateDeployment","id":{{"owner":"{o}","dseq":"{d}"}},"#,
            r#""groups":[{{"name":"dcloud","requirements":{{"signed_by":{{"all_of":[],"any_of":[]}},"attributes":[]}},"#,
            r#""resources":[{{"resource":{{"id":1,"cpu":{{"units":{{"val":"250"}},"attributes":[]}},"#,
            r#""memory":{{"quantity":{{"val":"67108864"}},"attributes":[]}},"#,
            r#""storage":[{{"name":"default","quantity":{{"val":"134217728"}},"attributes":[]}}],"#,
            r#""gpu":{{"units":{{"val":"0"}},"attributes":[]}},"endpoints":[{{"kind":"SHARED_HTTP","sequence_number":0}}]}},"#,
            r#""count":1,"price":{{"denom":"uakt","amount":"100.000000000000000000"}}}}]}}],"#,
            r#""version":"q4Vt0xWv8Jt3v2RZp6wN1dWb9J3b2WZ2q4Vt0xWv8Jt=","#,
            r#""deposit":{{"denom":"uakt","amount":"5000000"}},"depositor":"{o}"}}"#
        ),
        o = owner,
        d = dseq
    )
}

fn bid_memo(owner: &str, dseq: u64, provider: &str, price: u64) -> String {
    format!(
        r#"{{"@type":"/akash.market.v1beta4.MsgCreateBid","order":{{"owner":"{owner}","dseq":"{dseq}","gseq":1,"oseq":1}},"provider":"{provider}","price":{{"denom":"uakt","amount":"{price}.000000000000000000"}},"deposit":{{"denom":"uakt","amount":"5000000"}},"resources_offer":[{{"resources":{{"id":1}},"count":1}}]}}"#
    )
}

fn lease_memo(kind: &str, owner: &str, dseq: u64, provider: &str) -> String {
    format!(
        r#"{{"@type":"/akash.market.v1beta4.{kind}","bid_id":{{"owner":"{owner}","dseq":"{dseq}","gseq":1,"oseq":1,"provider":"{provider}"}}}}"#
    )
}

/// The baseline's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AkashFigures {
    /// Order tx sent → lease tx in a block, per lease.
    pub order_to_lease_ms: Vec<u64>,
    pub txs: u64,
    pub gas: u64,
    pub memo_bytes: usize,
    pub lanes: usize,
}

impl AkashFigures {
    pub fn leases(&self) -> usize {
        self.order_to_lease_ms.len()
    }
}

const TX_WAIT: Duration = Duration::from_secs(120);

struct Lane {
    tenant: DevAccount,
    providers: Vec<DevAccount>,
    escrow: String,
}

/// One lease, start to end; returns (order → lease ms, txs, gas).
async fn one_lease(
    client: &ChainClient,
    lane: &Lane,
    dseq: u64,
    bid_window: Duration,
) -> anyhow::Result<(u64, u64, u64)> {
    let tenant_key: SigningKey = lane.tenant.signing_key()?;
    let owner = &lane.tenant.address;
    let started = Instant::now();
    let deposit = msg_send(owner, &lane.escrow, DENOM, ORDER_DEPOSIT)?;
    let memo = deployment_memo(owner, dseq);
    let order = client.send_and_wait(&tenant_key, vec![deposit], &memo, TX_WAIT).await?;
    let in_block = Instant::now();
    let mut gas = order.gas_used;
    let bids = lane.providers.iter().enumerate().map(|(i, p)| async move {
        let key = p.signing_key()?;
        let price = 20 + 3 * i as u64;
        let msg = msg_send(&p.address, &lane.escrow, DENOM, BID_DEPOSIT)?;
        let memo = bid_memo(owner, dseq, &p.address, price);
        let out = client.send_and_wait(&key, vec![msg], &memo, TX_WAIT).await?;
        anyhow::Ok((price, i, out.gas_used))
    });
    let bids = futures::future::join_all(bids).await;
    let mut best: Option<(u64, usize)> = None;
    for b in bids {
        let (price, i, g) = b?;
        gas += g;
        if best.is_none_or(|(p, _)| price < p) {
            best = Some((price, i));
        }
    }
    if let Some(rest) = bid_window.checked_sub(in_block.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let (_, winner) = best.ok_or_else(|| anyhow::anyhow!("no bid"))?;
    let provider = &lane.providers[winner];
    let lease_msg = msg_send(owner, &lane.escrow, DENOM, 1)?;
    let memo = lease_memo("MsgCreateLease", owner, dseq, &provider.address);
    let lease = client.send_and_wait(&tenant_key, vec![lease_msg], &memo, TX_WAIT).await?;
    let order_to_lease = started.elapsed().as_millis() as u64;
    gas += lease.gas_used;
    let pkey = provider.signing_key()?;
    let wd = msg_send(&provider.address, &provider.address, DENOM, 1)?;
    let memo = lease_memo("MsgWithdrawLease", owner, dseq, &provider.address);
    let withdraw = client.send_and_wait(&pkey, vec![wd], &memo, TX_WAIT).await?;
    gas += withdraw.gas_used;
    Ok((order_to_lease, 3 + lane.providers.len() as u64, gas))
}

/// Runs `lanes` tenants, each leasing one deployment after another (its accounts take one tx
/// at a time) until the run's duration has passed; every lane makes at least one lease.
pub async fn run(
    args: &BenchArgs,
    devnet: &Devnet,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<AkashFigures> {
    let client = ChainClient::new(crate::chain::chain_config(devnet))?;
    let first = 1 + args.tenants + args.providers;
    let accts = &devnet.accounts[first..];
    let escrow = accts[0].address.clone();
    let per = 1 + args.providers;
    let lanes: Vec<Lane> = (0..args.baseline_lanes)
        .map(|l| Lane {
            tenant: accts[1 + l * per].clone(),
            providers: accts[2 + l * per..1 + (l + 1) * per].to_vec(),
            escrow: escrow.clone(),
        })
        .collect();
    let until = Instant::now() + args.duration();
    let bid_window = Duration::from_millis(args.bid_window_ms);
    let runs = lanes.iter().enumerate().map(|(l, lane)| {
        let client = client.clone();
        async move {
            // Spread the lanes' first orders over a block.
            tokio::time::sleep(Duration::from_millis(
                args.block_time_ms * l as u64 / args.baseline_lanes as u64,
            ))
            .await;
            let mut out = Vec::new();
            for n in 0u64.. {
                if n > 0 && Instant::now() >= until {
                    break;
                }
                out.push(one_lease(&client, lane, 1_000 * l as u64 + n + 1, bid_window).await?);
            }
            anyhow::Ok(out)
        }
    });
    let mut figs = AkashFigures {
        memo_bytes: deployment_memo(&lanes[0].tenant.address, 1).len(),
        lanes: lanes.len(),
        ..AkashFigures::default()
    };
    for lane in futures::future::join_all(runs).await {
        for (ms, txs, gas) in lane? {
            figs.order_to_lease_ms.push(ms);
            figs.txs += txs;
            figs.gas += gas;
        }
    }
    progress(&format!("baseline: {} leases, {} txs, {} gas", figs.leases(), figs.txs, figs.gas));
    Ok(figs)
}

/// Transactions and gas used in blocks `from..=to`.
pub async fn txs_and_gas(rpc_url: &str, from: u64, to: u64) -> anyhow::Result<(u64, u64)> {
    let rpc = HttpClient::new(rpc_url)?;
    let (mut txs, mut gas) = (0u64, 0u64);
    for h in from..=to {
        let height = cosmrs::tendermint::block::Height::try_from(h)?;
        let res = rpc.block_results(height).await?;
        for r in res.txs_results.unwrap_or_default() {
            txs += 1;
            gas += u64::try_from(r.gas_used).unwrap_or(0);
        }
    }
    Ok((txs, gas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memos_are_json_of_the_akash_messages() {
        let owner = "inj1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq";
        let m: serde_json::Value = serde_json::from_str(&deployment_memo(owner, 7)).unwrap();
        assert_eq!(m["id"]["dseq"], "7");
        assert_eq!(m["depositor"], owner);
        assert!(deployment_memo(owner, 7).len() > 256, "larger than a default memo");
        assert!(deployment_memo(owner, 7).len() as u64 <= super::super::load::BENCH_MAX_MEMO);
        let b: serde_json::Value = serde_json::from_str(&bid_memo(owner, 7, owner, 20)).unwrap();
        assert_eq!(b["price"]["amount"], "20.000000000000000000");
        let l: serde_json::Value =
            serde_json::from_str(&lease_memo("MsgCreateLease", owner, 7, owner)).unwrap();
        assert_eq!(l["bid_id"]["provider"], owner);
        assert_eq!(accounts_needed(2, 3), 9);
    }
}
