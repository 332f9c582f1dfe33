//! Planning for Chatwoot contacts on the Omnivibe host.

use crate::vendors::chatwoot::wire::ContactBody;

use crate::plan::SkipReason;

/// What to send Chatwoot for one contact change.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatwootPlan {
    /// Known contact id: `PUT /api/v1/accounts/{account_id}/contacts/{id}`.
    Update { contact_id: u64, body: ContactBody },
    /// Unknown id: search by the first of `queries` (e-mail, phone, identifier — those
    /// known); found → PUT `body`; not found → POST `body`. E-mail, phone and identifier
    /// are each unique, so a 422 on create means a contact holds one of them: it is found
    /// by searching every query, then updated.
    Resolve {
        queries: Vec<String>,
        body: ContactBody,
    },
    /// No request.
    Skip(SkipReason),
}

use serde_json::Map;

use crate::mapping::FieldMap;
use crate::model::{ChangeKind, ContactChange};
use crate::plan::{
    PlanError, Planned, PlannedRequest, VendorState, as_text, body_json, changed,
    encode_query_value,
};

/// Plans the Chatwoot contact write for `change`.
pub fn plan_chatwoot(
    change: &ContactChange,
    state: &VendorState,
    mapping: &FieldMap,
) -> Result<Planned<ChatwootPlan>, PlanError> {
    if change.event.kind == ChangeKind::Deleted {
        return Ok(Planned::skip(ChatwootPlan::Skip(
            SkipReason::DeletionNotSupported,
        )));
    }
    let changed = changed(mapping.project_change(change), state);
    let mut body = ContactBody::default();
    for (target, value) in &changed.values {
        let text = Some(as_text(value));
        match *target {
            "name" => body.name = text,
            "email" => body.email = text,
            "phone_number" => body.phone_number = text,
            "identifier" => body.identifier = text,
            other => {
                if let Some(key) = other.strip_prefix("custom_attributes.") {
                    body.custom_attributes
                        .get_or_insert_with(Map::new)
                        .insert(key.to_string(), value.clone());
                } else if let Some(key) = other.strip_prefix("additional_attributes.") {
                    body.additional_attributes
                        .get_or_insert_with(Map::new)
                        .insert(key.to_string(), value.clone());
                }
            }
        }
    }
    if body.is_empty() {
        return Ok(Planned::nothing_to_send(&changed, ChatwootPlan::Skip));
    }
    let known_id = state
        .vendor_id
        .as_deref()
        .and_then(|id| id.parse::<u64>().ok());
    let plan = match known_id {
        Some(contact_id) => ChatwootPlan::Update { contact_id, body },
        None => {
            let contact = &change.contact;
            let queries: Vec<String> = [
                contact.email.as_ref().map(|e| e.as_str().to_string()),
                contact.phone.as_ref().map(|p| p.as_str().to_string()),
                body.identifier.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            if queries.is_empty() {
                return Err(PlanError::ChatwootNeedsIdentity);
            }
            ChatwootPlan::Resolve { queries, body }
        }
    };
    Ok(Planned::sending(plan, &changed))
}

impl ChatwootPlan {
    /// The requests in order (for an unknown contact: the search, then the create when
    /// nothing was found), for `account_id`.
    pub fn requests(&self, account_id: u64) -> Vec<PlannedRequest> {
        let base = format!("/api/v1/accounts/{account_id}/contacts");
        match self {
            ChatwootPlan::Update { contact_id, body } => vec![PlannedRequest {
                method: http::Method::PUT,
                path: format!("{base}/{contact_id}"),
                body: body_json(body),
            }],
            ChatwootPlan::Resolve { queries, body } => vec![
                PlannedRequest {
                    method: http::Method::GET,
                    path: format!(
                        "{base}/search?q={}",
                        encode_query_value(queries.first().map_or("", String::as_str))
                    ),
                    body: None,
                },
                PlannedRequest {
                    method: http::Method::POST,
                    path: base,
                    body: body_json(body),
                },
            ],
            ChatwootPlan::Skip(_) => Vec::new(),
        }
    }
}
