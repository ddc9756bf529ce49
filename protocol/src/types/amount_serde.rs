//! Amounts are decimal strings in JSON (as in Cosmos SDK), plain varints on the wire: a `u128`
//! does not survive a JavaScript number.

use serde::{de, Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&v.to_string())
    } else {
        s.serialize_u128(*v)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    if d.is_human_readable() {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| de::Error::custom(format!("amount {s:?} is not an integer")))
    } else {
        u128::deserialize(d)
    }
}
