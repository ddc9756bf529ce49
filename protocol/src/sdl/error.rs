//! What can go wrong reading an SDL file: every error names the key path and the line.

use crate::validate::ValidationError;

/// Why an SDL file cannot be used. Every variant but [`SdlError::Params`] carries the key path
/// (`profiles.compute.web.resources.cpu.units`, list items as `expose[0]`) and the 1-based line
/// of the offending key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdlError {
    /// The text is not YAML (or too large, too deep, too many alias expansions).
    #[error("line {line}, column {column}: not valid YAML: {message}")]
    Yaml { line: usize, column: usize, message: String },
    /// A key that must be present is not.
    #[error("{path} (line {line}): missing; {hint}")]
    Missing { path: String, line: usize, hint: &'static str },
    /// A value of the wrong shape (a map where a list is expected, ...).
    #[error("{path} (line {line}): expected {expected}, found {found}")]
    WrongType { path: String, line: usize, expected: &'static str, found: &'static str },
    /// A value of the right shape that makes no sense.
    #[error("{path} (line {line}): {value:?} is not valid: {why}")]
    BadValue { path: String, line: usize, value: String, why: String },
    /// A name that refers to nothing declared (an unknown service, profile, volume, endpoint).
    #[error("{path} (line {line}): {what} {name:?} is not declared{hint}")]
    UnknownRef { path: String, line: usize, what: &'static str, name: String, hint: String },
    /// A feature of Akash SDL that leasemesh cannot honour yet.
    #[error("{path} (line {line}): not supported: {why}")]
    Unsupported { path: String, line: usize, why: &'static str },
    /// A key of Akash's SDL schema that leasemesh does not implement yet: refused, never
    /// dropped, since the tenant asked for it.
    #[error("{path} (line {line}): not supported yet: {key}: {why}")]
    NotYet { path: String, line: usize, key: &'static str, why: &'static str },
    /// Services of one placement priced in different denoms: an order has a single price.
    #[error("{path} (line {line}): placement {placement:?} mixes denoms {first:?} and {second:?}; an order has one price, so give every profile of a placement the same denom")]
    MixedDenoms { path: String, line: usize, placement: String, first: String, second: String },
    /// A number too large for the protocol (price × count × blocks per hour, sizes, ...).
    #[error("{path} (line {line}): too large: {why}")]
    Overflow { path: String, line: usize, why: &'static str },
    /// The converted order or manifest breaks a protocol rule (too many groups, a name too long).
    #[error("{path} (line {line}): the resulting {what} is not valid: {source}")]
    Invalid {
        path: String,
        line: usize,
        what: &'static str,
        #[source]
        source: Box<ValidationError>,
    },
    /// The conversion parameters themselves are wrong (block time 0, ...).
    #[error("order parameter {field}: {why}")]
    Params { field: &'static str, why: &'static str },
}

impl SdlError {
    /// Short stable name of the kind of error, for tallies and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            SdlError::Yaml { .. } => "yaml",
            SdlError::Missing { .. } => "missing",
            SdlError::WrongType { .. } => "wrong_type",
            SdlError::BadValue { .. } => "bad_value",
            SdlError::UnknownRef { .. } => "unknown_ref",
            SdlError::Unsupported { .. } => "unsupported",
            SdlError::NotYet { .. } => "not_yet",
            SdlError::MixedDenoms { .. } => "mixed_denoms",
            SdlError::Overflow { .. } => "overflow",
            SdlError::Invalid { .. } => "invalid",
            SdlError::Params { .. } => "params",
        }
    }

    /// The key path the error is about; `None` for YAML syntax and parameter errors.
    pub fn path(&self) -> Option<&str> {
        match self {
            SdlError::Missing { path, .. }
            | SdlError::WrongType { path, .. }
            | SdlError::BadValue { path, .. }
            | SdlError::UnknownRef { path, .. }
            | SdlError::Unsupported { path, .. }
            | SdlError::NotYet { path, .. }
            | SdlError::MixedDenoms { path, .. }
            | SdlError::Overflow { path, .. }
            | SdlError::Invalid { path, .. } => Some(path),
            SdlError::Yaml { .. } | SdlError::Params { .. } => None,
        }
    }

    /// The 1-based line in the SDL text; `None` for parameter errors.
    pub fn line(&self) -> Option<usize> {
        match self {
            SdlError::Yaml { line, .. }
            | SdlError::Missing { line, .. }
            | SdlError::WrongType { line, .. }
            | SdlError::BadValue { line, .. }
            | SdlError::UnknownRef { line, .. }
            | SdlError::Unsupported { line, .. }
            | SdlError::NotYet { line, .. }
            | SdlError::MixedDenoms { line, .. }
            | SdlError::Overflow { line, .. }
            | SdlError::Invalid { line, .. } => Some(*line),
            SdlError::Params { .. } => None,
        }
    }
}

/// Something accepted on purpose but worth telling the author: a key Akash ignores, a size unit
/// only Akash's TypeScript parser reads, a setting leasemesh does not enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdlWarning {
    pub path: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for SdlWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (line {}): {}", self.path, self.line, self.message)
    }
}
