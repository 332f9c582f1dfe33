//! The vendors profile-relay syncs into, one folder each: `wire` (the exact request and
//! response bodies of `../shared/vendor-docs/`, pure data) and `plan` (a contact change and
//! what the link knows → the exact requests). Their HTTP clients and syncs live in
//! `relay-shared`'s `vendors/<vendor>/`, their sandbox mocks in `relay-sandbox`.

pub mod channelio;
pub mod chatwoot;
pub mod hood;
pub mod omnivibe;

pub use crate::model::Vendor;

/// Serde helpers for ids that vendors send as strings or numbers.
pub mod wire_id {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        S(String),
        N(serde_json::Number),
    }

    /// Accepts `"1000105"` and `1000105` alike.
    pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match StringOrNumber::deserialize(d)? {
            StringOrNumber::S(s) => s,
            StringOrNumber::N(n) => n.to_string(),
        })
    }
}
