//! Value checks shared by the types, and the error they return.

use crate::types::Coin;

/// A value that decoded but makes no sense. The message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("{field} must not be zero")]
    Zero { field: String },
    #[error("{field} is {got}, outside the allowed range {min}..={max}")]
    OutOfRange { field: String, got: u128, min: u128, max: u128 },
    #[error("{field} must not be empty")]
    Empty { field: String },
    #[error("{field} has {got} entries; at most {max} are allowed")]
    TooMany { field: String, got: usize, max: usize },
    #[error("{field} is {got} characters long; at most {max} are allowed")]
    TooLong { field: String, got: usize, max: usize },
    #[error("{field} must be sorted and free of duplicates (at {key:?})")]
    NotSortedUnique { field: String, key: String },
    #[error("{field} {value:?} is not allowed: {why}")]
    BadValue { field: String, value: String, why: &'static str },
    #[error("{field} overflows: {why}")]
    Overflow { field: String, why: &'static str },
    #[error("{field}: {why}")]
    Inconsistent { field: String, why: String },
}

/// Timing checks against the local clock (expiry, windows, clock skew).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    #[error("{what} was created at {created_at_ms} ms, more than {skew_ms} ms ahead of this node's clock ({now_ms} ms): check the sender's clock")]
    FromTheFuture { what: &'static str, created_at_ms: u64, now_ms: u64, skew_ms: u64 },
    #[error("{what} expired at {expires_at_ms} ms; now is {now_ms} ms")]
    Expired { what: &'static str, expires_at_ms: u64, now_ms: u64 },
}

pub(crate) fn nonzero(field: &str, v: u64) -> Result<(), ValidationError> {
    if v == 0 {
        return Err(ValidationError::Zero { field: field.into() });
    }
    Ok(())
}

pub(crate) fn in_range(field: &str, v: u128, min: u128, max: u128) -> Result<(), ValidationError> {
    if v < min || v > max {
        return Err(ValidationError::OutOfRange { field: field.into(), got: v, min, max });
    }
    Ok(())
}

pub(crate) fn max_len<T>(field: &str, items: &[T], max: usize) -> Result<(), ValidationError> {
    if items.len() > max {
        return Err(ValidationError::TooMany { field: field.into(), got: items.len(), max });
    }
    Ok(())
}

pub(crate) fn non_empty<T>(field: &str, items: &[T]) -> Result<(), ValidationError> {
    if items.is_empty() {
        return Err(ValidationError::Empty { field: field.into() });
    }
    Ok(())
}

/// A printable, bounded string: no control characters, at most `max` characters.
pub(crate) fn text(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    let n = s.chars().count();
    if n > max {
        return Err(ValidationError::TooLong { field: field.into(), got: n, max });
    }
    if s.chars().any(char::is_control) {
        return Err(ValidationError::BadValue {
            field: field.into(),
            value: s.chars().take(40).collect(),
            why: "control characters are not allowed",
        });
    }
    Ok(())
}

/// An identifier-like string: non-empty, bounded, `[A-Za-z0-9._:/-]` only.
pub(crate) fn ident(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.is_empty() {
        return Err(ValidationError::Empty { field: field.into() });
    }
    text(field, s, max)?;
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c)) {
        return Err(ValidationError::BadValue {
            field: field.into(),
            value: s.chars().take(40).collect(),
            why: "only letters, digits and . _ : / - are allowed",
        });
    }
    Ok(())
}

/// Keys must be strictly increasing: sorted, no duplicates. Makes encodings canonical.
pub(crate) fn sorted_unique<K: Ord + std::fmt::Debug>(
    field: &str,
    keys: impl IntoIterator<Item = K>,
) -> Result<(), ValidationError> {
    let mut prev: Option<K> = None;
    for k in keys {
        if let Some(p) = &prev {
            if *p >= k {
                return Err(ValidationError::NotSortedUnique {
                    field: field.into(),
                    key: format!("{k:?}"),
                });
            }
        }
        prev = Some(k);
    }
    Ok(())
}

/// A Cosmos SDK denom: 3 to 128 characters, starts with a letter, then `[A-Za-z0-9/:._-]`.
pub(crate) fn coin(field: &str, c: &Coin) -> Result<(), ValidationError> {
    let d = &c.denom;
    let ok = (3..=128).contains(&d.len())
        && d.starts_with(|ch: char| ch.is_ascii_alphabetic())
        && d.chars().all(|ch| ch.is_ascii_alphanumeric() || "/:._-".contains(ch));
    if !ok {
        return Err(ValidationError::BadValue {
            field: format!("{field}.denom"),
            value: d.chars().take(40).collect(),
            why: "a denom is 3-128 characters, a letter first, then letters, digits or /:._-",
        });
    }
    Ok(())
}
