//! The auction clock: which epoch an order belongs to, when an epoch closes, who leads it and
//! when a fallback settler may take over. Pure functions of the genesis parameters and `now`.
//!
//! - Epoch `e` covers `[e × epoch_ms, (e + 1) × epoch_ms)`; an order belongs to the epoch in
//!   which its auction closes (`created_at_ms + bid_window_ms`).
//! - The leader of `e` is `settlers[h(e) mod n]` with `h` a domain-separated BLAKE3 of `e`; the
//!   settler at rank `r` (the `r`-th after the leader, wrapping) may publish from
//!   `end(e) + settle_delay + r × leader_timeout` if no batch for `e` was seen by then.

use leasemesh_protocol::{Hash, Order, PublicKey, MAX_CLOCK_SKEW_MS};

/// The clock of one mesh, from its genesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochClock {
    pub epoch_ms: u64,
    pub settle_delay_ms: u64,
    pub leader_timeout_ms: u64,
}

impl EpochClock {
    /// The epoch holding time `t_ms`.
    pub fn epoch_of(&self, t_ms: u64) -> u64 {
        t_ms / self.epoch_ms.max(1)
    }

    /// The epoch an order belongs to: the one in which its auction closes.
    pub fn order_epoch(&self, order: &Order) -> u64 {
        self.epoch_of(order.auction_closes_at_ms())
    }

    /// First millisecond of epoch `e`.
    pub fn start_ms(&self, e: u64) -> u64 {
        e.saturating_mul(self.epoch_ms)
    }

    /// First millisecond after epoch `e` (when it closes).
    pub fn end_ms(&self, e: u64) -> u64 {
        e.saturating_add(1).saturating_mul(self.epoch_ms)
    }

    /// When the settler at `rank` may publish epoch `e`'s batch.
    pub fn turn_starts_ms(&self, e: u64, rank: usize) -> u64 {
        let waits = (rank as u64).saturating_mul(self.leader_timeout_ms);
        self.end_ms(e).saturating_add(self.settle_delay_ms).saturating_add(waits)
    }
}

/// Index of epoch `e`'s leader among `n` settlers.
pub fn leader_index(e: u64, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let h = Hash::domain("leasemesh/v1/epoch-leader", &[&e.to_le_bytes()]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(first) % n as u64) as usize
}

/// The settler at `rank` for epoch `e` (rank 0 is the leader).
pub fn settler_at(settlers: &[PublicKey], e: u64, rank: usize) -> Option<PublicKey> {
    if settlers.is_empty() {
        return None;
    }
    let i = (leader_index(e, settlers.len()) + rank) % settlers.len();
    settlers.get(i).copied()
}

/// The rank of `key` for epoch `e`, `None` if it is not a settler.
pub fn rank_of(settlers: &[PublicKey], e: u64, key: &PublicKey) -> Option<usize> {
    let pos = settlers.iter().position(|s| s == key)?;
    let lead = leader_index(e, settlers.len());
    Some((pos + settlers.len() - lead) % settlers.len())
}

/// Why a batch's signer may not publish for its epoch (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    #[error("{signer} is not a settler of this network's genesis")]
    NotASettler { signer: PublicKey },
    #[error("settler {signer} has rank {rank} for epoch {epoch}: its turn starts at {starts_ms} ms, it signed at {now_ms} ms")]
    TooEarly { signer: PublicKey, epoch: u64, rank: usize, starts_ms: u64, now_ms: u64 },
}

/// Checks that `signer` may have published epoch `e`'s batch by `now_ms` (allowing the usual
/// clock skew).
pub fn check_turn(
    clock: &EpochClock,
    settlers: &[PublicKey],
    e: u64,
    signer: &PublicKey,
    now_ms: u64,
) -> Result<usize, TurnError> {
    let rank = rank_of(settlers, e, signer).ok_or(TurnError::NotASettler { signer: *signer })?;
    let starts_ms = clock.turn_starts_ms(e, rank);
    if now_ms.saturating_add(MAX_CLOCK_SKEW_MS) < starts_ms {
        return Err(TurnError::TooEarly { signer: *signer, epoch: e, rank, starts_ms, now_ms });
    }
    Ok(rank)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use leasemesh_protocol::{samples, Keypair};

    const CLOCK: EpochClock =
        EpochClock { epoch_ms: 1000, settle_delay_ms: 300, leader_timeout_ms: 2000 };

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n).map(|i| Keypair::from_seed_label(&format!("settler-{i}")).public()).collect()
    }

    #[test]
    fn an_order_belongs_to_the_epoch_its_auction_closes_in() {
        let mut o = samples::order();
        o.created_at_ms = 10_900;
        o.bid_window_ms = 200; // closes at 11_100
        assert_eq!(CLOCK.order_epoch(&o), 11);
        o.bid_window_ms = 100; // closes exactly at 11_000: the next epoch's first ms
        assert_eq!(CLOCK.order_epoch(&o), 11);
        o.created_at_ms = 10_899;
        assert_eq!(CLOCK.order_epoch(&o), 10);
        assert_eq!(CLOCK.start_ms(11), 11_000);
        assert_eq!(CLOCK.end_ms(11), 12_000);
        assert!(CLOCK.epoch_of(CLOCK.end_ms(10) - 1) == 10);
    }

    #[test]
    fn leaders_spread_over_the_settlers_and_fallbacks_cycle() {
        let s = keys(3);
        let mut count = [0usize; 3];
        for e in 0..3000 {
            let lead = settler_at(&s, e, 0).unwrap();
            count[s.iter().position(|k| *k == lead).unwrap()] += 1;
            // Ranks 0..n name every settler once.
            let mut seen: Vec<PublicKey> = (0..3).map(|r| settler_at(&s, e, r).unwrap()).collect();
            seen.sort();
            let mut all = s.clone();
            all.sort();
            assert_eq!(seen, all);
            for r in 0..3 {
                assert_eq!(rank_of(&s, e, &settler_at(&s, e, r).unwrap()), Some(r));
            }
        }
        for c in count {
            assert!((800..1200).contains(&c), "leader share {c} of 3000 is uneven");
        }
        assert_eq!(leader_index(42, 3), leader_index(42, 3), "deterministic");
        assert_eq!(rank_of(&s, 1, &Keypair::from_seed_label("x").public()), None);
    }

    #[test]
    fn a_fallback_waits_for_its_turn() {
        let s = keys(2);
        let e = 7;
        let leader = settler_at(&s, e, 0).unwrap();
        let second = settler_at(&s, e, 1).unwrap();
        let t0 = CLOCK.turn_starts_ms(e, 0);
        assert_eq!(t0, 8_300);
        assert_eq!(CLOCK.turn_starts_ms(e, 1), 10_300);
        assert_eq!(check_turn(&CLOCK, &s, e, &leader, t0), Ok(0));
        let early = 10_300 - MAX_CLOCK_SKEW_MS - 1;
        assert!(matches!(
            check_turn(&CLOCK, &s, e, &second, early),
            Err(TurnError::TooEarly { rank: 1, .. })
        ));
        assert_eq!(check_turn(&CLOCK, &s, e, &second, 10_300), Ok(1));
        let stranger = Keypair::from_seed_label("x").public();
        assert!(matches!(
            check_turn(&CLOCK, &s, e, &stranger, 99_999),
            Err(TurnError::NotASettler { .. })
        ));
    }
}
