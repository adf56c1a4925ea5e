//! Routine definitions as documents: inserting a routine with its description, publication and
//! definition JSON; replacing an existing routine's definition and triggers in one
//! transaction; publishing and deleting drafts with conditional statements (a Save and a Cancel
//! tapped at once: exactly one wins).
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

use super::{
    entity::{routine, routine_run, routine_trigger},
    NewRoutine, NewTrigger, Publication, Store, StoreResult,
};

/// The document fields of a routine (issue 9): written on insert and on update.
#[derive(Debug, Clone)]
pub struct DefinitionFields {
    /// Searchable text.
    pub description: String,
    pub publication: Publication,
    /// JSON of `routines::steps::Definition`; `None` keeps a single-prompt routine.
    pub definition: Option<String>,
    pub concurrent: bool,
    /// A recorded routine's source turn (issue 10); written on insert only, never exported.
    pub source_turn_id: Option<i64>,
}

/// What an update replaces (besides [`DefinitionFields`]).
#[derive(Debug, Clone)]
pub struct RoutineEdit {
    pub prompt: String,
    pub quiet: bool,
    pub api_args: bool,
    /// `Some`: the new token hash (an api trigger was added); `None`: keep the stored one.
    pub api_token_hash: Option<String>,
}

async fn insert_triggers(
    txn: &sea_orm::DatabaseTransaction,
    routine_id: i64,
    triggers: Vec<NewTrigger>,
) -> StoreResult<()> {
    for (i, t) in triggers.into_iter().enumerate() {
        routine_trigger::Entity::insert(routine_trigger::ActiveModel {
            routine_id: Set(routine_id),
            position: Set(i as i32 + 1),
            kind: Set(t.kind),
            spec: Set(t.spec),
            zone: Set(t.zone),
            next_fire_at: Set(t.next_fire_at),
            last_fire_at: Set(None),
            condition_met: Set(false),
            ..Default::default()
        })
        .exec(txn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Insert a routine with its document fields and triggers in one transaction. Returns
    /// `Ok(None)` when the name is already used in the chat (nothing is written).
    pub async fn insert_routine_doc(
        &self,
        r: NewRoutine,
        d: DefinitionFields,
        triggers: Vec<NewTrigger>,
    ) -> StoreResult<Option<i64>> {
        let txn = self.conn().begin().await?;
        let ins = routine::Entity::insert(routine::ActiveModel {
            chat_id: Set(r.chat_id),
            name: Set(r.name),
            owner_id: Set(r.owner_id),
            prompt: Set(r.prompt),
            zone: Set(r.zone),
            quiet: Set(r.quiet),
            paused: Set(false),
            api_args: Set(r.api_args),
            api_token_hash: Set(r.api_token_hash),
            max_ticks: Set(r.max_ticks),
            max_runs_per_day: Set(r.max_runs_per_day),
            state: Set("{}".into()),
            tick_count: Set(0),
            runs_today: Set(0),
            runs_day: Set(String::new()),
            status: Set(super::RoutineStatus::Active),
            created_at: Set(r.created_at),
            description: Set(d.description),
            publication: Set(d.publication),
            definition: Set(d.definition),
            concurrent: Set(d.concurrent),
            source_turn_id: Set(d.source_turn_id),
            ..Default::default()
        })
        .exec(&txn)
        .await;
        let id = match ins {
            Ok(x) => x.last_insert_id,
            Err(e) if super::routines::is_unique_violation(&e) => {
                txn.rollback().await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        insert_triggers(&txn, id, triggers).await?;
        txn.commit().await?;
        Ok(Some(id))
    }

    /// Replace routine `id`'s document fields, prompt, flags and triggers in one transaction
    /// (old triggers deleted, the new ones inserted in order). Runs already started keep their
    /// snapshot. Returns false when the routine does not exist.
    pub async fn update_routine_doc(
        &self,
        id: i64,
        e: RoutineEdit,
        d: DefinitionFields,
        triggers: Vec<NewTrigger>,
    ) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let mut q = routine::Entity::update_many()
            .col_expr(routine::Column::Prompt, Expr::value(e.prompt))
            .col_expr(routine::Column::Quiet, Expr::value(e.quiet))
            .col_expr(routine::Column::ApiArgs, Expr::value(e.api_args))
            .col_expr(routine::Column::Description, Expr::value(d.description))
            .col_expr(routine::Column::Publication, Expr::value(d.publication))
            .col_expr(routine::Column::Definition, Expr::value(d.definition))
            .col_expr(routine::Column::Concurrent, Expr::value(d.concurrent));
        if let Some(h) = e.api_token_hash {
            q = q.col_expr(routine::Column::ApiTokenHash, Expr::value(h));
        }
        let r = q.filter(routine::Column::Id.eq(id)).exec(&txn).await?;
        if r.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        routine_trigger::Entity::delete_many()
            .filter(routine_trigger::Column::RoutineId.eq(id))
            .exec(&txn)
            .await?;
        insert_triggers(&txn, id, triggers).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Publish a draft: `draft → published` only if it is still a draft. True when this caller
    /// published it.
    pub async fn publish_draft(&self, id: i64) -> StoreResult<bool> {
        let r = routine::Entity::update_many()
            .col_expr(
                routine::Column::Publication,
                Expr::value(Publication::Published),
            )
            .filter(routine::Column::Id.eq(id))
            .filter(routine::Column::Publication.eq(Publication::Draft))
            .exec(self.conn())
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Delete routine `id` with its triggers and runs only if it is still a draft. True when
    /// this caller deleted it.
    pub async fn delete_draft(&self, id: i64) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        // children first (foreign keys); rolled back unless the routine is still a draft
        routine_trigger::Entity::delete_many()
            .filter(routine_trigger::Column::RoutineId.eq(id))
            .exec(&txn)
            .await?;
        routine_run::Entity::delete_many()
            .filter(routine_run::Column::RoutineId.eq(id))
            .exec(&txn)
            .await?;
        let r = routine::Entity::delete_many()
            .filter(routine::Column::Id.eq(id))
            .filter(routine::Column::Publication.eq(Publication::Draft))
            .exec(&txn)
            .await?;
        if r.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        txn.commit().await?;
        Ok(true)
    }
}
