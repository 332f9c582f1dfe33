//! Vendor field maps: which canonical field goes to which vendor field, checked at load
//! against what each vendor's page documents.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::canonical::{CanonicalField, ValueKind, is_identifier};
use crate::model::Vendor;
use crate::model::{Contact, ContactChange};

/// Canonical field → vendor field pairs, validated.
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    entries: Vec<(CanonicalField, String)>,
}

impl FieldMap {
    pub(crate) fn new(entries: Vec<(CanonicalField, String)>) -> Self {
        FieldMap { entries }
    }

    /// The vendor fields this change sets, with their canonical values (JSON), in map order.
    /// Fields absent from the change are absent here: they stay as they are at the vendor.
    pub fn project(&self, contact: &Contact) -> Vec<(&str, Value)> {
        self.entries
            .iter()
            .filter_map(|(field, target)| {
                canonical_value(contact, field).map(|v| (target.as_str(), v))
            })
            .collect()
    }

    /// [`Self::project`] for a change, with each field's version: that of the change that
    /// set the canonical field ([`ContactChange::version_of`]), as newest-wins planning
    /// ranks it.
    pub fn project_change(&self, change: &ContactChange) -> Vec<(&str, Value, i64)> {
        self.entries
            .iter()
            .filter_map(|(field, target)| {
                canonical_value(&change.contact, field)
                    .map(|v| (target.as_str(), v, change.version_of(&field.to_string())))
            })
            .collect()
    }

    /// The vendor field a canonical field maps to, if any.
    pub fn target_of(&self, field: &CanonicalField) -> Option<&str> {
        self.entries
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, t)| t.as_str())
    }

    pub fn entries(&self) -> &[(CanonicalField, String)] {
        &self.entries
    }
}

/// The value of one canonical field of `contact`, as JSON.
pub fn canonical_value(contact: &Contact, field: &CanonicalField) -> Option<Value> {
    match field {
        CanonicalField::Key => Some(Value::String(contact.key.as_str().to_string())),
        CanonicalField::Person => contact
            .person
            .as_ref()
            .map(|p| Value::String(p.as_str().to_string())),
        CanonicalField::Email => contact
            .email
            .as_ref()
            .map(|e| Value::String(e.as_str().to_string())),
        CanonicalField::Phone => contact
            .phone
            .as_ref()
            .map(|p| Value::String(p.as_str().to_string())),
        CanonicalField::FullName => contact.full_name.clone().map(Value::String),
        CanonicalField::Organization => contact.organization.clone().map(Value::String),
        CanonicalField::Tags => contact
            .tags
            .as_ref()
            .map(|t| t.iter().cloned().map(Value::String).collect()),
        CanonicalField::Lists => contact
            .lists
            .as_ref()
            .map(|t| t.iter().cloned().map(Value::String).collect()),
        CanonicalField::ConsentEmail => contact.consent.email.map(Value::Bool),
        CanonicalField::ConsentTexting => contact.consent.texting.map(Value::Bool),
        CanonicalField::Custom(name) => contact.custom.get(name).cloned(),
    }
}

/// Every vendor section of one file, checked, each as its vendor's own mapping type
/// (`relay_core::vendors::<name>`'s `VendorModel::Mapping`, read back with
/// `VendorMappings::get` or the per-vendor accessors there).
#[derive(Clone, Default)]
pub struct VendorMappings {
    by_vendor: BTreeMap<Vendor, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for VendorMappings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_vendor.keys()).finish()
    }
}

impl VendorMappings {
    /// Whether the file has a section for `vendor`.
    pub fn has(&self, vendor: Vendor) -> bool {
        self.by_vendor.contains_key(&vendor)
    }

    /// The vendors with a section.
    pub fn vendors(&self) -> impl Iterator<Item = Vendor> + '_ {
        self.by_vendor.keys().copied()
    }

    /// `vendor`'s mapping as its own type `M`; `None` when absent or of another type.
    pub fn get_as<M: Any>(&self, vendor: Vendor) -> Option<&M> {
        self.by_vendor.get(&vendor)?.downcast_ref::<M>()
    }

    pub(crate) fn insert(&mut self, vendor: Vendor, mapping: Arc<dyn Any + Send + Sync>) {
        self.by_vendor.insert(vendor, mapping);
    }
}

/// How the mapping loader reads one vendor's section: implemented once, generically, for
/// every registered vendor (`relay_core::vendors`), so this module names no vendor.
pub trait SectionRules: Sync {
    fn vendor(&self) -> Vendor;
    /// Checks `[vendors.<name>]`; problems go to `cx` (then `None` or a partial mapping,
    /// which the loader discards because the file has errors).
    fn compile(
        &self,
        section: toml::Value,
        cx: &mut super::SectionContext<'_, '_>,
    ) -> Option<Arc<dyn Any + Send + Sync>>;
}

/// One canonical field mapped to one vendor field, for the vendor's rules to check.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub vendor: Vendor,
    pub field: &'a CanonicalField,
    pub target: &'a str,
}

/// Kinds a text field accepts.
pub const TEXT: [ValueKind; 2] = [ValueKind::Text, ValueKind::Any];
/// Kinds a single-value field accepts.
pub const SCALAR: [ValueKind; 5] = [
    ValueKind::Text,
    ValueKind::Email,
    ValueKind::Phone,
    ValueKind::Bool,
    ValueKind::Any,
];

impl Target<'_> {
    /// `Ok` when the canonical field's kind is one of `wanted`, else a message saying what
    /// the vendor field takes (`what`).
    pub fn needs(&self, wanted: &[ValueKind], what: &str) -> Result<(), String> {
        let kind = self.field.kind();
        if wanted.contains(&kind) {
            Ok(())
        } else {
            Err(format!(
                "{} field `{}` takes {what}, but `{}` holds {kind}",
                self.vendor, self.target, self.field
            ))
        }
    }

    /// An e-mail field (canonical `email`).
    pub fn needs_email(&self) -> Result<(), String> {
        self.needs(&[ValueKind::Email], "an e-mail address (canonical `email`)")
    }

    /// A phone field (canonical `phone`, E.164).
    pub fn needs_phone(&self) -> Result<(), String> {
        self.needs(&[ValueKind::Phone], "a phone number (canonical `phone`)")
    }
}

/// Whether `s` is usable as a vendor attribute key: letters, digits, `_`.
pub fn is_attribute_key(s: &str) -> bool {
    is_identifier(s)
}
