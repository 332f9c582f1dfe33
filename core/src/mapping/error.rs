//! Errors of loading a mapping file and of applying it to a payload.

use std::fmt;

/// One problem in a mapping file, naming the file, where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    pub file: String,
    /// e.g. `source "typeform", field "email"` or `vendor "hood", field "custom.plan"`.
    pub location: String,
    pub problem: String,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.location, self.problem)
    }
}

/// Every problem found while loading one file (all of them, not only the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub errors: Vec<MappingError>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} problem{} in the mapping file:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Why a payload could not be mapped into contact changes. Messages name fields and
/// expressions, never the payload's values (they are personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// `each` did not select a list of events.
    #[error("source \"{source_name}\": `each` ({expression}) did not select a list of events")]
    NotAnEventList {
        source_name: String,
        expression: String,
    },
    /// A batch holds more events than one delivery may carry.
    #[error(
        "source \"{source_name}\": the delivery holds {count} events; at most {limit} are accepted at once"
    )]
    TooManyEvents {
        source_name: String,
        count: usize,
        limit: usize,
    },
    /// A field's value has the wrong type or does not normalise.
    #[error("source \"{source_name}\", field \"{field}\" ({expression}): {problem}")]
    Field {
        source_name: String,
        field: String,
        expression: String,
        problem: String,
    },
    /// Neither an e-mail address, a phone number nor a sender's contact id was found.
    #[error(
        "source \"{source_name}\": found neither e-mail nor phone ({tried}); a contact needs one of them"
    )]
    NoIdentity { source_name: String, tried: String },
    /// `kind_from` gave a value with no entry in `kinds`.
    #[error("source \"{source_name}\": event kind `{value}` is not mapped (known: {known})")]
    UnknownKind {
        source_name: String,
        value: String,
        known: String,
    },
}

impl ExtractError {
    /// Stable machine code for HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::NotAnEventList { .. } => "payload_not_event_list",
            ExtractError::TooManyEvents { .. } => "batch_too_large",
            ExtractError::Field { .. } => "field_invalid",
            ExtractError::NoIdentity { .. } => "contact_unidentifiable",
            ExtractError::UnknownKind { .. } => "event_kind_unmapped",
        }
    }
}
