//! Declarative mappings: how each inbound source's payload becomes canonical contact
//! changes (JMESPath, compiled once at load) and which canonical fields go to which vendor
//! fields. Loading checks everything a payload cannot fix later — bad expressions, unknown
//! vendor fields, custom property names Hood would refuse — and names file, section and
//! field in every error.
//!
//! The built-in mappings ship in `core/mappings/default.toml`.

pub mod canonical;
pub mod error;
pub mod file;
pub mod signature;
pub mod source;
pub mod vendor;

use std::collections::BTreeMap;

pub use canonical::CanonicalField;
pub use error::{ExtractError, LoadError, MappingError};
pub use file::Route;
pub use source::{
    EventDefaults, EventOutcome, FieldWarning, MappedChange, MappedEvent, SourceMapping,
};
pub use vendor::{ChannelMapping, FieldMap, HoodMapping, VendorMappings};

use crate::model::Vendor;
use crate::model::{ChangeKind, PhoneRegion};
use source::{Compiled, KindRule};

/// The mapping file shipped with profile-relay.
pub const BUILTIN_MAPPINGS: &str = include_str!("../../mappings/default.toml");

/// The file name errors in the built-in mappings are reported under.
pub const BUILTIN_NAME: &str = "core/mappings/default.toml";

/// A loaded, validated mapping file.
#[derive(Debug, Clone)]
pub struct Mappings {
    pub phone_region: PhoneRegion,
    sources: BTreeMap<String, SourceMapping>,
    pub vendors: VendorMappings,
}

impl Mappings {
    /// The built-in mappings.
    pub fn builtin() -> Result<Self, LoadError> {
        Self::from_toml(BUILTIN_NAME, BUILTIN_MAPPINGS)
    }

    /// Validates mapping text; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, LoadError> {
        let parsed: file::MappingFile = toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("line {line}, column {col}")
                }
                None => "syntax".to_string(),
            };
            single(file, &location, e.message().to_string())
        })?;
        Compiler {
            file,
            errors: Vec::new(),
        }
        .compile(parsed)
    }

    /// The mapping for a source name (as in `/hooks/forms/{source}`).
    pub fn source(&self, name: &str) -> Option<&SourceMapping> {
        self.sources.get(name)
    }

    /// The mapping for an EventBridge `detail-type`.
    pub fn source_for_detail_type(&self, detail_type: &str) -> Option<&SourceMapping> {
        self.sources
            .values()
            .find(|s| s.route == Route::Events && s.detail_type.as_deref() == Some(detail_type))
    }

    pub fn sources(&self) -> impl Iterator<Item = &SourceMapping> {
        self.sources.values()
    }
}

fn single(file: &str, location: &str, problem: String) -> LoadError {
    LoadError {
        errors: vec![MappingError {
            file: file.into(),
            location: location.into(),
            problem,
        }],
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, str::len) + 1;
    (line, col)
}

/// Collects every problem of one file while compiling it.
struct Compiler<'a> {
    file: &'a str,
    errors: Vec<MappingError>,
}

impl Compiler<'_> {
    fn err(&mut self, location: String, problem: impl Into<String>) {
        self.errors.push(MappingError {
            file: self.file.into(),
            location,
            problem: problem.into(),
        });
    }

    fn compile(mut self, parsed: file::MappingFile) -> Result<Mappings, LoadError> {
        let phone_region = PhoneRegion::parse(&parsed.settings.default_phone_region)
            .unwrap_or_else(|e| {
                self.err(
                    "settings, field \"default_phone_region\"".into(),
                    e.to_string(),
                );
                PhoneRegion::default()
            });
        let vendors = self.vendors(parsed.vendors);
        let mut sources = BTreeMap::new();
        let mut detail_types: BTreeMap<String, String> = BTreeMap::new();
        for (name, section) in parsed.sources {
            if let Some(mapping) = self.source(&name, section, phone_region, &vendors) {
                if let Some(dt) = &mapping.detail_type
                    && let Some(other) = detail_types.insert(dt.clone(), name.clone())
                {
                    self.err(
                        format!("source \"{name}\", field \"detail_type\""),
                        format!("detail-type `{dt}` is already handled by source \"{other}\""),
                    );
                }
                sources.insert(name, mapping);
            }
        }
        if self.errors.is_empty() {
            Ok(Mappings {
                phone_region,
                sources,
                vendors,
            })
        } else {
            Err(LoadError {
                errors: self.errors,
            })
        }
    }

    fn expr(&mut self, location: String, text: &str) -> Option<Compiled> {
        Compiled::compile(text)
            .map_err(|problem| self.err(location, problem))
            .ok()
    }

    fn source(
        &mut self,
        name: &str,
        s: file::SourceSection,
        region: PhoneRegion,
        vendor_maps: &VendorMappings,
    ) -> Option<SourceMapping> {
        let before = self.errors.len();
        let at = |field: &str| format!("source \"{name}\", field \"{field}\"");
        if !canonical::is_identifier(&name.replace('-', "_")) {
            self.err(
                format!("source \"{name}\""),
                "source names may use letters, digits, `-` and `_` (they appear in URLs)",
            );
        }
        match (s.route, &s.signature) {
            (Route::Forms | Route::Crm, None) => self.err(
                at("signature"),
                "a webhook source needs its signature scheme, e.g. signature = { scheme = \"standard_webhooks\" }",
            ),
            (Route::Events, Some(_)) => {
                self.err(at("signature"), "EventBridge sources are authenticated by IAM and take no signature")
            }
            _ => {}
        }
        match (s.route, &s.detail_type) {
            (Route::Events, None) => self.err(
                at("detail_type"),
                "an `events` source needs the EventBridge detail-type it handles",
            ),
            (Route::Forms | Route::Crm, Some(_)) => self.err(
                at("detail_type"),
                "only `events` sources have a detail-type",
            ),
            _ => {}
        }
        let phone_region = match s.phone_region.as_deref().map(PhoneRegion::parse) {
            None => region,
            Some(Ok(own)) => own,
            Some(Err(e)) => {
                self.err(at("phone_region"), e.to_string());
                region
            }
        };
        let mut vendors = Vec::new();
        if s.vendors.is_empty() {
            self.err(at("vendors"), "list at least one vendor to sync into");
        }
        for v in &s.vendors {
            match v.parse::<Vendor>() {
                Ok(vendor) if !vendor_maps.has(vendor) => self.err(
                    at("vendors"),
                    format!("vendor `{vendor}` has no [vendors.{vendor}] section"),
                ),
                Ok(vendor) => vendors.push(vendor),
                Err(problem) => self.err(at("vendors"), problem),
            }
        }
        let each = s.each.as_deref().and_then(|t| self.expr(at("each"), t));
        let event_id = s
            .event_id
            .as_deref()
            .and_then(|t| self.expr(at("event_id"), t));
        let occurred_at = s
            .occurred_at
            .as_deref()
            .and_then(|t| self.expr(at("occurred_at"), t));
        let kind = match (&s.kind, &s.kind_from) {
            (Some(fixed), None) => match fixed.parse::<ChangeKind>() {
                Ok(k) => Some(KindRule::Fixed(k)),
                Err(problem) => {
                    self.err(at("kind"), problem);
                    None
                }
            },
            (None, Some(from)) => {
                let expr = self.expr(at("kind_from"), from);
                if s.kinds.is_empty() {
                    self.err(at("kinds"), "`kind_from` needs a `kinds` table mapping its values to signup/created/updated/deleted");
                }
                let mut kinds = BTreeMap::new();
                for (value, kind) in &s.kinds {
                    match kind.parse::<ChangeKind>() {
                        Ok(k) => {
                            kinds.insert(value.clone(), k);
                        }
                        Err(problem) => self.err(at(&format!("kinds.{value}")), problem),
                    }
                }
                expr.map(|expr| KindRule::From { expr, kinds })
            }
            _ => {
                self.err(
                    at("kind"),
                    "give exactly one of `kind` (fixed) or `kind_from` (with `kinds`)",
                );
                None
            }
        };
        let mut fields = Vec::new();
        for (field_name, text) in &s.fields {
            let Some(field) = CanonicalField::parse(field_name) else {
                self.err(
                    at(field_name),
                    format!("unknown canonical field (known: {})", canonical::NAMES),
                );
                continue;
            };
            if let Some(expr) = self.expr(at(field_name), text) {
                fields.push((field, expr));
            }
        }
        let identifies = s
            .fields
            .keys()
            .any(|f| matches!(f.as_str(), "email" | "phone" | "key"));
        if !identifies {
            self.err(
                format!("source \"{name}\", fields"),
                "map at least one of `email`, `phone` or `key`, or no contact can be identified",
            );
        }
        if self.errors.len() > before {
            return None;
        }
        Some(SourceMapping {
            name: name.to_string(),
            route: s.route,
            detail_type: s.detail_type,
            signature: s.signature,
            vendors,
            each,
            event_id,
            occurred_at,
            kind: kind?,
            key_namespace: s.key_namespace.unwrap_or_else(|| name.to_string()),
            fields,
            phone_region,
        })
    }

    fn field_map(&mut self, vendor: Vendor, fields: BTreeMap<String, String>) -> FieldMap {
        let mut entries = Vec::new();
        let mut targets: BTreeMap<String, String> = BTreeMap::new();
        for (field_name, target) in fields {
            let at = format!("vendor \"{vendor}\", field \"{field_name}\"");
            let Some(field) = CanonicalField::parse(&field_name) else {
                self.err(
                    at,
                    format!("unknown canonical field (known: {})", canonical::NAMES),
                );
                continue;
            };
            if let Err(problem) = vendor::check_target(vendor, &field, &target) {
                self.err(at, problem);
                continue;
            }
            if let Some(other) = targets.insert(target.clone(), field_name.clone()) {
                self.err(at, format!("`{target}` is already mapped from `{other}`"));
                continue;
            }
            entries.push((field, target));
        }
        FieldMap::new(entries)
    }

    fn vendors(&mut self, v: file::VendorsSection) -> VendorMappings {
        let hood = v.hood.map(|h| {
            let fields = self.field_map(Vendor::Hood, h.fields);
            let mut properties = BTreeMap::new();
            for (field, target) in fields.entries() {
                if let Some(label) = target.strip_prefix("custom_properties.") {
                    properties.insert(
                        label.to_string(),
                        vendor::hood_property(label, field, h.properties.get(label)),
                    );
                }
            }
            for label in h.properties.keys() {
                if !properties.contains_key(label) {
                    self.err(
                        format!("vendor \"hood\", properties \"{label}\""),
                        "defines a custom property no field maps to (`custom_properties.<label>`)",
                    );
                }
            }
            HoodMapping { fields, properties }
        });
        let channelio = v.channelio.map(|c| {
            let member_id = c.member_id.and_then(|m| match CanonicalField::parse(&m) {
                Some(f)
                    if !matches!(
                        f.kind(),
                        canonical::ValueKind::List | canonical::ValueKind::Bool
                    ) =>
                {
                    Some(f)
                }
                _ => {
                    self.err(
                        "vendor \"channelio\", field \"member_id\"".into(),
                        format!(
                            "`{m}` cannot be a memberId (use key, email, phone or custom.<name>)"
                        ),
                    );
                    None
                }
            });
            ChannelMapping {
                member_id,
                fields: self.field_map(Vendor::Channelio, c.fields),
            }
        });
        let omnivibe = v
            .omnivibe
            .map(|o| self.field_map(Vendor::Omnivibe, o.fields));
        let chatwoot = v
            .chatwoot
            .map(|c| self.field_map(Vendor::Chatwoot, c.fields));
        VendorMappings {
            hood,
            channelio,
            omnivibe,
            chatwoot,
        }
    }
}
