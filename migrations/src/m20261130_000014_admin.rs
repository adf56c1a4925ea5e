//! Web admin sign-in (issue 11): one-time links and sessions.
//!
//! `admin_links`: a link `/admin` sent in a DM; only the SHA-256 (hex) of its token is kept;
//! usable once (`used_at`) and until `expires_at` (10 minutes after creation).
//! `admin_sessions`: a browser session opened by a link; only the SHA-256 (hex) of its cookie
//! is kept, with the CSRF token every form carries; `revoked` by logout; 7-day `expires_at`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AdminLinks {
    Table,
    TokenHash,
    UserId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum AdminSessions {
    Table,
    IdHash,
    UserId,
    Csrf,
    CreatedAt,
    ExpiresAt,
    Revoked,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AdminLinks::Table)
                .if_not_exists()
                .col(string_len(AdminLinks::TokenHash, 64).primary_key())
                .col(big_integer(AdminLinks::UserId))
                .col(timestamp_with_time_zone(AdminLinks::CreatedAt))
                .col(timestamp_with_time_zone(AdminLinks::ExpiresAt))
                .col(timestamp_with_time_zone_null(AdminLinks::UsedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AdminSessions::Table)
                .if_not_exists()
                .col(string_len(AdminSessions::IdHash, 64).primary_key())
                .col(big_integer(AdminSessions::UserId))
                .col(string_len(AdminSessions::Csrf, 64))
                .col(timestamp_with_time_zone(AdminSessions::CreatedAt))
                .col(timestamp_with_time_zone(AdminSessions::ExpiresAt))
                .col(boolean(AdminSessions::Revoked).default(false))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AdminSessions::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(AdminLinks::Table).to_owned())
            .await?;
        Ok(())
    }
}
