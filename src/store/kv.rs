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

impl Store {
    /// Claim `key` at `now` unless it was claimed at or after `since`: true for exactly one
    /// caller per claim, even with two processes on one database (an insert that loses a race
    /// does nothing; the refresh is a conditional update). The value is the claim time, RFC 3339
    /// UTC with microseconds (fixed width, so text order is time order).
    pub async fn kv_claim(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
        since: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool> {
        use sea_orm::{ColumnTrait, QueryFilter};
        let stamp = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        let inserted = kv::Entity::insert(kv::ActiveModel {
            key: Set(key.to_string()),
            value: Set(stamp(now)),
        })
        .on_conflict(OnConflict::column(kv::Column::Key).do_nothing().to_owned())
        .exec(self.conn())
        .await;
        match inserted {
            Ok(_) => return Ok(true),
            Err(sea_orm::DbErr::RecordNotInserted) => {}
            Err(e) => return Err(e.into()),
        }
        let r = kv::Entity::update_many()
            .col_expr(
                kv::Column::Value,
                sea_orm::sea_query::Expr::value(stamp(now)),
            )
            .filter(kv::Column::Key.eq(key))
            .filter(kv::Column::Value.lt(stamp(since)))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }
}

impl Store {
    /// Every (key, value) whose key starts with `prefix`, in key order (e.g. each chat's
    /// command-menu hash, `telegram.menu.<bot id>.<chat id>`).
    pub async fn kv_with_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, String)>> {
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
        Ok(kv::Entity::find()
            .filter(kv::Column::Key.starts_with(prefix))
            .order_by_asc(kv::Column::Key)
            .all(self.conn())
            .await?
            .into_iter()
            .filter(|m| m.key.starts_with(prefix))
            .map(|m| (m.key, m.value))
            .collect())
    }
}
