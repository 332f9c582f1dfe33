//! Realistic sample payloads of every built-in source, as each sender documents them.
//! Tests, `relay demo` and `relay send` use them; they live in `shared/fixtures/`.

/// One sample: the source it belongs to and its JSON body.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The source name in the built-in mappings (`typeform`, `hubspot`, ...).
    pub source: &'static str,
    /// The file name under `shared/fixtures/`.
    pub file: &'static str,
    pub body: &'static str,
}

/// Every built-in sample, one per source.
pub const SAMPLES: [Sample; 8] = [
    Sample {
        source: "typeform",
        file: "typeform.json",
        body: include_str!("../fixtures/typeform.json"),
    },
    Sample {
        source: "tally",
        file: "tally.json",
        body: include_str!("../fixtures/tally.json"),
    },
    Sample {
        source: "webflow",
        file: "webflow.json",
        body: include_str!("../fixtures/webflow.json"),
    },
    Sample {
        source: "hubspot",
        file: "hubspot.json",
        body: include_str!("../fixtures/hubspot.json"),
    },
    Sample {
        source: "pipedrive",
        file: "pipedrive.json",
        body: include_str!("../fixtures/pipedrive.json"),
    },
    Sample {
        source: "standard",
        file: "standard.json",
        body: include_str!("../fixtures/standard.json"),
    },
    Sample {
        source: "app-contact",
        file: "eventbridge-contact.json",
        body: include_str!("../fixtures/eventbridge-contact.json"),
    },
    Sample {
        source: "app-staff",
        file: "eventbridge-staff.json",
        body: include_str!("../fixtures/eventbridge-staff.json"),
    },
];

/// The sample of `source`, if it has one.
pub fn sample(source: &str) -> Option<&'static Sample> {
    SAMPLES.iter().find(|s| s.source == source)
}
