//! Orders that ask for a TEE (SDL `params.tee`) are placed only on hosts that offer that TEE
//! kind; a provider without it never wins them, however cheap its bid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use leasemesh_matcher::match_epoch;
use leasemesh_protocol::{
    id_of, Capacity, GpuInterface, Id, Order, ProviderInfo, PublicKey, TeeKind,
};

fn tee_order(nonce: u64, kind: TeeKind) -> (Id, Order) {
    let mut r = match kind {
        TeeKind::Cpu => res(2),
        TeeKind::CpuGpu => gpu_res(2, 1, "nvidia", &[]),
    };
    r.tee = Some(kind);
    let mut o = order(nonce, vec![group("enclave", 2, r)], 10_000);
    o.version = o.wire_version();
    with_id(o)
}

/// A provider whose hosts are (name, capacity, TEE kinds).
fn tee_provider(key: PublicKey, hosts: Vec<(&str, Capacity, Vec<TeeKind>)>) -> (Id, ProviderInfo) {
    let (_, mut info) = provider(key, 1, hosts.iter().map(|(n, c, _)| (*n, c.clone())).collect());
    for (h, (_, _, tee)) in info.hosts.iter_mut().zip(hosts) {
        h.tee = tee;
    }
    info.version = info.wire_version();
    (id_of(&info), info)
}

#[test]
fn a_tee_order_goes_to_the_tee_provider_even_when_a_plain_one_bids_less() {
    let o = tee_order(1, TeeKind::Cpu);
    let plain = tee_provider(pk(1), vec![("h1", cap(64, vec![]), vec![])]);
    let tee = tee_provider(pk(2), vec![("h1", cap(64, vec![]), vec![TeeKind::Cpu])]);
    let inp =
        input(vec![o.clone()], vec![bid(&o, pk(1), 100), bid(&o, pk(2), 9_000)], vec![plain, tee]);
    let out = match_epoch(&inp);
    check_outcome(&inp, &out).unwrap();
    assert_eq!(out.awards.len(), 1);
    assert_eq!(out.awards[0].provider, pk(2));
}

#[test]
fn only_the_host_with_the_tee_gets_the_replicas() {
    let o = tee_order(1, TeeKind::Cpu);
    // "a-plain" sorts first and has room: first fit would pick it without the TEE rule.
    let p = tee_provider(
        pk(3),
        vec![("a-plain", cap(64, vec![]), vec![]), ("b-tee", cap(64, vec![]), vec![TeeKind::Cpu])],
    );
    let inp = input(vec![o.clone()], vec![bid(&o, pk(3), 500)], vec![p]);
    let out = match_epoch(&inp);
    assert_eq!(out.awards.len(), 1);
    let hosts: Vec<&str> = out.awards[0].assignments.iter().map(|a| a.host.as_str()).collect();
    assert_eq!(hosts, ["b-tee"]);
}

#[test]
fn no_tee_provider_means_no_award_and_the_other_kind_does_not_count() {
    let cpu_gpu = tee_order(1, TeeKind::CpuGpu);
    let cpu = tee_order(2, TeeKind::Cpu);
    let plain_order = with_id(order(3, vec![group("web", 1, res(1))], 10_000));
    // One plain provider, one with the cpu kind only.
    let plain = tee_provider(pk(1), vec![("h1", cap(64, vec![]), vec![])]);
    let a100 = gpus("nvidia", "a100", 80, GpuInterface::Sxm, 2);
    let cpu_only = tee_provider(pk(2), vec![("h1", cap(64, a100), vec![TeeKind::Cpu])]);
    let inp = input(
        vec![cpu_gpu.clone(), cpu.clone(), plain_order.clone()],
        vec![
            bid(&cpu_gpu, pk(1), 100),
            bid(&cpu_gpu, pk(2), 100),
            bid(&cpu, pk(1), 100),
            bid(&plain_order, pk(1), 100),
        ],
        vec![plain, cpu_only],
    );
    let out = match_epoch(&inp);
    check_outcome(&inp, &out).unwrap();
    let won: Vec<Id> = out.awards.iter().map(|a| a.order_id).collect();
    // cpu-gpu: nobody offers it (the GPU host offers cpu only). cpu: only the plain provider
    // bid. The plain order: matched. None of them was refused as invalid.
    assert_eq!(won, vec![plain_order.0]);
    assert!(out.excluded.is_empty(), "{:?}", out.excluded);
}
