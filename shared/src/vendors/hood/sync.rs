//! Applying a [`HoodPlan`]: Hood has no upsert, so the profile id is resolved (stored link,
//! else lookup by e-mail then phone, else create), and custom properties are defined before
//! the first write that may carry them.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::client::{HoodClient, ProfileFilter};
use super::lookup::{Field, Role, WINDOW};
use super::wire::{CreateProfileProperty, PatchProfile, Profile, ProfileProperty};
use crate::plan::{HoodLookup, HoodPlan, HoodProfileOp};
use crate::vendors::Vendor;
use crate::vendors::error::{ErrorClass, VendorError};
use crate::vendors::rate_limit::RateLimitInfo;
use crate::vendors::sync::{Run, SyncError, SyncOutcome, VendorSync};

#[async_trait]
impl VendorSync for HoodClient {
    type Plan = HoodPlan;

    fn vendor(&self) -> Vendor {
        Vendor::Hood
    }

    /// The outcome's `vendor_id` is the Hood profile id.
    async fn sync(&self, plan: &HoodPlan) -> Result<SyncOutcome, SyncError> {
        let mut run = Run::new(Vendor::Hood, self.gate.as_ref());
        let result = self.apply(&mut run, plan).await;
        let outcome = run.finish(result);
        match &outcome {
            Ok(o) => tracing::info!(
                vendor = "hood",
                calls = o.calls,
                profile_id = o.vendor_id.as_deref(),
                "hood sync done"
            ),
            Err(e) => {
                tracing::warn!(vendor = "hood", calls = e.calls, class = ?e.error.class(), error = %e.error, "hood sync failed")
            }
        }
        outcome
    }
}

impl HoodClient {
    async fn apply(&self, run: &mut Run<'_>, plan: &HoodPlan) -> Result<(), VendorError> {
        match &plan.profile {
            HoodProfileOp::Skip(reason) => {
                tracing::debug!(vendor = "hood", reason = reason.code(), "nothing to send");
                Ok(())
            }
            HoodProfileOp::Patch { profile_id, body } => {
                run.vendor_id = Some(profile_id.clone());
                if body.is_empty() {
                    tracing::debug!(vendor = "hood", "empty patch skipped");
                    return Ok(());
                }
                self.ensure_properties(run, &plan.properties).await?;
                self.patch(run, profile_id, body).await
            }
            HoodProfileOp::Resolve {
                lookup,
                patch,
                create,
                after_create,
            } => {
                if let Some(id) = self.find(run, lookup).await? {
                    tracing::debug!(vendor = "hood", profile_id = %id, "profile found by lookup");
                    run.vendor_id = Some(id.clone());
                    if patch.is_empty() {
                        return Ok(());
                    }
                    self.ensure_properties(run, &plan.properties).await?;
                    return self.patch(run, &id, patch).await;
                }
                self.ensure_properties(run, &plan.properties).await?;
                // The create and, when there is one, the PATCH after it: one reservation.
                run.expect(1 + u32::from(!after_create.is_empty()));
                let created = run.step(self.create_profile(create)).await?;
                let id = match created {
                    Some(Profile { id, .. }) => id,
                    // Older docs: 201 without a body. The profile exists now; find it.
                    None => self.find(run, lookup).await?.ok_or_else(|| {
                        VendorError::UnexpectedResponse {
                            vendor: Vendor::Hood,
                            op: "hood.create_profile",
                            status: 201,
                            detail: "no profile id in the answer and none found by lookup".into(),
                            rate_limit: RateLimitInfo::default(),
                        }
                    })?,
                };
                tracing::debug!(vendor = "hood", profile_id = %id, "profile created");
                run.vendor_id = Some(id.clone());
                if after_create.is_empty() {
                    return Ok(());
                }
                self.patch(run, &id, after_create).await
            }
        }
    }

    async fn patch(
        &self,
        run: &mut Run<'_>,
        id: &str,
        body: &PatchProfile,
    ) -> Result<(), VendorError> {
        run.step(self.patch_profile(id, body)).await
    }

    /// Looks up by e-mail, then (when the e-mail found nothing) by phone; the first
    /// profile that matches wins. Concurrent deliveries share each list call
    /// ([`super::lookup`]).
    async fn find(
        &self,
        run: &mut Run<'_>,
        lookup: &HoodLookup,
    ) -> Result<Option<String>, VendorError> {
        if let Some(email) = lookup.email.as_deref() {
            let (found, shared) = self.lookup(run, Field::Email, email).await?;
            if let Some(id) = pick(
                &found,
                shared,
                |p| p.email.as_deref(),
                |v| v.eq_ignore_ascii_case(email),
            ) {
                return Ok(Some(id));
            }
        }
        if let Some(phone) = lookup.mobile_phone_number.as_deref() {
            let (found, shared) = self.lookup(run, Field::Phone, phone).await?;
            if let Some(id) = pick(
                &found,
                shared,
                |p| p.mobile_phone_number.as_deref(),
                |v| v == phone,
            ) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Defines the custom properties not yet known to exist. The existing ones are listed
    /// once per client lifetime; the lock also keeps two syncs in this process from
    /// creating the same property. A refusal of a create (another instance was faster) is
    /// checked by listing again.
    async fn ensure_properties(
        &self,
        run: &mut Run<'_>,
        wanted: &[CreateProfileProperty],
    ) -> Result<(), VendorError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let mut cache = self.properties.lock().await;
        if cache.is_none() {
            let listed = run.step(self.list_profile_properties()).await?;
            *cache = Some(labels(&listed));
        }
        let known = cache.get_or_insert_with(HashSet::new);
        for property in wanted {
            if known.contains(&property.label) {
                continue;
            }
            match run.step(self.create_profile_property(property)).await {
                Ok(_) => {
                    tracing::info!(vendor = "hood", label = %property.label, "custom property created");
                    known.insert(property.label.clone());
                }
                Err(e)
                    if e.class() == ErrorClass::Permanent
                        && matches!(e.status(), Some(400 | 409 | 422)) =>
                {
                    let listed = run.step(self.list_profile_properties()).await?;
                    *known = labels(&listed);
                    if !known.contains(&property.label) {
                        return Err(e);
                    }
                    tracing::debug!(vendor = "hood", label = %property.label, "custom property already existed");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn labels(list: &[ProfileProperty]) -> HashSet<String> {
    list.iter().map(|p| p.label.clone()).collect()
}

/// The first profile whose field matches the lookup value. For a lookup of this value
/// alone a profile without the field is trusted (the server filtered); in a shared answer
/// only a profile whose field is the value counts. One whose field differs is ignored, so a
/// server that ignored the filter cannot make us patch a stranger's profile.
fn pick(
    found: &[Profile],
    shared: bool,
    field: impl Fn(&Profile) -> Option<&str>,
    matches: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut hits = found
        .iter()
        .filter(|p| field(p).map_or(!shared, &matches));
    let first = hits.next()?;
    let more = hits.count();
    if more > 0 {
        tracing::warn!(
            vendor = "hood",
            extra = more,
            "several profiles match; using the first"
        );
    }
    Some(first.id.clone())
}

/// Coalesced lookups ([`super::lookup`]).
impl HoodClient {
    /// The profiles whose `field` is one of the values asked for together with `value`
    /// (at least those matching `value`), in one list call shared by concurrent lookups.
    pub(super) async fn lookup(
        &self,
        run: &mut Run<'_>,
        field: Field,
        value: &str,
    ) -> Result<(Arc<Vec<Profile>>, bool), VendorError> {
        let value_fits = !value.contains(',');
        if !value_fits {
            // A value with a comma cannot be one of an `in` list: look it up alone.
            return Ok((Arc::new(self.list_one(run, field, value).await?), false));
        }
        match self.lookups.join(field, value) {
            Role::Leader => {
                tokio::time::sleep(WINDOW).await;
                let Some(batch) = self.lookups.take(field) else {
                    // Cannot happen (only the leader takes); look up alone.
                    return Ok((Arc::new(self.list_one(run, field, value).await?), false));
                };
                let shared = batch.values.len() > 1;
                let result = if shared {
                    self.list_many(run, field, &batch.values).await
                } else {
                    self.list_one(run, field, value).await
                }
                .map(Arc::new);
                // Followers may have gone (a deadline); nobody listening is fine.
                let _ = batch.answer.send(Some(result.clone()));
                result.map(|found| (found, shared))
            }
            Role::Follower(mut rx) => {
                let answered = rx.wait_for(Option::is_some).await.ok().and_then(|a| a.clone());
                match answered {
                    Some(result) => result.map(|found| (found, true)),
                    // The leader was cancelled before answering.
                    None => Ok((Arc::new(self.list_one(run, field, value).await?), false)),
                }
            }
        }
    }

    async fn list_one(
        &self,
        run: &mut Run<'_>,
        field: Field,
        value: &str,
    ) -> Result<Vec<Profile>, VendorError> {
        let filter = match field {
            Field::Email => ProfileFilter::Email(value),
            Field::Phone => ProfileFilter::MobilePhoneNumber(value),
        };
        run.step(self.list_profiles(filter)).await
    }

    async fn list_many(
        &self,
        run: &mut Run<'_>,
        field: Field,
        values: &[String],
    ) -> Result<Vec<Profile>, VendorError> {
        let filter = match field {
            Field::Email => ProfileFilter::EmailIn(values),
            Field::Phone => ProfileFilter::MobilePhoneNumberIn(values),
        };
        run.step(self.list_profiles(filter)).await
    }
}
