//! Key-value attributes of providers and placements.

use serde::{Deserialize, Serialize};

use super::MAX_ATTRIBUTES;
use crate::validate::{ident, max_len, sorted_unique, text, ValidationError};

/// A key-value attribute of a provider (`region=eu-west`), or one a placement requires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attribute {
    pub key: String,
    pub value: String,
}

impl Attribute {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Attribute {
        Attribute { key: key.into(), value: value.into() }
    }
}

pub(super) fn check_attributes(field: &str, attrs: &[Attribute]) -> Result<(), ValidationError> {
    max_len(field, attrs, MAX_ATTRIBUTES)?;
    for a in attrs {
        ident(&format!("{field}.key"), &a.key, 64)?;
        text(&format!("{field}.{}", a.key), &a.value, 128)?;
    }
    sorted_unique(field, attrs.iter().map(|a| a.key.as_str()))
}
