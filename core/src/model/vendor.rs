//! Which vendor: the identity every layer shares (mappings name vendors, plans and
//! deliveries are per vendor), and the one list of vendors every layer registers from.

/// The one list of vendors: **adding a vendor is one line here** plus its folders
/// (`core/src/vendors/<name>/`, `shared/src/vendors/<name>/`, the sandbox mock).
///
/// Calls `$callback! { /// doc\n Variant(module), ... }`. Each layer has one callback that
/// expects the vendor's type at a fixed place — `relay_core::vendors::<module>::<Variant>`
/// implementing [`crate::vendors::VendorModel`] (mapping section, planning), and in
/// `relay-shared` the same type implementing its `VendorAdapter` (config, limits, client)
/// — so a vendor left out of a layer is a compile error naming what is missing.
#[macro_export]
macro_rules! for_each_vendor {
    ($callback:ident) => {
        $callback! {
            /// Ocamba Hood: profiles and custom profile properties.
            Hood(hood),
            /// Channel.io Open API v5: users.
            Channelio(channelio),
            /// Omnivibe: the agent profile of the token's owner.
            Omnivibe(omnivibe),
            /// Chatwoot contacts on the Omnivibe host.
            Chatwoot(chatwoot),
        }
    };
}

macro_rules! declare_vendor {
    ($($(#[$doc:meta])* $variant:ident($module:ident),)+) => {
        /// The vendors profile-relay syncs into. The string form (the vendor's module name:
        /// `hood`, `channelio`, …) is used in config, queue messages and store keys, so it
        /// never changes.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(rename_all = "lowercase")]
        pub enum Vendor {
            $($(#[$doc])* $variant,)+
        }

        impl Vendor {
            /// How many vendors there are.
            pub const COUNT: usize = [$(stringify!($module)),+].len();

            /// Every vendor, in a fixed order.
            pub const ALL: [Vendor; Vendor::COUNT] = [$(Vendor::$variant),+];

            /// The stable lowercase name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Vendor::$variant => stringify!($module),)+
                }
            }
        }
    };
}

for_each_vendor!(declare_vendor);

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Vendor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Vendor::ALL.iter().map(|v| v.as_str()).collect();
                format!("unknown vendor `{s}` (known: {})", known.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Vendor;

    #[test]
    fn the_string_form_is_the_serde_form_and_parses_back() {
        for v in Vendor::ALL {
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::String(v.as_str().into())
            );
            assert_eq!(v.as_str().parse::<Vendor>(), Ok(v));
        }
        assert_eq!(
            "hood,channelio,omnivibe,chatwoot",
            Vendor::ALL.map(Vendor::as_str).join(",")
        );
        assert!(
            "zendesk"
                .parse::<Vendor>()
                .unwrap_err()
                .contains("known: hood")
        );
    }
}
