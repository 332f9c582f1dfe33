//! Which vendor: the identity every layer shares (mappings name vendors, plans and
//! deliveries are per vendor).

/// The vendors profile-relay syncs into. The string form is used in config, queue messages
/// and store keys, so it never changes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// Ocamba Hood: profiles and custom profile properties.
    Hood,
    /// Channel.io Open API v5: users.
    Channelio,
    /// Omnivibe: the agent profile of the token's owner.
    Omnivibe,
    /// Chatwoot contacts on the Omnivibe host.
    Chatwoot,
}

impl Vendor {
    /// Every vendor, in a fixed order.
    pub const ALL: [Vendor; 4] = [
        Vendor::Hood,
        Vendor::Channelio,
        Vendor::Omnivibe,
        Vendor::Chatwoot,
    ];

    /// The stable lowercase name (`hood`, `channelio`, `omnivibe`, `chatwoot`).
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Hood => "hood",
            Vendor::Channelio => "channelio",
            Vendor::Omnivibe => "omnivibe",
            Vendor::Chatwoot => "chatwoot",
        }
    }
}

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
                format!("unknown vendor `{s}` (known: hood, channelio, omnivibe, chatwoot)")
            })
    }
}
