//! The vendors profile-relay syncs into, one folder each: `mapping` (its
//! `[vendors.<name>]` section and which of its fields a mapping may target), `wire` (the
//! exact request and response bodies of `../shared/vendor-docs/`, pure data) and `plan` (a
//! contact change and what the link knows → the exact requests), tied together by the
//! vendor's [`VendorModel`] in its `mod.rs`. Their HTTP clients and syncs live in
//! `relay-shared`'s `vendors/<vendor>/`, their sandbox mocks in `relay-sandbox`.
//!
//! The vendors are registered once, in [`crate::for_each_vendor`]; this module turns that
//! list into the mapping loader's rules ([`Mappings::from_toml`]), typed access to each
//! vendor's mapping ([`VendorMappings::get`]) and a preview of any vendor's requests
//! ([`preview`]).

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::mapping::{LoadError, Mappings, SectionContext, SectionRules, VendorMappings};
use crate::model::ContactChange;
use crate::plan::{PlanError, Planned, PlannedRequest, SkipReason, VendorState};

pub use crate::model::Vendor;

/// What the pure core knows of one vendor: how its mapping section reads and how a change
/// becomes its requests. Implemented by the vendor's marker type
/// (`relay_core::vendors::<name>::<Name>`), registered in [`crate::for_each_vendor`].
pub trait VendorModel: Send + Sync + 'static {
    /// Which vendor this is.
    const VENDOR: Vendor;
    /// `[vendors.<name>]` as written (deserialised with `deny_unknown_fields`).
    type Section: DeserializeOwned;
    /// The section, checked: what planning reads.
    type Mapping: std::fmt::Debug + Clone + Send + Sync + 'static;
    /// What one delivery sends the vendor.
    type Plan: std::fmt::Debug + Clone + Send + Sync + 'static;

    /// Checks the section: every field pair, every vendor-specific key; problems go to `cx`.
    fn compile(section: Self::Section, cx: &mut SectionContext<'_, '_>) -> Self::Mapping;

    /// The requests for `change`, given what the link knows.
    fn plan(
        change: &ContactChange,
        state: &VendorState,
        mapping: &Self::Mapping,
    ) -> Result<Planned<Self::Plan>, PlanError>;

    /// Why the plan sends nothing, when it sends nothing.
    fn skip_reason(plan: &Self::Plan) -> Option<SkipReason>;

    /// The plan as the exact requests it makes (for `relay plan`; the sync may add
    /// lookups whose answers decide the rest).
    fn requests(plan: &Self::Plan, cx: &PreviewContext) -> Vec<PlannedRequest>;
}

/// What a preview of requests needs beyond the plan.
#[derive(Debug, Clone, Copy)]
pub struct PreviewContext {
    /// The vendor account id request paths carry (Chatwoot's `/api/v1/accounts/{id}`).
    pub account_id: u64,
}

impl Default for PreviewContext {
    fn default() -> Self {
        PreviewContext { account_id: 1 }
    }
}

/// The mapping loader's rules for one registered vendor.
struct Rules<V>(PhantomData<V>);

impl<V: VendorModel> SectionRules for Rules<V> {
    fn vendor(&self) -> Vendor {
        V::VENDOR
    }

    fn compile(
        &self,
        section: toml::Value,
        cx: &mut SectionContext<'_, '_>,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        match section.try_into::<V::Section>() {
            Ok(section) => Some(Arc::new(V::compile(section, cx))),
            Err(e) => {
                cx.invalid_section(e.message().to_string());
                None
            }
        }
    }
}

impl VendorMappings {
    /// Vendor `V`'s mapping, when the file has its section.
    pub fn get<V: VendorModel>(&self) -> Option<&V::Mapping> {
        self.get_as::<V::Mapping>(V::VENDOR)
    }
}

macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($module:ident),)+) => {
        $(pub mod $module;)+

        /// Every registered vendor's mapping rules.
        const RULES: &[&dyn SectionRules] = &[$(&Rules::<$module::$variant>(PhantomData)),+];

        impl VendorMappings {
            $(
                #[doc = concat!("The `[vendors.", stringify!($module), "]` mapping, when present.")]
                pub fn $module(&self) -> Option<&<$module::$variant as VendorModel>::Mapping> {
                    self.get::<$module::$variant>()
                }
            )+
        }

        /// The requests `change` would cause at `vendor` for a contact the relay has not
        /// synced there yet (`state`), or `None` when the mappings have no section for it.
        pub fn preview(
            vendor: Vendor,
            mappings: &Mappings,
            change: &ContactChange,
            state: &VendorState,
            cx: &PreviewContext,
        ) -> Option<Result<Vec<PlannedRequest>, PlanError>> {
            match vendor {
                $(Vendor::$variant => preview_of::<$module::$variant>(mappings, change, state, cx),)+
            }
        }
    };
}

for_each_vendor!(registry);

fn preview_of<V: VendorModel>(
    mappings: &Mappings,
    change: &ContactChange,
    state: &VendorState,
    cx: &PreviewContext,
) -> Option<Result<Vec<PlannedRequest>, PlanError>> {
    let mapping = mappings.vendors.get::<V>()?;
    Some(V::plan(change, state, mapping).map(|p| V::requests(&p.plan, cx)))
}

impl Mappings {
    /// The built-in mappings.
    pub fn builtin() -> Result<Self, LoadError> {
        Self::from_toml(
            crate::mapping::BUILTIN_NAME,
            crate::mapping::BUILTIN_MAPPINGS,
        )
    }

    /// Validates mapping text with every registered vendor's rules; `file` names it in
    /// errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, LoadError> {
        Self::from_toml_with(file, text, RULES)
    }
}

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
