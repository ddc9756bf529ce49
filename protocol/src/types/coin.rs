//! Amounts: a denom and an integer in its smallest unit.

use serde::{Deserialize, Serialize};

use super::amount_serde;

/// An amount of one denom, in its smallest unit (for example `uakt`, `inj`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Coin {
    pub denom: String,
    #[serde(with = "amount_serde")]
    pub amount: u128,
}

impl Coin {
    pub fn new(denom: impl Into<String>, amount: u128) -> Coin {
        Coin { denom: denom.into(), amount }
    }
}

impl std::fmt::Display for Coin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.amount, self.denom)
    }
}
