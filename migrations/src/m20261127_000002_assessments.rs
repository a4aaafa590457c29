//! Templates, assessments, the people on them, answers and comments.
//!
//! The tables hold the current state; the assessment's event stream (`assessment:<id>`) holds
//! every change. Progress and the highest residual risk are kept on the assessment row, updated in
//! the same transaction as each answer, so that a unit's dashboard is one query.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: &str = r#"
CREATE TABLE templates (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (scope, key, version)
);
CREATE TABLE assessments (
    id TEXT PRIMARY KEY,
    agency_id TEXT NOT NULL REFERENCES agencies(id),
    unit_id TEXT NOT NULL REFERENCES units(id),
    template_id TEXT NOT NULL REFERENCES templates(id),
    title TEXT NOT NULL,
    subject TEXT NOT NULL,
    due_date TEXT NULL,
    status TEXT NOT NULL,
    previous_id TEXT NULL REFERENCES assessments(id),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    approved_by TEXT NULL,
    approved_at BIGINT NULL,
    approved_seq BIGINT NULL,
    approved_hash TEXT NULL,
    return_reason TEXT NULL,
    required_total INTEGER NOT NULL,
    required_answered INTEGER NOT NULL,
    highest_residual TEXT NULL,
    highest_residual_rank INTEGER NULL
);
CREATE INDEX assessments_agency ON assessments(agency_id);
CREATE INDEX assessments_unit ON assessments(unit_id);
CREATE TABLE assessment_members (
    assessment_id TEXT NOT NULL REFERENCES assessments(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    PRIMARY KEY (assessment_id, user_id)
);
CREATE INDEX assessment_members_user ON assessment_members(user_id);
CREATE TABLE section_assignments (
    assessment_id TEXT NOT NULL REFERENCES assessments(id),
    section_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    PRIMARY KEY (assessment_id, section_id, user_id)
);
CREATE INDEX section_assignments_user ON section_assignments(user_id);
CREATE TABLE answers (
    assessment_id TEXT NOT NULL REFERENCES assessments(id),
    question_id TEXT NOT NULL,
    value TEXT NULL,
    note TEXT NULL,
    revision BIGINT NOT NULL,
    carried_over BOOLEAN NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (assessment_id, question_id)
);
CREATE TABLE comments (
    id TEXT PRIMARY KEY,
    assessment_id TEXT NOT NULL REFERENCES assessments(id),
    question_id TEXT NOT NULL,
    parent_id TEXT NULL REFERENCES comments(id),
    author_id TEXT NOT NULL,
    author_name TEXT NOT NULL,
    body TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at BIGINT NULL,
    resolved BOOLEAN NOT NULL,
    resolved_by TEXT NULL,
    resolved_at BIGINT NULL
);
CREATE INDEX comments_assessment ON comments(assessment_id);
CREATE TABLE comment_versions (
    comment_id TEXT NOT NULL REFERENCES comments(id),
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (comment_id, version)
);
"#;

const IMMUTABLE_SQLITE: &str = r#"
CREATE TRIGGER templates_refuse_update BEFORE UPDATE ON templates
BEGIN SELECT RAISE(ABORT, 'published templates are immutable'); END;
"#;

const IMMUTABLE_POSTGRES: &str = r#"
CREATE FUNCTION templates_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'published templates are immutable';
END;
$$;
CREATE TRIGGER templates_refuse_update BEFORE UPDATE ON templates
FOR EACH ROW EXECUTE FUNCTION templates_refuse_update();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(TABLES).await?;
        let immutable = match db.get_database_backend() {
            DbBackend::Postgres => IMMUTABLE_POSTGRES,
            _ => IMMUTABLE_SQLITE,
        };
        db.execute_unprepared(immutable).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration("the assessments migration cannot be reverted: its history is permanent".into()))
    }
}
