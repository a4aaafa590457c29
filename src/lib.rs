//! Attest: a GraphQL server on which law-enforcement teams complete the self-assessments of the
//! INTERPOL–UNICRI Toolkit for Responsible AI Innovation in Law Enforcement, with an append-only,
//! hash-chained event log under every change.
//!
//! Modules in reading order:

#![forbid(unsafe_code)]

pub mod agencies;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod policy;
pub mod state;

pub use error::AppError;
