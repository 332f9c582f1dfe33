//! The canonical model every source maps into and every vendor plan starts from.
//!
//! Values are normalised on the way in (e-mail lower-cased and validated, phones in E.164,
//! tags made acceptable to Channel.io), so planning never sees a value a vendor would refuse.

pub mod contact;
pub mod email;
pub mod event;
pub mod limits;
pub mod person;
pub mod phone;
pub mod redact;
pub mod tags;
#[macro_use]
pub mod vendor;

pub use contact::{Consent, Contact, ContactKey};
pub use email::Email;
pub use event::{ChangeKind, ContactChange, SyncEvent};
pub use person::{InvalidPersonId, PersonId};
pub use phone::{PhoneE164, PhoneRegion};
pub use tags::ChannelTags;
pub use vendor::Vendor;

/// A value that could not be normalised. Messages never contain the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("not a valid e-mail address ({0})")]
    InvalidEmail(String),
    #[error("not a valid phone number ({0})")]
    InvalidPhone(String),
    #[error("unknown phone region `{0}` (expected an ISO 3166-1 alpha-2 code such as US or DE)")]
    UnknownRegion(String),
    #[error("a contact key must not be empty")]
    EmptyContactKey,
}

impl ModelError {
    /// A stable code for warnings and metrics (never the value): `phone_invalid`,
    /// `email_invalid`, `phone_region_unknown`, `key_invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::InvalidEmail(_) => "email_invalid",
            ModelError::InvalidPhone(_) => PhoneE164::INVALID_CODE,
            ModelError::UnknownRegion(_) => "phone_region_unknown",
            ModelError::EmptyContactKey => "key_invalid",
        }
    }
}
