//! [`Bid`]: a provider's signed offer for a whole order.

use serde::{Deserialize, Serialize};

use super::{Coin, Order, MAX_BID_SIZE, MAX_BID_VALIDITY_MS, MAX_CLOCK_SKEW_MS};
use crate::codec::Signable;
use crate::crypto::{Id, PublicKey};
use crate::validate::{coin, in_range, TimeError, ValidationError};

/// A provider's signed offer to run a whole order for a price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    pub version: u8,
    pub order_id: Id,
    pub provider: PublicKey,
    /// Price per hour for the whole order, in the order's denom.
    pub price_per_hour: Coin,
    pub created_at_ms: u64,
    /// The bid is void after this time.
    pub expires_at_ms: u64,
}

impl Bid {
    pub fn check_time(&self, now_ms: u64) -> Result<(), TimeError> {
        if self.created_at_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(TimeError::FromTheFuture {
                what: "bid",
                created_at_ms: self.created_at_ms,
                now_ms,
                skew_ms: MAX_CLOCK_SKEW_MS,
            });
        }
        if self.expires_at_ms <= now_ms {
            return Err(TimeError::Expired {
                what: "bid",
                expires_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        Ok(())
    }

    /// Checks the bid against the order it answers: same id, same denom, price within the max.
    pub fn check_against(&self, order_id: &Id, order: &Order) -> Result<(), ValidationError> {
        if self.order_id != *order_id {
            return Err(ValidationError::Inconsistent {
                field: "order_id".into(),
                why: "the bid answers another order".into(),
            });
        }
        if self.price_per_hour.denom != order.max_price_per_hour.denom {
            return Err(ValidationError::Inconsistent {
                field: "price_per_hour.denom".into(),
                why: format!(
                    "the order pays in {}, the bid asks {}",
                    order.max_price_per_hour.denom, self.price_per_hour.denom
                ),
            });
        }
        if self.price_per_hour.amount > order.max_price_per_hour.amount {
            return Err(ValidationError::Inconsistent {
                field: "price_per_hour.amount".into(),
                why: format!(
                    "{} is over the order's maximum of {}",
                    self.price_per_hour, order.max_price_per_hour
                ),
            });
        }
        Ok(())
    }
}

impl Signable for Bid {
    const DOMAIN: &'static str = "leasemesh/v1/bid";
    const MAX_SIZE: usize = MAX_BID_SIZE;
    const NAME: &'static str = "bid";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        coin("price_per_hour", &self.price_per_hour)?;
        if self.expires_at_ms <= self.created_at_ms {
            return Err(ValidationError::Inconsistent {
                field: "expires_at_ms".into(),
                why: "a bid must expire after it was created".into(),
            });
        }
        in_range(
            "expires_at_ms - created_at_ms",
            u128::from(self.expires_at_ms - self.created_at_ms),
            1,
            MAX_BID_VALIDITY_MS.into(),
        )?;
        Ok(())
    }
}
