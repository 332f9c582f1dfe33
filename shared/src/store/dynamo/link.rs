//! Links on DynamoDB: a consistent GetItem, and a PutItem conditional on the stored version
//! not being newer (`ALL_OLD` tells a stale writer what is stored).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::idempotency::conditional_failure;
use super::item::{self, n};
use super::{DynamoStore, backend};
use crate::store::{Link, LinkKey, LinkPut, LinkStore, StoreError};

#[async_trait]
impl LinkStore for DynamoStore {
    async fn get_link(&self, key: &LinkKey) -> Result<Option<Link>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key(key.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend("GetItem"))?;
        out.item().map(item::link).transpose()
    }

    async fn put_link(&self, key: &LinkKey, link: &Link) -> Result<LinkPut, StoreError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::link_item(key.as_str(), link)))
            .condition_expression("attribute_not_exists(#pk) OR #version <= :version")
            .expression_attribute_names("#pk", item::PK)
            .expression_attribute_names("#version", item::VERSION)
            .expression_attribute_values(":version", n(link.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(LinkPut::Applied),
            Err(err) => match conditional_failure(&err) {
                Some(Some(old)) => Ok(LinkPut::Stale {
                    current: item::link(old)?,
                }),
                Some(None) => Err(StoreError::Malformed {
                    pk: key.as_str().to_owned(),
                    reason: "condition failed without an item".into(),
                }),
                None => Err(backend("PutItem")(err)),
            },
        }
    }
}
