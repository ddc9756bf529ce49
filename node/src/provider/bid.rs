//! The bid engine: order in, signed bid out, in well under a millisecond.
//!
//! For a valid order (already decoded and verified by gossip validation): time and placement
//! attributes → per-host fit ([`Inventory::plan`]) → price → if within the order's max: reserve
//! the capacity until the auction closes plus a grace, sign a [`Bid`], hand it back ready to
//! publish. Pure and synchronous: no I/O, `now` is an argument. With an external price command,
//! the caller awaits [`PriceCommand::price`] between [`BidEngine::quote`] and
//! [`BidEngine::commit`].

use leasemesh_protocol::{Bid, Coin, Id, Order, ProviderInfo, Signed, MAX_BID_VALIDITY_MS};

use super::inventory::{provider_info, Inventory, Plan, ProviderIdentity};
use super::pricing::{PriceError, RateTable};
use super::ProviderMetrics;

/// Why the provider does not bid. Not an error of the order: most orders are not for us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoBid {
    #[error("the auction closed at {closes_at_ms}, now is {now_ms}")]
    AuctionClosed { closes_at_ms: u64, now_ms: u64 },
    #[error("the order requires attribute {key}={value}, which this provider lacks")]
    MissingAttribute { key: String, value: String },
    #[error("the order asks for {asked} bps of uptime, this provider's record is {ours} bps")]
    Uptime { asked: u16, ours: u16 },
    #[error("some replica fits on no host (free capacity, GPU model, VRAM, interface or TEE)")]
    DoesNotFit,
    #[error("no price: {0}")]
    Price(#[from] PriceError),
    #[error("the price {price} is over the order's maximum {max}")]
    OverMaxPrice { price: Coin, max: Coin },
    #[error("already bid on this order")]
    AlreadyBid,
}

/// Bid engine settings (part of `[provider]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidPolicy {
    /// Reservations (and bids) live until the auction closes plus this, so the epoch's batch
    /// can arrive; then the capacity returns.
    pub award_grace_ms: u64,
    /// The provider's uptime in basis points as anchored history shows it (orders asking more
    /// get no bid).
    pub uptime_bps: u16,
}

/// An order placed and priced, not yet reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub order_id: Id,
    pub plan: Plan,
    /// The table price; `None` when the price comes from the external command.
    pub table_price: Option<Coin>,
}

/// Inventory, identity, rates: everything a bid needs, owned by one task.
#[derive(Debug)]
pub struct BidEngine {
    pub identity: ProviderIdentity,
    pub inventory: Inventory,
    pub rates: RateTable,
    pub policy: BidPolicy,
    /// When set, prices come from the command (the caller runs it); the table is not used.
    pub external_pricing: bool,
    pub metrics: ProviderMetrics,
}

impl BidEngine {
    /// Checks time, attributes, uptime and fit; prices with the table unless pricing is
    /// external. Changes nothing.
    pub fn quote(&self, order_id: Id, order: &Order, now_ms: u64) -> Result<Quote, NoBid> {
        let closes = order.auction_closes_at_ms();
        if closes <= now_ms {
            return Err(NoBid::AuctionClosed { closes_at_ms: closes, now_ms });
        }
        if let Some(a) = self.identity.missing_attribute(&order.placement.attributes) {
            return Err(NoBid::MissingAttribute { key: a.key.clone(), value: a.value.clone() });
        }
        if order.placement.min_uptime_bps > self.policy.uptime_bps {
            return Err(NoBid::Uptime {
                asked: order.placement.min_uptime_bps,
                ours: self.policy.uptime_bps,
            });
        }
        if self.inventory.has_reservation(&order_id) {
            return Err(NoBid::AlreadyBid);
        }
        let plan = self.inventory.plan(order).ok_or(NoBid::DoesNotFit)?;
        let table_price = if self.external_pricing {
            None
        } else {
            let price = self.rates.price(order, &plan)?;
            check_max(&price, order)?;
            Some(price)
        };
        Ok(Quote { order_id, plan, table_price })
    }

    /// Reserves the quoted capacity and signs the bid at `price`.
    pub fn commit(
        &mut self,
        quote: Quote,
        order: &Order,
        price: Coin,
        now_ms: u64,
    ) -> Result<Signed<Bid>, NoBid> {
        check_max(&price, order)?;
        let expires_at_ms = order
            .auction_closes_at_ms()
            .saturating_add(self.policy.award_grace_ms)
            .min(now_ms.saturating_add(MAX_BID_VALIDITY_MS))
            .max(now_ms.saturating_add(1));
        self.inventory
            .reserve(quote.order_id, order, &quote.plan, expires_at_ms)
            .map_err(|_| NoBid::AlreadyBid)?;
        let bid = Bid {
            version: leasemesh_protocol::v(),
            order_id: quote.order_id,
            provider: self.identity.key.public(),
            price_per_hour: price,
            created_at_ms: now_ms,
            expires_at_ms,
        };
        self.metrics.bids.inc();
        Ok(Signed::sign(bid, &self.identity.key))
    }

    /// The whole fast path with table pricing: quote, reserve, sign. Counts a no-bid.
    pub fn on_order(&mut self, order: &Signed<Order>, now_ms: u64) -> Result<Signed<Bid>, NoBid> {
        let result = self.quote(order.id(), &order.body, now_ms).and_then(|q| {
            let price = q.table_price.clone().ok_or_else(|| {
                NoBid::Price(PriceError::Command("external pricing: use quote and commit".into()))
            })?;
            self.commit(q, &order.body, price, now_ms)
        });
        if result.is_err() {
            self.metrics.no_bids.inc();
        }
        result
    }

    /// Drops reservations whose auction (plus grace) is over. Call on a timer.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Id> {
        let gone = self.inventory.expire_reservations(now_ms);
        self.metrics.reservations_expired.inc_by(gone.len() as u64);
        gone
    }

    /// The signed provider info with current free capacity.
    pub fn provider_info(&self, sequence: u64, now_ms: u64) -> Signed<ProviderInfo> {
        provider_info(&self.identity, &self.inventory, sequence, now_ms)
    }
}

fn check_max(price: &Coin, order: &Order) -> Result<(), NoBid> {
    let max = &order.max_price_per_hour;
    if price.denom != max.denom || price.amount > max.amount || price.amount == 0 {
        return Err(NoBid::OverMaxPrice { price: price.clone(), max: max.clone() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fixtures::{engine, GIB};
    use crate::provider::inventory::{GpuConfig, HostConfig};
    use crate::provider::pricing::Rates;
    use leasemesh_protocol::{samples, Attribute, GpuInterface, Keypair, TeeKind};

    /// The one host of the GPU tests: an a100 with 40 GiB, declaring `tee`.
    fn gpu_host(tee: Vec<TeeKind>) -> HostConfig {
        HostConfig {
            name: "gpu-1".into(),
            cpu_millis: 32_000,
            memory_bytes: 128 * GIB,
            ephemeral_storage_bytes: 1000 * GIB,
            persistent_storage: [("beta3".to_string(), 1000 * GIB)].into(),
            detect_gpus: false,
            tee,
            gpus: vec![GpuConfig {
                id: "GPU-1".into(),
                model: "a100".into(),
                vram_bytes: 40 * GIB,
                interface: GpuInterface::Sxm,
                ..GpuConfig::default()
            }],
            ..HostConfig::default()
        }
    }

    fn gpu_engine() -> BidEngine {
        let mut rates = Rates::default();
        rates.gpu_by_model.insert("a100".into(), 100_000);
        engine(vec![gpu_host(Vec::new())], rates).unwrap()
    }

    #[test]
    fn bids_on_a_fitting_order_and_reserves() {
        let mut e = gpu_engine();
        let order = samples::signed_order();
        let now = samples::SAMPLE_TIME_MS + 5;
        let bid = e.on_order(&order, now).unwrap();
        let back = Signed::<Bid>::decode_verified(&bid.encode()).unwrap();
        back.body.check_against(&order.id(), &order.body).unwrap();
        assert_eq!(back.body.created_at_ms, now);
        assert_eq!(back.body.expires_at_ms, order.body.auction_closes_at_ms() + 10_000);
        assert!(e.inventory.has_reservation(&order.id()));
        // The only GPU is held: the same order again gets no bid, another order does not fit.
        assert_eq!(e.on_order(&order, now), Err(NoBid::AlreadyBid));
        let mut other = order.body.clone();
        other.nonce += 1;
        let other = Signed::sign(other, &samples::tenant_key());
        assert_eq!(e.on_order(&other, now), Err(NoBid::DoesNotFit));
        // The auction is lost: capacity comes back.
        assert!(e.inventory.release_reservation(&order.id()));
        assert!(e.on_order(&other, now).is_ok());
        assert_eq!(e.metrics.bids.get(), 2);
        assert_eq!(e.metrics.no_bids.get(), 2);
    }

    #[test]
    fn no_bid_over_max_price_or_without_attributes() {
        let mut e = gpu_engine();
        let now = samples::SAMPLE_TIME_MS + 5;
        let mut o = samples::order();
        o.max_price_per_hour.amount = 10;
        let signed = Signed::sign(o, &samples::tenant_key());
        assert!(matches!(e.on_order(&signed, now), Err(NoBid::OverMaxPrice { .. })));
        assert!(!e.inventory.has_reservation(&signed.id()), "no bid, no reservation");
        let mut o = samples::order();
        o.placement.attributes = vec![Attribute::new("region", "us-east")];
        let signed = Signed::sign(o, &samples::tenant_key());
        assert!(matches!(e.on_order(&signed, now), Err(NoBid::MissingAttribute { .. })));
        let late = samples::SAMPLE_TIME_MS + 2_000;
        assert!(matches!(
            e.on_order(&samples::signed_order(), late),
            Err(NoBid::AuctionClosed { .. })
        ));
    }

    #[test]
    fn reservation_expires_after_window_plus_grace() {
        let mut e = gpu_engine();
        let order = samples::signed_order();
        e.on_order(&order, samples::SAMPLE_TIME_MS).unwrap();
        let close = order.body.auction_closes_at_ms();
        assert!(e.expire(close + 9_999).is_empty());
        assert_eq!(e.expire(close + 10_000), vec![order.id()]);
        assert!(!e.inventory.has_reservation(&order.id()));
    }

    #[test]
    fn a_tee_order_gets_a_bid_only_from_a_host_that_offers_that_tee() {
        let order = Signed::sign(samples::tee_order(), &samples::tenant_key());
        let now = samples::SAMPLE_TIME_MS + 5;
        // The same GPU host without a TEE: no bid, nothing reserved.
        let mut plain = gpu_engine();
        assert_eq!(plain.on_order(&order, now), Err(NoBid::DoesNotFit));
        assert!(!plain.inventory.has_reservation(&order.id()));
        // A cpu-only TEE host does not do for a cpu-gpu order either.
        let mut cpu_only = gpu_engine();
        cpu_only.inventory = tee_inventory(vec![TeeKind::Cpu]);
        assert_eq!(cpu_only.on_order(&order, now), Err(NoBid::DoesNotFit));
        // With cpu-gpu declared, it bids, and the plain order still gets a bid there too.
        let mut tee = gpu_engine();
        tee.inventory = tee_inventory(vec![TeeKind::CpuGpu, TeeKind::Cpu]);
        let bid = tee.on_order(&order, now).unwrap();
        bid.body.check_against(&order.id(), &order.body).unwrap();
        // Its provider info says so, as a version-2 info that decodes to the same hosts.
        let info = tee.provider_info(1, now);
        assert_eq!(info.body.version, 2);
        assert_eq!(info.body.hosts[0].tee, [TeeKind::Cpu, TeeKind::CpuGpu]);
        let back = Signed::<ProviderInfo>::decode_verified(&info.encode()).unwrap();
        assert_eq!(back, info);
        // A plain engine's info stays version 1.
        assert_eq!(plain.provider_info(1, now).body.version, 1);
    }

    /// The GPU engine's host, declaring `tee`.
    fn tee_inventory(tee: Vec<TeeKind>) -> Inventory {
        Inventory::from_config(&[gpu_host(tee)], &crate::provider::fixtures::NoGpus).unwrap().0
    }

    #[test]
    fn provider_info_shows_the_reservation() {
        let mut e = gpu_engine();
        let before = e.provider_info(1, samples::SAMPLE_TIME_MS);
        assert_eq!(before.body.hosts[0].free.gpus.len(), 1);
        e.on_order(&samples::signed_order(), samples::SAMPLE_TIME_MS).unwrap();
        let after = e.provider_info(2, samples::SAMPLE_TIME_MS);
        assert!(after.body.hosts[0].free.gpus.is_empty());
        assert_eq!(after.body.hosts[0].free.cpu_millis, 32_000 - 5_000);
        assert!(after.verify().is_ok());
        assert_eq!(after.signer, Keypair::from_seed_label("bench-provider").public());
    }
}
