//! The node's database (sled): orders, bids (indexed by order), provider infos (the highest
//! sequence per provider), heartbeats, match batches, leases, lease events, and seen ids with
//! an expiry. Values are the exact signed bytes that were verified on the way in, so a restarted
//! node serves the same bytes it received.
//!
//! Nothing here verifies signatures: callers store only what they have checked.

use std::path::Path;

use leasemesh_protocol::{
    Bid, Heartbeat, Id, LeaseEvent, MatchBatch, Order, ProviderInfo, PublicKey, Signable, Signed,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How long an order is kept after its auction closed (the settler and late fetchers need it).
pub const ORDER_RETENTION_MS: u64 = 24 * 3600 * 1000;
/// How long a bid is kept after it expired.
pub const BID_RETENTION_MS: u64 = 3600 * 1000;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    #[error("stored {what} {key} does not decode ({reason}); the database is damaged")]
    Corrupt { what: &'static str, key: String, reason: String },
}

pub use leasemesh_protocol::api::{LeaseRecord, LeaseState, StoreCounts};

/// What one garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub orders: usize,
    pub bids: usize,
    pub seen: usize,
}

/// How many entries each counted tree holds, kept up to date on every insert and removal so
/// `/metrics` and `/v1/status` read them without scanning the database. Counted from the trees
/// once when the store opens.
#[derive(Debug, Default)]
struct Counters {
    orders: AtomicUsize,
    bids: AtomicUsize,
    providers: AtomicUsize,
    batches: AtomicUsize,
    leases: AtomicUsize,
    lease_events: AtomicUsize,
    seen: AtomicUsize,
}

fn inc(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn dec(c: &AtomicUsize) {
    // Never below zero, whatever the interleaving.
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
}

/// The node's database. Cheap to clone (sled handles are reference counted).
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    orders: sled::Tree,
    bids: sled::Tree,
    bids_by_order: sled::Tree,
    providers: sled::Tree,
    heartbeats: sled::Tree,
    batches: sled::Tree,
    leases: sled::Tree,
    lease_events: sled::Tree,
    seen: sled::Tree,
    /// Every provider info ever stored, by id (the settler's match batches name old ones).
    provider_history: sled::Tree,
    /// Provider key ‖ sequence (big endian) → info id, to find the snapshot as of a time.
    provider_by_seq: sled::Tree,
    /// Provider key ‖ heartbeat time (big endian): proofs of life for accrual.
    heartbeat_times: sled::Tree,
    counters: Arc<Counters>,
}

fn decode<T: Signable>(key: &[u8], bytes: &[u8]) -> Result<Signed<T>, StoreError> {
    Signed::<T>::decode(bytes).map_err(|e| StoreError::Corrupt {
        what: T::NAME,
        key: hex::encode(key),
        reason: e.to_string(),
    })
}

fn id_from(key: &[u8]) -> Option<Id> {
    let arr: [u8; 32] = key.get(..32)?.try_into().ok()?;
    Some(leasemesh_protocol::Hash(arr))
}

fn be(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

fn from_be(b: &[u8]) -> u64 {
    b.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()).map_or(0, u64::from_be_bytes)
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(path).flush_every_ms(Some(200)).open()?;
        Store::from_db(db)
    }

    /// A throwaway in-memory database (benches and unit tests).
    pub fn temporary() -> Result<Store, StoreError> {
        Store::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Store, StoreError> {
        let store = Store {
            orders: db.open_tree("orders")?,
            bids: db.open_tree("bids")?,
            bids_by_order: db.open_tree("bids_by_order")?,
            providers: db.open_tree("providers")?,
            heartbeats: db.open_tree("heartbeats")?,
            batches: db.open_tree("batches")?,
            leases: db.open_tree("leases")?,
            lease_events: db.open_tree("lease_events")?,
            seen: db.open_tree("seen")?,
            provider_history: db.open_tree("provider_history")?,
            provider_by_seq: db.open_tree("provider_by_seq")?,
            heartbeat_times: db.open_tree("heartbeat_times")?,
            counters: Arc::default(),
            db,
        };
        // One scan at open, on the caller's (blocking) thread; afterwards writes keep count.
        let c = store.scan_counts();
        let k = &store.counters;
        k.orders.store(c.orders, Ordering::Relaxed);
        k.bids.store(c.bids, Ordering::Relaxed);
        k.providers.store(c.providers, Ordering::Relaxed);
        k.batches.store(c.batches, Ordering::Relaxed);
        k.leases.store(c.leases, Ordering::Relaxed);
        k.lease_events.store(c.lease_events, Ordering::Relaxed);
        k.seen.store(c.seen, Ordering::Relaxed);
        Ok(store)
    }

    /// Writes everything to disk. Called on shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    // --- orders ---

    pub fn has_order(&self, id: &Id) -> Result<bool, StoreError> {
        Ok(self.orders.contains_key(id.as_bytes())?)
    }

    /// Stores a verified order; false if it was already there.
    pub fn put_order(&self, id: &Id, bytes: &[u8]) -> Result<bool, StoreError> {
        let new = self
            .orders
            .compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(bytes))?
            .is_ok();
        if new {
            inc(&self.counters.orders);
        }
        Ok(new)
    }

    pub fn order(&self, id: &Id) -> Result<Option<Signed<Order>>, StoreError> {
        self.orders.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    pub fn order_bytes(&self, id: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.orders.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Orders, live ones only (auction still open at `now_ms`) unless `now_ms` is `None`.
    pub fn orders(&self, live_at: Option<u64>) -> Result<Vec<Signed<Order>>, StoreError> {
        let mut out = Vec::new();
        for kv in self.orders.iter() {
            let (k, v) = kv?;
            let o: Signed<Order> = decode(&k, &v)?;
            if live_at.is_none_or(|now| o.body.auction_closes_at_ms() > now) {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// One page of the ids of live orders, after `after`, in id order; the second value is the
    /// cursor for the next page.
    pub fn live_order_ids(
        &self,
        after: Option<Id>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Id>, Option<Id>), StoreError> {
        page(&self.orders, after, limit, |k, v| {
            Ok(decode::<Order>(k, v)?.body.auction_closes_at_ms() > now_ms)
        })
    }

    /// One page of orders in id order after `after` (live ones only unless `live_at` is
    /// `None`), and the id to continue after when more follow.
    pub fn orders_page(
        &self,
        after: Option<Id>,
        limit: usize,
        live_at: Option<u64>,
    ) -> Result<(Vec<Signed<Order>>, Option<Id>), StoreError> {
        let after = after.map(|a| a.0);
        let (items, next) =
            page_of(&self.orders, after.as_ref().map(|a| &a[..]), limit, |k, v| {
                let o: Signed<Order> = decode(k, v)?;
                Ok(live_at.is_none_or(|now| o.body.auction_closes_at_ms() > now).then_some(o))
            })?;
        Ok((items, next.as_deref().and_then(id_from)))
    }

    // --- bids ---

    pub fn has_bid(&self, id: &Id) -> Result<bool, StoreError> {
        Ok(self.bids.contains_key(id.as_bytes())?)
    }

    /// Stores a verified bid and indexes it by order; false if it was already there.
    pub fn put_bid(&self, id: &Id, order_id: &Id, bytes: &[u8]) -> Result<bool, StoreError> {
        // Index first: an index entry without its bid is skipped on read and repaired by the
        // next copy of the bid, while a bid without its index entry would never be listed.
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(order_id.as_bytes());
        key[32..].copy_from_slice(id.as_bytes());
        self.bids_by_order.insert(key, &[])?;
        let new =
            self.bids.compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(bytes))?.is_ok();
        if new {
            inc(&self.counters.bids);
        }
        Ok(new)
    }

    pub fn bid_bytes(&self, id: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.bids.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    pub fn bid(&self, id: &Id) -> Result<Option<Signed<Bid>>, StoreError> {
        self.bids.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    pub fn bids_for_order(&self, order_id: &Id) -> Result<Vec<Signed<Bid>>, StoreError> {
        let mut out = Vec::new();
        for kv in self.bids_by_order.scan_prefix(order_id.as_bytes()) {
            let (k, _) = kv?;
            if let Some(v) = self.bids.get(&k[32..])? {
                out.push(decode(&k[32..], &v)?);
            }
        }
        Ok(out)
    }

    /// One page of the ids of unexpired bids.
    pub fn live_bid_ids(
        &self,
        after: Option<Id>,
        limit: usize,
        now_ms: u64,
    ) -> Result<(Vec<Id>, Option<Id>), StoreError> {
        page(&self.bids, after, limit, |k, v| Ok(decode::<Bid>(k, v)?.body.expires_at_ms > now_ms))
    }

    // --- providers and heartbeats ---

    /// Keeps the info if its sequence is higher than the stored one; true if it was kept.
    pub fn put_provider_info(&self, info: &Signed<ProviderInfo>) -> Result<bool, StoreError> {
        let key = info.body.provider.0;
        let bytes = info.encode();
        self.put_provider_history(info, &bytes)?;
        loop {
            let current = self.providers.get(key)?;
            if let Some(cur) = &current {
                let old: Signed<ProviderInfo> = decode(&key, cur)?;
                if old.body.sequence >= info.body.sequence {
                    return Ok(false);
                }
            }
            let was_new = current.is_none();
            if self.providers.compare_and_swap(key, current, Some(bytes.as_slice()))?.is_ok() {
                if was_new {
                    inc(&self.counters.providers);
                }
                return Ok(true);
            }
        }
    }

    pub fn provider_info(
        &self,
        key: &PublicKey,
    ) -> Result<Option<Signed<ProviderInfo>>, StoreError> {
        self.providers.get(key.0)?.map(|v| decode(&key.0, &v)).transpose()
    }

    pub fn provider_infos(&self) -> Result<Vec<Signed<ProviderInfo>>, StoreError> {
        self.providers
            .iter()
            .map(|kv| kv.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }

    /// One page of the latest provider infos in key order after the provider `after`, and the
    /// key to continue after when more follow.
    pub fn provider_infos_page(
        &self,
        after: Option<PublicKey>,
        limit: usize,
    ) -> Result<(Vec<Signed<ProviderInfo>>, Option<PublicKey>), StoreError> {
        let after = after.map(|a| a.0);
        let (items, next) =
            page_of(&self.providers, after.as_ref().map(|a| &a[..]), limit, |k, v| {
                decode(k, v).map(Some)
            })?;
        Ok((items, next.as_deref().and_then(id_from).map(|h| PublicKey(h.0))))
    }

    /// Keeps the heartbeat if its sequence is higher than the stored one.
    pub fn put_heartbeat(&self, hb: &Signed<Heartbeat>) -> Result<bool, StoreError> {
        let key = hb.body.provider.0;
        let bytes = hb.encode();
        let mut tkey = key.to_vec();
        tkey.extend_from_slice(&be(hb.body.at_ms));
        self.heartbeat_times.insert(tkey, &[])?;
        loop {
            let current = self.heartbeats.get(key)?;
            if let Some(cur) = &current {
                let old: Signed<Heartbeat> = decode(&key, cur)?;
                if old.body.sequence >= hb.body.sequence {
                    return Ok(false);
                }
            }
            if self.heartbeats.compare_and_swap(key, current, Some(bytes.as_slice()))?.is_ok() {
                return Ok(true);
            }
        }
    }

    pub fn heartbeat(&self, key: &PublicKey) -> Result<Option<Signed<Heartbeat>>, StoreError> {
        self.heartbeats.get(key.0)?.map(|v| decode(&key.0, &v)).transpose()
    }

    fn put_provider_history(
        &self,
        info: &Signed<ProviderInfo>,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let id = info.id();
        self.provider_history.insert(id.as_bytes(), bytes)?;
        let mut k = info.body.provider.0.to_vec();
        k.extend_from_slice(&be(info.body.sequence));
        self.provider_by_seq.insert(k, id.as_bytes())?;
        Ok(())
    }

    /// Any provider info this node ever stored, by id (not only the latest).
    pub fn provider_info_by_id(&self, id: &Id) -> Result<Option<Signed<ProviderInfo>>, StoreError> {
        self.provider_history.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    pub fn provider_info_bytes_by_id(&self, id: &Id) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.provider_history.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// The provider's info with the highest sequence among those created at or before `at_ms`.
    pub fn provider_info_as_of(
        &self,
        provider: &PublicKey,
        at_ms: u64,
    ) -> Result<Option<Signed<ProviderInfo>>, StoreError> {
        for kv in self.provider_by_seq.scan_prefix(provider.0).rev() {
            let (_, id) = kv?;
            let Some(id) = id_from(&id) else { continue };
            if let Some(info) = self.provider_info_by_id(&id)? {
                if info.body.created_at_ms <= at_ms {
                    return Ok(Some(info));
                }
            }
        }
        Ok(None)
    }

    /// Proofs of life of a provider in `[from_ms, to_ms]`, ascending: its heartbeats' times and
    /// its provider infos' creation times.
    pub fn proofs_of_life(
        &self,
        provider: &PublicKey,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        let mut lo = provider.0.to_vec();
        lo.extend_from_slice(&be(from_ms));
        let mut hi = provider.0.to_vec();
        hi.extend_from_slice(&be(to_ms));
        for kv in self.heartbeat_times.range(lo..=hi) {
            let (k, _) = kv?;
            out.push(from_be(&k[32..]));
        }
        for kv in self.provider_by_seq.scan_prefix(provider.0) {
            let (_, id) = kv?;
            let Some(id) = id_from(&id) else { continue };
            if let Some(info) = self.provider_info_by_id(&id)? {
                let t = info.body.created_at_ms;
                if (from_ms..=to_ms).contains(&t) {
                    out.push(t);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// A tree of its own in the node's database, for a role's state (name it `role/what`).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    // --- match batches and leases ---

    pub fn has_batch(&self, id: &Id) -> Result<bool, StoreError> {
        Ok(self.batches.contains_key(id.as_bytes())?)
    }

    pub fn put_batch(&self, id: &Id, bytes: &[u8]) -> Result<bool, StoreError> {
        let new = self
            .batches
            .compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(bytes))?
            .is_ok();
        if new {
            inc(&self.counters.batches);
        }
        Ok(new)
    }

    pub fn batch(&self, id: &Id) -> Result<Option<Signed<MatchBatch>>, StoreError> {
        self.batches.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    pub fn put_lease(&self, lease: &LeaseRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(lease).map_err(|e| StoreError::Corrupt {
            what: "lease",
            key: lease.lease_id.to_hex(),
            reason: e.to_string(),
        })?;
        if self.leases.insert(lease.lease_id.as_bytes(), bytes)?.is_none() {
            inc(&self.counters.leases);
        }
        Ok(())
    }

    pub fn lease(&self, id: &Id) -> Result<Option<LeaseRecord>, StoreError> {
        self.leases.get(id.as_bytes())?.map(|v| decode_lease(id.as_bytes(), &v)).transpose()
    }

    pub fn leases(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        self.leases
            .iter()
            .map(|kv| kv.map_err(StoreError::from).and_then(|(k, v)| decode_lease(&k, &v)))
            .collect()
    }

    /// One page of leases in lease-id order after `after`, and the id to continue after when
    /// more follow.
    pub fn leases_page(
        &self,
        after: Option<Id>,
        limit: usize,
    ) -> Result<(Vec<LeaseRecord>, Option<Id>), StoreError> {
        let after = after.map(|a| a.0);
        let (items, next) =
            page_of(&self.leases, after.as_ref().map(|a| &a[..]), limit, |k, v| {
                decode_lease(k, v).map(Some)
            })?;
        Ok((items, next.as_deref().and_then(id_from)))
    }

    /// Stores a lease event under its lease, ordered by time; false if already there.
    pub fn put_lease_event(&self, id: &Id, ev: &Signed<LeaseEvent>) -> Result<bool, StoreError> {
        let mut key = Vec::with_capacity(72);
        key.extend_from_slice(ev.body.lease_id.as_bytes());
        key.extend_from_slice(&be(ev.body.at_ms));
        key.extend_from_slice(id.as_bytes());
        let new = self
            .lease_events
            .compare_and_swap(key, None as Option<&[u8]>, Some(ev.encode()))?
            .is_ok();
        if new {
            inc(&self.counters.lease_events);
        }
        Ok(new)
    }

    pub fn lease_events(&self, lease_id: &Id) -> Result<Vec<Signed<LeaseEvent>>, StoreError> {
        self.lease_events
            .scan_prefix(lease_id.as_bytes())
            .map(|kv| kv.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }

    // --- seen ids ---

    /// Remembers `id` until `expires_at_ms`.
    pub fn mark_seen(&self, id: &Id, expires_at_ms: u64) -> Result<(), StoreError> {
        if self.seen.insert(id.as_bytes(), &be(expires_at_ms))?.is_none() {
            inc(&self.counters.seen);
        }
        Ok(())
    }

    pub fn is_seen(&self, id: &Id, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self.seen.get(id.as_bytes())?.is_some_and(|v| from_be(&v) > now_ms))
    }

    // --- housekeeping ---

    /// Removes orders long closed (unless a lease refers to them), bids long expired and seen
    /// ids past their expiry.
    pub fn gc(&self, now_ms: u64) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let leased: std::collections::HashSet<Id> =
            self.leases()?.into_iter().map(|l| l.order_id).collect();
        for kv in self.orders.iter() {
            let (k, v) = kv?;
            let o: Signed<Order> = decode(&k, &v)?;
            let id = o.id();
            if o.body.auction_closes_at_ms().saturating_add(ORDER_RETENTION_MS) < now_ms
                && !leased.contains(&id)
                && self.orders.remove(&k)?.is_some()
            {
                dec(&self.counters.orders);
                report.orders += 1;
            }
        }
        for kv in self.bids.iter() {
            let (k, v) = kv?;
            let b: Signed<Bid> = decode(&k, &v)?;
            if b.body.expires_at_ms.saturating_add(BID_RETENTION_MS) < now_ms
                && !leased.contains(&b.body.order_id)
            {
                let mut idx = [0u8; 64];
                idx[..32].copy_from_slice(b.body.order_id.as_bytes());
                idx[32..].copy_from_slice(&k);
                self.bids_by_order.remove(idx)?;
                if self.bids.remove(&k)?.is_some() {
                    dec(&self.counters.bids);
                    report.bids += 1;
                }
            }
        }
        for kv in self.seen.iter() {
            let (k, v) = kv?;
            if from_be(&v) <= now_ms && self.seen.remove(&k)?.is_some() {
                dec(&self.counters.seen);
                report.seen += 1;
            }
        }
        Ok(report)
    }

    /// How many of each thing the store holds, from the counters: no database access, so it is
    /// cheap enough for an async handler.
    pub fn counts(&self) -> StoreCounts {
        let k = &self.counters;
        let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        StoreCounts {
            orders: get(&k.orders),
            bids: get(&k.bids),
            providers: get(&k.providers),
            batches: get(&k.batches),
            leases: get(&k.leases),
            lease_events: get(&k.lease_events),
            seen: get(&k.seen),
        }
    }

    /// The same counts from full scans of the trees (seven of them): only for opening the
    /// store and for checking the counters.
    pub fn scan_counts(&self) -> StoreCounts {
        StoreCounts {
            orders: self.orders.len(),
            bids: self.bids.len(),
            providers: self.providers.len(),
            batches: self.batches.len(),
            leases: self.leases.len(),
            lease_events: self.lease_events.len(),
            seen: self.seen.len(),
        }
    }
}

fn decode_lease(key: &[u8], bytes: &[u8]) -> Result<LeaseRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: "lease",
        key: hex::encode(key),
        reason: e.to_string(),
    })
}

/// One page of `tree` in key order, after the key `after`: the values `keep` maps to `Some`,
/// at most `limit` of them, and the key of the last one when more follow (looked ahead, so a
/// cursor always leads to at least one more item).
fn page_of<T>(
    tree: &sled::Tree,
    after: Option<&[u8]>,
    limit: usize,
    mut keep: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
) -> Result<(Vec<T>, Option<Vec<u8>>), StoreError> {
    let iter = match after {
        Some(a) => tree.range((std::ops::Bound::Excluded(a.to_vec()), std::ops::Bound::Unbounded)),
        None => tree.iter(),
    };
    let mut items = Vec::new();
    let mut last_key: Option<Vec<u8>> = None;
    for kv in iter {
        let (k, v) = kv?;
        if let Some(item) = keep(&k, &v)? {
            if items.len() == limit {
                return Ok((items, last_key));
            }
            items.push(item);
            last_key = Some(k.to_vec());
        }
    }
    Ok((items, None))
}

/// A page of ids of `tree` after `after` that pass `keep`.
fn page(
    tree: &sled::Tree,
    after: Option<Id>,
    limit: usize,
    keep: impl Fn(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(Vec<Id>, Option<Id>), StoreError> {
    let (ids, next) =
        page_of(tree, after.as_ref().map(|a| a.as_bytes().as_slice()), limit, |k, v| {
            Ok(if keep(k, v)? { id_from(k) } else { None })
        })?;
    Ok((ids, next.as_deref().and_then(id_from)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::samples;

    #[test]
    fn orders_and_bids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let order = samples::signed_order();
        let bid = samples::signed_bid();
        {
            let s = Store::open(dir.path()).unwrap();
            assert!(s.put_order(&order.id(), &order.encode()).unwrap());
            assert!(!s.put_order(&order.id(), &order.encode()).unwrap());
            assert!(s.put_bid(&bid.id(), &order.id(), &bid.encode()).unwrap());
            s.flush().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.order(&order.id()).unwrap(), Some(order.clone()));
        assert_eq!(s.bids_for_order(&order.id()).unwrap(), vec![bid]);
        let live_at = samples::SAMPLE_TIME_MS;
        assert_eq!(s.orders(Some(live_at)).unwrap().len(), 1);
        assert_eq!(s.orders(Some(live_at + 10_000)).unwrap().len(), 0);
    }

    #[test]
    fn provider_info_keeps_the_highest_sequence() {
        let s = Store::temporary().unwrap();
        let key = samples::provider_key();
        let mut info = samples::provider_info();
        info.sequence = 5;
        assert!(s.put_provider_info(&Signed::sign(info.clone(), &key)).unwrap());
        info.sequence = 4;
        assert!(!s.put_provider_info(&Signed::sign(info.clone(), &key)).unwrap());
        info.sequence = 6;
        assert!(s.put_provider_info(&Signed::sign(info, &key)).unwrap());
        assert_eq!(s.provider_infos().unwrap()[0].body.sequence, 6);
    }

    #[test]
    fn pages_cover_every_live_id_once() {
        let s = Store::temporary().unwrap();
        let key = samples::tenant_key();
        let mut ids = Vec::new();
        for nonce in 0..25 {
            let mut o = samples::order();
            o.nonce = nonce;
            let so = Signed::sign(o, &key);
            s.put_order(&so.id(), &so.encode()).unwrap();
            ids.push(so.id());
        }
        ids.sort();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = s.live_order_ids(after, 10, samples::SAMPLE_TIME_MS).unwrap();
            got.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(got, ids);
    }

    #[test]
    fn gc_drops_old_orders_and_seen_ids() {
        let s = Store::temporary().unwrap();
        let o = samples::signed_order();
        s.put_order(&o.id(), &o.encode()).unwrap();
        s.mark_seen(&o.id(), samples::SAMPLE_TIME_MS + 10).unwrap();
        assert!(s.is_seen(&o.id(), samples::SAMPLE_TIME_MS).unwrap());
        let r = s.gc(samples::SAMPLE_TIME_MS + 1000).unwrap();
        assert_eq!(r, GcReport { orders: 0, bids: 0, seen: 1 });
        let r = s.gc(samples::SAMPLE_TIME_MS + ORDER_RETENTION_MS + 3000).unwrap();
        assert_eq!(r.orders, 1);
        assert!(!s.has_order(&o.id()).unwrap());
    }

    fn lease(n: u8, state: LeaseState) -> LeaseRecord {
        let h = |tag: &str| Id::domain(tag, &[&[n]]);
        LeaseRecord {
            lease_id: h("lease"),
            order_id: h("order"),
            bid_id: h("bid"),
            batch_id: h("batch"),
            provider: samples::provider_key().public(),
            tenant: None,
            price_per_hour: leasemesh_protocol::Coin::new("uakt", 1000),
            state,
            updated_at_ms: 1,
        }
    }

    /// The counters `/metrics` and `/v1/status` read agree with full scans after inserts,
    /// duplicates, updates and garbage collection, and again after the store is reopened.
    #[test]
    fn counters_match_the_scan_through_writes_gc_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = samples::tenant_key();
        {
            let s = Store::open(dir.path()).unwrap();
            for nonce in 0..6 {
                let mut o = samples::order();
                o.nonce = nonce;
                let so = Signed::sign(o, &key);
                s.put_order(&so.id(), &so.encode()).unwrap();
                s.put_order(&so.id(), &so.encode()).unwrap();
                s.mark_seen(&so.id(), samples::SAMPLE_TIME_MS + nonce).unwrap();
                s.mark_seen(&so.id(), samples::SAMPLE_TIME_MS + nonce).unwrap();
            }
            let bid = samples::signed_bid();
            s.put_bid(&bid.id(), &bid.body.order_id, &bid.encode()).unwrap();
            s.put_bid(&bid.id(), &bid.body.order_id, &bid.encode()).unwrap();
            let pkey = samples::provider_key();
            let mut info = samples::provider_info();
            for seq in [3, 2, 4] {
                info.sequence = seq;
                s.put_provider_info(&Signed::sign(info.clone(), &pkey)).unwrap();
            }
            s.put_lease(&lease(1, LeaseState::Awarded)).unwrap();
            s.put_lease(&lease(1, LeaseState::Running)).unwrap();
            s.put_lease(&lease(2, LeaseState::Awarded)).unwrap();
            let batch = Id::domain("batch", &[b"x"]);
            s.put_batch(&batch, b"bytes").unwrap();
            s.put_batch(&batch, b"bytes").unwrap();
            assert_eq!(s.counts(), s.scan_counts());
            let c = s.counts();
            assert_eq!(
                (c.orders, c.bids, c.providers, c.leases, c.batches, c.seen),
                (6, 1, 1, 2, 1, 6)
            );
            // Half the seen ids expire, then every order and bid ages out.
            s.gc(samples::SAMPLE_TIME_MS + 3).unwrap();
            assert_eq!(s.counts().seen, 2);
            assert_eq!(s.counts(), s.scan_counts());
            s.gc(samples::SAMPLE_TIME_MS + ORDER_RETENTION_MS + 60_000).unwrap();
            assert_eq!(s.counts(), s.scan_counts());
            assert_eq!((s.counts().orders, s.counts().bids), (0, 0));
            s.flush().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.counts(), s.scan_counts());
        assert_eq!(s.counts().leases, 2);
        s.put_lease(&lease(3, LeaseState::Awarded)).unwrap();
        assert_eq!(s.counts().leases, 3);
    }

    /// Pages of leases, orders and providers cover every item once, in key order, and the last
    /// page says there is no more.
    #[test]
    fn listing_pages_cover_everything_once() {
        let s = Store::temporary().unwrap();
        let mut lease_ids: Vec<Id> =
            (0..7).map(|n| lease(n, LeaseState::Awarded).lease_id).collect();
        for n in 0..7 {
            s.put_lease(&lease(n, LeaseState::Awarded)).unwrap();
        }
        lease_ids.sort();
        let mut got = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let (page, next) = s.leases_page(after, 3).unwrap();
            assert!(page.len() <= 3);
            pages += 1;
            got.extend(page.into_iter().map(|l| l.lease_id));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(got, lease_ids);
        assert_eq!(pages, 3, "7 items in pages of 3; a cursor never leads to an empty page");
        let (all, next) = s.leases_page(None, 7).unwrap();
        assert_eq!((all.len(), next), (7, None));

        let mut providers = Vec::new();
        for label in ["p0", "p1", "p2", "p3"] {
            let k = leasemesh_protocol::Keypair::from_seed_label(label);
            let mut info = samples::provider_info();
            info.provider = k.public();
            s.put_provider_info(&Signed::sign(info, &k)).unwrap();
            providers.push(k.public());
        }
        providers.sort();
        let (p1, next) = s.provider_infos_page(None, 2).unwrap();
        let (p2, end) = s.provider_infos_page(next, 2).unwrap();
        let keys: Vec<_> = p1.iter().chain(&p2).map(|i| i.body.provider).collect();
        assert_eq!((keys, end), (providers, None));

        let o = samples::signed_order();
        s.put_order(&o.id(), &o.encode()).unwrap();
        let closed = o.body.auction_closes_at_ms() + 1;
        assert_eq!(s.orders_page(None, 10, Some(closed)).unwrap().0.len(), 0);
        assert_eq!(s.orders_page(None, 10, None).unwrap().0, vec![o]);
    }

    /// A lease whose stored state no version of the node writes is a typed error, not a default.
    #[test]
    fn an_unknown_stored_lease_state_is_an_error() {
        let s = Store::temporary().unwrap();
        let l = lease(9, LeaseState::Running);
        s.put_lease(&l).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&s.leases.get(l.lease_id.as_bytes()).unwrap().unwrap()).unwrap();
        assert_eq!(json["state"], "running", "stored with the same spelling as before");
        json["state"] = "runing".into();
        s.leases.insert(l.lease_id.as_bytes(), serde_json::to_vec(&json).unwrap()).unwrap();
        match s.lease(&l.lease_id) {
            Err(StoreError::Corrupt { what: "lease", reason, .. }) => {
                assert!(reason.contains("runing"), "{reason}")
            }
            other => panic!("expected a corrupt-lease error, got {other:?}"),
        }
        assert!(s.leases().is_err());
    }
}
