//! Deterministic fleets of leases: the same seed gives the same leases, heartbeats and batch on
//! every machine. Used by the tests, the crash-test child, benches and demos; pass real chain
//! addresses to [`fleet_with`] to settle the same shape of batch on a chain.

use std::collections::BTreeMap;

use leasemesh_protocol::samples::{settler_key, SAMPLE_TIME_MS};
use leasemesh_protocol::{CloseReason, Coin, Hash, Id, SettlementBatch, Signed};

use crate::accrual::{accrue, AccrualError, LeaseAccrual, LeaseEnd, LeaseTerms, LeaseTimeline};
use crate::batch::{build_batch, BatchError, BatchHeader};

/// Providers of a sample fleet heartbeat this often.
pub const HEARTBEAT_EVERY_MS: u64 = 10_000;
/// The fleet's period runs from [`SAMPLE_TIME_MS`] for this long.
pub const PERIOD_MS: u64 = 4 * 3_600_000;
/// Grace period of every sample order.
pub const GRACE_MS: u64 = 60_000;

/// One lease of a fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleLease {
    pub terms: LeaseTerms,
    pub timeline: LeaseTimeline,
}

/// Leases between tenants and providers over one period, with the providers' heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFleet {
    pub tenants: Vec<String>,
    pub providers: Vec<String>,
    pub denom: String,
    pub leases: Vec<SampleLease>,
    /// Heartbeat times per provider address, sorted.
    pub heartbeats: BTreeMap<String, Vec<u64>>,
    /// End of the period: the batch is cut here.
    pub now_ms: u64,
}

/// splitmix64: small, fast and the same everywhere.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The small fleet of the crash test: 10 tenants, 4 providers, 60 leases (and 3 that fail).
pub fn crash_test_fleet() -> SampleFleet {
    fleet(0x5e77_1e00, 10, 4, 60)
}

/// A fleet with addresses `tenant-000…` and `provider-000…` in `uakt`.
pub fn fleet(seed: u64, tenants: usize, providers: usize, leases: usize) -> SampleFleet {
    fleet_with(
        seed,
        (0..tenants).map(|i| format!("tenant-{i:03}")).collect(),
        (0..providers).map(|i| format!("provider-{i:03}")).collect(),
        "uakt",
        leases,
    )
}

/// A fleet over the given addresses: `leases` leases that run, lease `i` from tenant
/// `i mod tenants` to a provider picked by the seed; one in 10 is still open at the end of the
/// period, the others close inside it. After every 20th, one more lease fails before running
/// (it must cost nothing and leave no record).
pub fn fleet_with(
    seed: u64,
    tenants: Vec<String>,
    providers: Vec<String>,
    denom: &str,
    leases: usize,
) -> SampleFleet {
    let mut rng = Rng(seed);
    let start = SAMPLE_TIME_MS;
    let now_ms = start + PERIOD_MS;
    let heartbeats: BTreeMap<String, Vec<u64>> = providers
        .iter()
        .map(|p| (p.clone(), (start..=now_ms).step_by(HEARTBEAT_EVERY_MS as usize).collect()))
        .collect();
    let mut out = Vec::with_capacity(leases);
    for i in 0..leases {
        if tenants.is_empty() || providers.is_empty() {
            break;
        }
        let tenant = &tenants[i % tenants.len()];
        let provider = &providers[rng.below(providers.len() as u64) as usize];
        let n = (i as u64).to_be_bytes();
        let order_id: Id = Hash::domain("leasemesh/sample/order", &[&seed.to_be_bytes(), &n]);
        let lease_id = leasemesh_protocol::lease_id(&order_id, &order_id);
        let price = 1_000 + u128::from(rng.below(5_000_000));
        let running_at = start + rng.below(3_600) * 1000 + rng.below(1000);
        let timeline = match rng.below(10) {
            0 => LeaseTimeline { running_at_ms: Some(running_at), ended: None },
            _ => LeaseTimeline {
                running_at_ms: Some(running_at),
                ended: Some(LeaseEnd {
                    at_ms: running_at + 60_000 + rng.below(2 * 3_600_000),
                    reason: CloseReason::TenantClosed,
                }),
            },
        };
        let terms = LeaseTerms {
            lease_id,
            order_id,
            tenant_address: tenant.clone(),
            provider_address: provider.clone(),
            price_per_hour: Coin::new(denom, price),
            lease_term_ms: 30 * 24 * 3_600_000,
            grace_period_ms: GRACE_MS,
        };
        if i % 20 == 19 {
            let failed_order =
                Hash::domain("leasemesh/sample/failed-order", &[&seed.to_be_bytes(), &n]);
            let failed = LeaseTerms {
                lease_id: leasemesh_protocol::lease_id(&failed_order, &failed_order),
                order_id: failed_order,
                ..terms.clone()
            };
            out.push(SampleLease { terms: failed, timeline: LeaseTimeline::default() });
        }
        out.push(SampleLease { terms, timeline });
    }
    SampleFleet { tenants, providers, denom: denom.into(), leases: out, heartbeats, now_ms }
}

/// Why a sample batch could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    #[error(transparent)]
    Accrual(#[from] AccrualError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl SampleFleet {
    /// Every lease's accrual for the fleet's period (its first batch).
    pub fn accruals(&self) -> Result<Vec<LeaseAccrual>, AccrualError> {
        let mut out = Vec::new();
        for l in &self.leases {
            let hb = self.heartbeats.get(&l.terms.provider_address).map_or(&[][..], |v| v);
            if let Some(a) = accrue(&l.terms, &l.timeline, hb, None, self.now_ms)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The fleet's first batch, signed by the sample settler key.
    pub fn signed_batch(&self) -> Result<Signed<SettlementBatch>, SampleError> {
        let header = BatchHeader {
            settler: settler_key().public(),
            sequence: 1,
            prev_batch: Hash::ZERO,
            created_at_ms: self.now_ms,
        };
        let body = build_batch(&header, &self.accruals()?)?;
        Ok(Signed::sign(body, &settler_key()))
    }
}
