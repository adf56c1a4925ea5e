//! Chats, users and members (per group, with role).
use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::OnConflict, ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};

use super::{
    entity::{chat, member, user},
    inserted, Store, StoreResult,
};

/// A member of a group joined with the user's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub chat_id: i64,
    pub user_id: i64,
    pub first_name: String,
    pub username: Option<String>,
    /// "admin" | "member"
    pub role: String,
    pub active: bool,
}

impl MemberRow {
    /// True for role "admin".
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

impl Store {
    /// Create the chat on first sight (keeping its stored zone), or refresh its title.
    /// Returns the stored row.
    pub async fn upsert_chat(
        &self,
        id: i64,
        kind: &str,
        title: &str,
        default_zone: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<chat::Model> {
        if let Some(existing) = chat::Entity::find_by_id(id).one(self.conn()).await? {
            if existing.title != title {
                let mut am: chat::ActiveModel = existing.into();
                am.title = Set(title.to_string());
                return Ok(am.update(self.conn()).await?);
            }
            return Ok(existing);
        }
        let am = chat::ActiveModel {
            id: Set(id),
            kind: Set(kind.to_string()),
            title: Set(title.to_string()),
            timezone: Set(default_zone.to_string()),
            reminders: sea_orm::ActiveValue::NotSet,
            created_at: Set(now),
        };
        let _ = inserted(
            chat::Entity::insert(am)
                .on_conflict(OnConflict::column(chat::Column::Id).do_nothing().to_owned())
                .exec(self.conn())
                .await,
        )?;
        Ok(chat::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .ok_or(sea_orm::DbErr::RecordNotFound(format!("chat {id}")))?)
    }

    /// The chat with Telegram id `id`.
    pub async fn chat(&self, id: i64) -> StoreResult<Option<chat::Model>> {
        Ok(chat::Entity::find_by_id(id).one(self.conn()).await?)
    }

    /// The chats among `ids` that exist (any order).
    pub async fn chats_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<chat::Model>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        Ok(chat::Entity::find()
            .filter(chat::Column::Id.is_in(ids.iter().copied()))
            .all(self.conn())
            .await?)
    }

    /// Set a chat's IANA zone (validated by the caller).
    pub async fn set_chat_timezone(&self, id: i64, zone: &str) -> StoreResult<()> {
        chat::Entity::update_many()
            .col_expr(
                chat::Column::Timezone,
                sea_orm::sea_query::Expr::value(zone),
            )
            .filter(chat::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Insert or refresh a user's names (a read first: names rarely change, writes cost more).
    pub async fn upsert_user(
        &self,
        id: i64,
        first_name: &str,
        username: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        if let Some(u) = user::Entity::find_by_id(id).one(self.conn()).await? {
            if u.first_name == first_name && u.username.as_deref() == username {
                return Ok(());
            }
        }
        user::Entity::insert(user::ActiveModel {
            id: Set(id),
            first_name: Set(first_name.to_string()),
            username: Set(username.map(str::to_string)),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(user::Column::Id)
                .update_columns([
                    user::Column::FirstName,
                    user::Column::Username,
                    user::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// Register `user_id` in group `chat_id` (or reactivate them). The role is "admin" when
    /// `force_admin` or when the group has no member yet; otherwise "member".
    /// Returns the member and whether they were newly registered or reactivated.
    pub async fn ensure_member(
        &self,
        chat_id: i64,
        user_id: i64,
        force_admin: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<(MemberRow, bool)> {
        let existing = member::Entity::find()
            .filter(member::Column::ChatId.eq(chat_id))
            .filter(member::Column::UserId.eq(user_id))
            .find_also_related(user::Entity)
            .one(self.conn())
            .await?;
        let fresh = match existing {
            Some((m, u)) if m.active && (!force_admin || m.role == "admin") => {
                return Ok((join(m, u), false));
            }
            Some((m, _)) => {
                let mut am: member::ActiveModel = m.into();
                am.active = Set(true);
                if force_admin {
                    am.role = Set("admin".into());
                }
                am.update(self.conn()).await?;
                true
            }
            None => {
                let count = member::Entity::find()
                    .filter(member::Column::ChatId.eq(chat_id))
                    .count(self.conn())
                    .await?;
                let role = if force_admin || count == 0 {
                    "admin"
                } else {
                    "member"
                };
                inserted(
                    member::Entity::insert(member::ActiveModel {
                        chat_id: Set(chat_id),
                        user_id: Set(user_id),
                        role: Set(role.into()),
                        active: Set(true),
                        joined_at: Set(now),
                        ..Default::default()
                    })
                    .on_conflict(
                        OnConflict::columns([member::Column::ChatId, member::Column::UserId])
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec(self.conn())
                    .await,
                )?
            }
        };
        let m = self
            .member(chat_id, user_id)
            .await?
            .ok_or(sea_orm::DbErr::RecordNotFound(format!(
                "member {chat_id}/{user_id}"
            )))?;
        Ok((m, fresh))
    }

    /// Mark a member as gone (they left or were removed). Returns true if they were active.
    pub async fn deactivate_member(&self, chat_id: i64, user_id: i64) -> StoreResult<bool> {
        let r = member::Entity::update_many()
            .col_expr(
                member::Column::Active,
                sea_orm::sea_query::Expr::value(false),
            )
            .filter(member::Column::ChatId.eq(chat_id))
            .filter(member::Column::UserId.eq(user_id))
            .filter(member::Column::Active.eq(true))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// One member of a group (active or not) with names.
    pub async fn member(&self, chat_id: i64, user_id: i64) -> StoreResult<Option<MemberRow>> {
        // one round trip: this runs for every group message (core `resolve`)
        Ok(member::Entity::find()
            .filter(member::Column::ChatId.eq(chat_id))
            .filter(member::Column::UserId.eq(user_id))
            .find_also_related(user::Entity)
            .one(self.conn())
            .await?
            .map(|(m, u)| join(m, u)))
    }

    /// Active members of a group in join order.
    pub async fn members(&self, chat_id: i64) -> StoreResult<Vec<MemberRow>> {
        let rows = member::Entity::find()
            .filter(member::Column::ChatId.eq(chat_id))
            .filter(member::Column::Active.eq(true))
            .order_by_asc(member::Column::Id)
            .find_also_related(user::Entity)
            .all(self.conn())
            .await?;
        Ok(rows.into_iter().map(|(m, u)| join(m, u)).collect())
    }

    /// Users by id (those known), in no particular order.
    pub async fn users(&self, ids: &[i64]) -> StoreResult<Vec<user::Model>> {
        if ids.is_empty() {
            return Ok(vec![]); // no statement (every turn without pending requests asked one)
        }
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids.iter().copied()))
            .all(self.conn())
            .await?)
    }

    /// The user with Telegram `@username` (without "@", case-insensitive), if hearth has seen
    /// them. When several stored users carry the name (a username changed hands), the most
    /// recently seen one wins.
    pub async fn user_by_username(&self, username: &str) -> StoreResult<Option<user::Model>> {
        let wanted = username.trim_start_matches('@').to_lowercase();
        if wanted.is_empty() {
            return Ok(None);
        }
        Ok(user::Entity::find()
            .filter(sea_orm::sea_query::ExprTrait::eq(
                sea_orm::sea_query::Func::lower(sea_orm::sea_query::Expr::col(
                    user::Column::Username,
                )),
                wanted,
            ))
            .order_by_desc(user::Column::UpdatedAt)
            .one(self.conn())
            .await?)
    }

    /// The groups a user is an active member of.
    pub async fn groups_of_user(&self, user_id: i64) -> StoreResult<Vec<chat::Model>> {
        let ids: Vec<i64> = member::Entity::find()
            .filter(member::Column::UserId.eq(user_id))
            .filter(member::Column::Active.eq(true))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|m| m.chat_id)
            .collect();
        Ok(chat::Entity::find()
            .filter(chat::Column::Id.is_in(ids))
            .filter(chat::Column::Kind.eq("group"))
            .all(self.conn())
            .await?)
    }
}

fn join(m: member::Model, u: Option<user::Model>) -> MemberRow {
    let (first_name, username) = match u {
        Some(u) => (u.first_name, u.username),
        None => (format!("user {}", m.user_id), None),
    };
    MemberRow {
        chat_id: m.chat_id,
        user_id: m.user_id,
        first_name,
        username,
        role: m.role,
        active: m.active,
    }
}
