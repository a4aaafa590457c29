//! The one integration-test binary. Every test starts the real server on 127.0.0.1:0 with a
//! fresh database: SQLite in a temporary file, or PostgreSQL when `ATTEST_TEST_DATABASE_URL`
//! is set.

mod helpers;

mod accounts;
mod assessments;
mod audit;
mod authorization;
mod browser;
mod cli;
mod durability;
mod errors;
mod event_log;
mod live;
mod presence;
mod replay;
mod schema;
mod templates;
