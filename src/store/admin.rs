//! Web admin sign-in (issue 11): one-time links, sessions, and the counts the admin pages show.
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::Expr, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};

use super::{
    entity::{admin_link, admin_session, chat, member, workflow},
    Store, StoreResult, WorkflowStatus,
};

/// A web admin session as the pages see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    /// The signed-in Telegram user.
    pub user_id: i64,
    /// The CSRF token every form of this session must carry.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Store a sign-in link for `user_id` (`token_hash`: SHA-256 hex of the token), usable until
    /// `expires_at`.
    pub async fn create_admin_link(
        &self,
        token_hash: &str,
        user_id: i64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        admin_link::Entity::insert(admin_link::ActiveModel {
            token_hash: Set(token_hash.to_string()),
            user_id: Set(user_id),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// Use the link whose token hashes to `token_hash` at `now`: the user id for exactly one
    /// caller, and only while the link is unused and `now < expires_at` (one conditional UPDATE,
    /// so two processes cannot both use it). `None` for an unknown, used or expired link.
    pub async fn consume_admin_link(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        let r = admin_link::Entity::update_many()
            .col_expr(admin_link::Column::UsedAt, Expr::value(Some(now)))
            .filter(admin_link::Column::TokenHash.eq(token_hash))
            .filter(admin_link::Column::UsedAt.is_null())
            .filter(admin_link::Column::ExpiresAt.gt(now))
            .exec(self.conn())
            .await?;
        if r.rows_affected != 1 {
            return Ok(None);
        }
        Ok(admin_link::Entity::find_by_id(token_hash.to_string())
            .one(self.conn())
            .await?
            .map(|l| l.user_id))
    }

    /// Store a session (`id_hash`: SHA-256 hex of the cookie value) for `user_id`.
    pub async fn create_admin_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        admin_session::Entity::insert(admin_session::ActiveModel {
            id_hash: Set(id_hash.to_string()),
            user_id: Set(user_id),
            csrf: Set(csrf.to_string()),
            created_at: Set(now),
            expires_at: Set(expires_at),
            revoked: Set(false),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// The live session whose cookie hashes to `id_hash` at `now` (not revoked, not expired).
    pub async fn admin_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<AdminSession>> {
        Ok(admin_session::Entity::find_by_id(id_hash.to_string())
            .filter(admin_session::Column::Revoked.eq(false))
            .filter(admin_session::Column::ExpiresAt.gt(now))
            .one(self.conn())
            .await?
            .map(|s| AdminSession {
                user_id: s.user_id,
                csrf: s.csrf,
                expires_at: s.expires_at,
            }))
    }

    /// Revoke the session whose cookie hashes to `id_hash` (logout). True when it was live.
    pub async fn revoke_admin_session(&self, id_hash: &str) -> StoreResult<bool> {
        let r = admin_session::Entity::update_many()
            .col_expr(admin_session::Column::Revoked, Expr::value(true))
            .filter(admin_session::Column::IdHash.eq(id_hash))
            .filter(admin_session::Column::Revoked.eq(false))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// The groups where `user_id` is an active member with the admin role, by title.
    pub async fn groups_administered_by(&self, user_id: i64) -> StoreResult<Vec<chat::Model>> {
        let ids: Vec<i64> = member::Entity::find()
            .filter(member::Column::UserId.eq(user_id))
            .filter(member::Column::Active.eq(true))
            .filter(member::Column::Role.eq("admin"))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|m| m.chat_id)
            .collect();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        Ok(chat::Entity::find()
            .filter(chat::Column::Id.is_in(ids))
            .filter(chat::Column::Kind.ne("private"))
            .order_by_asc(chat::Column::Title)
            .all(self.conn())
            .await?)
    }

    /// Number of pending approval requests (workflows) in a chat.
    pub async fn count_pending_in_chat(&self, chat_id: i64) -> StoreResult<u64> {
        Ok(workflow::Entity::find()
            .filter(workflow::Column::ChatId.eq(chat_id))
            .filter(workflow::Column::Status.eq(WorkflowStatus::Pending))
            .count(self.conn())
            .await?)
    }
}
