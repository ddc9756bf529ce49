//! The light client's grant on a real chain: on a fresh `injectived` devnet the client's authz
//! grant (built and signed with cosmrs, sent through CometBFT JSON-RPC with blocking HTTP) lands
//! and the chain reports it back to the settlement code's reader; the ADR-036 binding the client
//! signs with the same chain key verifies with the settler's verifier and names the very address
//! the devnet funded. A second grant replaces the first (the account's sequence moved on); an
//! account the chain never saw is a typed error, not a panic.
//!
//! Needs `injectived` on PATH (scripts/install-chain.sh).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use leasemesh_client::cosmos_grant::{
    binding, chain_address, grant_on_chain, ChainError, ChainParams, CometRpc,
};
use leasemesh_protocol::binding::Binding;
use leasemesh_protocol::{Coin, Keypair};
use leasemesh_settlement::cosmos::ChainClient;
use leasemesh_testnet::chain::chain_config;
use leasemesh_testnet::devnet::{Devnet, DevnetConfig, DENOM};

fn secret(hex_secret: &str) -> [u8; 32] {
    hex::decode(hex_secret).unwrap().try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_chain_grant_lands_and_its_binding_verifies() {
    let devnet =
        Devnet::start(DevnetConfig { accounts: 3, ..DevnetConfig::default() }).await.unwrap();
    let tenant = devnet.accounts[0].clone();
    let settler = devnet.accounts[1].clone();
    let params = ChainParams::injective(devnet.rpc_url.clone(), devnet.chain_id.clone());
    let chain_key = secret(&tenant.secret_hex);
    let tenant_key = Keypair::from_seed_label("binding-devnet tenant");
    assert_eq!(chain_address(&chain_key, "inj").unwrap(), tenant.address);

    let limit = Coin::new(DENOM, 7_000_000_000_000_000_000);
    let (p, grantee) = (params.clone(), settler.address.clone());
    let l = limit.clone();
    let g = tokio::task::spawn_blocking(move || grant_on_chain(&p, &chain_key, &grantee, &l))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.granter, tenant.address);
    assert_eq!(g.tx.code, 0);
    assert!(g.tx.height > 0 && g.tx.gas_used > 0, "{:?}", g.tx);

    // The settlement code reads the grant back from the chain.
    let chain = ChainClient::new(chain_config(&devnet)).unwrap();
    let read = chain.send_grant(&tenant.address, &settler.address).await.unwrap();
    assert_eq!(read, Some(vec![(DENOM.to_string(), limit.amount)]));

    // A second grant (the next sequence) replaces the first.
    let (p, grantee) = (params.clone(), settler.address.clone());
    let smaller = Coin::new(DENOM, 3);
    let s2 = smaller.clone();
    tokio::task::spawn_blocking(move || grant_on_chain(&p, &chain_key, &grantee, &s2))
        .await
        .unwrap()
        .unwrap();
    let read = chain.send_grant(&tenant.address, &settler.address).await.unwrap();
    assert_eq!(read, Some(vec![(DENOM.to_string(), 3)]));

    // The binding: the settler's verifier accepts it, for the funded address and this key only.
    let b = binding(&params, &chain_key, &tenant_key).unwrap();
    assert_eq!(b.address, tenant.address);
    let req = b.to_request();
    let checked = Binding::verify_request(&req).unwrap();
    assert_eq!(checked.tenant_key, tenant_key.public());
    let mut stolen = req.clone();
    stolen.address = settler.address.clone();
    assert!(Binding::verify_request(&stolen).is_err());

    // A key the chain never funded: a typed error, and nothing was sent.
    let (p, grantee) = (params.clone(), settler.address.clone());
    let stranger = [0x5au8; 32];
    let err = tokio::task::spawn_blocking(move || {
        grant_on_chain(&p, &stranger, &grantee, &Coin::new(DENOM, 1))
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, ChainError::NoAccount(_)), "{err}");
    let rpc = params.rpc_url.clone();
    let seen = tokio::task::spawn_blocking(move || {
        CometRpc::new(&rpc).account(&chain_address(&stranger, "inj").unwrap())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(seen, None);
}
