//! Size, time and count limits. They are part of the wire format: changing one is a protocol
//! change.

/// Largest encoded signed order, in bytes.
pub const MAX_ORDER_SIZE: usize = 64 * 1024;
/// Largest encoded signed bid, in bytes.
pub const MAX_BID_SIZE: usize = 1024;
/// Largest encoded signed provider info, in bytes.
pub const MAX_PROVIDER_INFO_SIZE: usize = 256 * 1024;
/// Largest encoded signed heartbeat, in bytes.
pub const MAX_HEARTBEAT_SIZE: usize = 512;
/// Largest encoded signed match batch, in bytes (about 250k order and bid ids).
pub const MAX_MATCH_BATCH_SIZE: usize = 16 * 1024 * 1024;
/// Largest encoded signed lease event, in bytes.
pub const MAX_LEASE_EVENT_SIZE: usize = 8 * 1024;
/// Largest encoded signed settlement batch, in bytes.
pub const MAX_SETTLEMENT_BATCH_SIZE: usize = 32 * 1024 * 1024;

/// Shortest and longest auction an order may ask for.
pub const MIN_BID_WINDOW_MS: u64 = 100;
pub const MAX_BID_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Shortest and longest lease term.
pub const MIN_LEASE_TERM_MS: u64 = 1000;
pub const MAX_LEASE_TERM_MS: u64 = 366 * 24 * 3600 * 1000;
/// Shortest and longest grace period for a silent provider.
pub const MIN_GRACE_PERIOD_MS: u64 = 1000;
pub const MAX_GRACE_PERIOD_MS: u64 = 24 * 3600 * 1000;
/// Longest a bid may stay valid after it was made.
pub const MAX_BID_VALIDITY_MS: u64 = 3600 * 1000;
/// How far ahead of the local clock a creation time may be before it is refused.
pub const MAX_CLOCK_SKEW_MS: u64 = 5_000;
/// At most this many service groups in one order, replicas in one group.
pub const MAX_GROUPS: usize = 64;
pub const MAX_REPLICAS: u32 = 1000;
/// At most this many hosts per provider, GPUs per host.
pub const MAX_HOSTS: usize = 1024;
pub const MAX_GPUS_PER_HOST: usize = 64;
/// Placement and provider attributes.
pub const MAX_ATTRIBUTES: usize = 32;
/// Basis points in a whole (uptime is given in basis points: 10000 = 100 %).
pub const BPS_ONE: u16 = 10_000;
