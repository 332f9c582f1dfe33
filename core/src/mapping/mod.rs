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
pub use vendor::{FieldMap, SectionRules, Target, VendorMappings};

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
    /// Validates mapping text, reading each `[vendors.<name>]` section with the rules of
    /// that vendor; `file` names it in errors. Callers use `Mappings::from_toml` (in
    /// `relay_core::vendors`), which passes every registered vendor's rules.
    pub fn from_toml_with(
        file: &str,
        text: &str,
        rules: &[&dyn SectionRules],
    ) -> Result<Self, LoadError> {
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
            text,
            errors: Vec::new(),
        }
        .compile(parsed, rules)
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
    text: &'a str,
    errors: Vec<MappingError>,
}

/// What a vendor's rules use while reading its `[vendors.<name>]` section: field maps
/// checked target by target, and problems reported under the file and section.
pub struct SectionContext<'c, 'a> {
    compiler: &'c mut Compiler<'a>,
    vendor: Vendor,
    line_col: (usize, usize),
}

impl SectionContext<'_, '_> {
    /// The vendor whose section this is.
    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    /// A field map (canonical field → vendor field), each pair checked by `check`; a
    /// problem costs that pair and is reported as `vendor "<name>", field "<canonical>"`.
    pub fn field_map(
        &mut self,
        fields: BTreeMap<String, String>,
        check: impl Fn(Target<'_>) -> Result<(), String>,
    ) -> FieldMap {
        self.compiler.field_map(self.vendor, fields, &check)
    }

    /// Reports that the section as written does not fit the vendor's section type (an
    /// unknown or missing key), at the section's line.
    pub fn invalid_section(&mut self, problem: impl Into<String>) {
        let (line, col) = self.line_col;
        let at = format!("vendor \"{}\" (line {line}, column {col})", self.vendor);
        self.compiler.err(at, problem);
    }

    /// Reports a problem at `vendor "<name>", <place>` (e.g. `field "member_id"`).
    pub fn error(&mut self, place: &str, problem: impl Into<String>) {
        let at = format!("vendor \"{}\", {place}", self.vendor);
        self.compiler.err(at, problem);
    }
}

impl Compiler<'_> {
    fn err(&mut self, location: String, problem: impl Into<String>) {
        self.errors.push(MappingError {
            file: self.file.into(),
            location,
            problem: problem.into(),
        });
    }

    fn compile(
        mut self,
        parsed: file::MappingFile,
        rules: &[&dyn SectionRules],
    ) -> Result<Mappings, LoadError> {
        let phone_region = PhoneRegion::parse(&parsed.settings.default_phone_region)
            .unwrap_or_else(|e| {
                self.err(
                    "settings, field \"default_phone_region\"".into(),
                    e.to_string(),
                );
                PhoneRegion::default()
            });
        let vendors = self.vendors(parsed.vendors, rules);
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
            if field == CanonicalField::Person {
                self.err(
                    at(field_name),
                    "`person` is the id the relay resolves a contact's identifiers to; a source cannot set it (map `key`, `email` or `phone`)",
                );
                continue;
            }
            if let Some(expr) = self.expr(at(field_name), text) {
                fields.push((field, expr));
            }
        }
        let mut full_name_from = Vec::new();
        for part in &s.full_name_from {
            match CanonicalField::parse(part) {
                Some(CanonicalField::Custom(name)) if s.fields.contains_key(part) => {
                    full_name_from.push(name);
                }
                Some(CanonicalField::Custom(_)) => self.err(
                    at("full_name_from"),
                    format!("`{part}` is not one of this source's fields"),
                ),
                _ => self.err(
                    at("full_name_from"),
                    format!("`{part}`: only `custom.<name>` fields can make up a full name"),
                ),
            }
        }
        if !full_name_from.is_empty() && s.fields.contains_key("full_name") {
            self.err(
                at("full_name_from"),
                "give `full_name` or `full_name_from`, not both",
            );
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
            combine_by_key: s.combine_by_key,
            full_name_from,
        })
    }

    fn field_map(
        &mut self,
        vendor: Vendor,
        fields: BTreeMap<String, String>,
        check: &dyn Fn(Target<'_>) -> Result<(), String>,
    ) -> FieldMap {
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
            let pair = Target {
                vendor,
                field: &field,
                target: &target,
            };
            if let Err(problem) = check(pair) {
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

    fn vendors(
        &mut self,
        sections: file::VendorsSection,
        rules: &[&dyn SectionRules],
    ) -> VendorMappings {
        let mut mappings = VendorMappings::default();
        for (name, section) in sections {
            let Some(rule) = rules.iter().find(|r| r.vendor().as_str() == name) else {
                let known: Vec<&str> = rules.iter().map(|r| r.vendor().as_str()).collect();
                self.err(
                    format!("vendors.{name}"),
                    format!("unknown vendor (known: {})", known.join(", ")),
                );
                continue;
            };
            let (line, col) = line_col(self.text, section.span().start);
            let mut cx = SectionContext {
                compiler: self,
                vendor: rule.vendor(),
                line_col: (line, col),
            };
            if let Some(m) = rule.compile(section.into_inner(), &mut cx) {
                mappings.insert(rule.vendor(), m);
            }
        }
        mappings
    }
}
