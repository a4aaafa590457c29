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
//! - `templates`, `assessments`: questionnaires as data, and the assessments teams fill in.
//! - `replay`: an assessment at any point of its log, its history, diffs, and the rebuild of the
//!   current-state tables from the log.
//! - `checkpoints`: signed checkpoints, Merkle proofs and bundles, independent of the database.
//! - `audit`: checkpoints taken, stored and shown; whole-log verification; bundle export.
//! - `live`: event streams, presence and unit progress for subscribers, woken by commits.
//! - `bootstrap`: starting a server and the first start on an empty database.
//! - `graphql`: the API schema and its HTTP and websocket transports.
//! - `http`: the web server around it; `web`: the web application it serves.
//! - `demo`: sample data for trying Attest out.
//! - `cli`: the command line.

#![forbid(unsafe_code)]

/// Every binary built on this crate (the server, its tools and tests) allocates with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod agencies;
pub mod assessments;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod checkpoints;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod live;
pub mod policy;
pub mod replay;
pub mod state;
pub mod templates;
pub mod web;

pub use error::AppError;
