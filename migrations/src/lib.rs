//! Database migrations for Attest: one file per migration, shared by SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_foundation;
mod m20261127_000002_assessments;
mod m20261127_000003_checkpoints;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_foundation::Migration),
            Box::new(m20261127_000002_assessments::Migration),
            Box::new(m20261127_000003_checkpoints::Migration),
        ]
    }
}
