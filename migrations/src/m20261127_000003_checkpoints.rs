//! Signed checkpoints of the event log. Each row keeps the whole `SignedCheckpoint` document (the
//! checkpoint and every stream head it commits to) as the server wrote it, and is as permanent as
//! the events themselves: triggers refuse to change or delete one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CHECKPOINTS_SQLITE: &str = r#"
CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    position BIGINT NOT NULL,
    at TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TRIGGER checkpoints_refuse_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_refuse_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
"#;

const CHECKPOINTS_POSTGRES: &str = r#"
CREATE TABLE checkpoints (
    id BIGSERIAL PRIMARY KEY,
    position BIGINT NOT NULL,
    at TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE FUNCTION checkpoints_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'checkpoints are append-only';
END;
$$;
CREATE TRIGGER checkpoints_refuse_update BEFORE UPDATE OR DELETE ON checkpoints
FOR EACH ROW EXECUTE FUNCTION checkpoints_refuse_change();
CREATE TRIGGER checkpoints_refuse_truncate BEFORE TRUNCATE ON checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION checkpoints_refuse_change();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let sql = match db.get_database_backend() {
            DbBackend::Postgres => CHECKPOINTS_POSTGRES,
            _ => CHECKPOINTS_SQLITE,
        };
        db.execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Checkpoints vouch for the log's past; like the log, they are never dropped.
        Err(DbErr::Migration("the checkpoints migration cannot be reverted: checkpoints are permanent".into()))
    }
}
