//! The full reply of a turn, `turns.reply_text` (nullable text): the answer a member sees is capped
//! (`llm.max_answer_chars`, issue 8 item 11) and the turn record keeps the whole of it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Turns {
    Table,
    ReplyText,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Turns::Table)
                .add_column(text_null(Turns::ReplyText))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Turns::Table)
                .drop_column(Turns::ReplyText)
                .to_owned(),
        )
        .await
    }
}
