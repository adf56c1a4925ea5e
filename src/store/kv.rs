//! Small key-value settings: Telegram update offsets (per bot id), the command-list hash.
use sea_orm::{sea_query::OnConflict, EntityTrait, Set};

use super::{entity::kv, Store, StoreResult};

impl Store {
    /// The value stored under `key`.
    pub async fn kv_get(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(kv::Entity::find_by_id(key.to_string())
            .one(self.conn())
            .await?
            .map(|m| m.value))
    }

    /// Store `value` under `key`, replacing any previous value.
    pub async fn kv_set(&self, key: &str, value: &str) -> StoreResult<()> {
        kv::Entity::insert(kv::ActiveModel {
            key: Set(key.to_string()),
            value: Set(value.to_string()),
        })
        .on_conflict(
            OnConflict::column(kv::Column::Key)
                .update_column(kv::Column::Value)
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }
}
