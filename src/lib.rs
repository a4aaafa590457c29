//! Attest: a GraphQL server on which law-enforcement teams complete the self-assessments of the
//! INTERPOL–UNICRI Toolkit for Responsible AI Innovation in Law Enforcement, with an append-only,
//! hash-chained event log under every change.
//!
//! Modules in reading order:
//!
//! - `config`, `state`, `clock`, `error`, `ids`: configuration, shared state and the vocabulary
//!   every other module uses.
//! - `db`: connections, migrations, the write transaction and every query.
//! - `events`: the append-only, hash-chained log under every write.
//! - `auth`: passwords, sessions, login throttling and the authenticated `Actor`.
//! - `policy`: the one place where authorization is decided.
//! - `agencies`: agencies, unit trees, users and roles.
//! - `live`: event streams, presence and unit progress for subscribers, woken by commits.
//! - `bootstrap`: starting a server and the first start on an empty database.
//! - `graphql`: the API schema and its HTTP and websocket transports.
//! - `http`: the web server around it.
//! - `cli`: the command line.

#![forbid(unsafe_code)]

pub mod agencies;
pub mod assessments;
pub mod auth;
pub mod bootstrap;
pub mod checkpoints;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod live;
pub mod policy;
pub mod state;
pub mod templates;

pub use error::AppError;
