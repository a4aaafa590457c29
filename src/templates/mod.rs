//! Questionnaires as data: versioned templates, their validation, and the two built-in
//! templates installed on first start.

mod model;
mod parse;

pub use model::*;
pub use parse::{TemplateErrors, parse};

/// The built-in templates, as shipped in the binary.
pub const BUILTIN: [(&str, &str); 2] = [
    ("ai-readiness.v1.yaml", include_str!("builtin/ai-readiness.v1.yaml")),
    ("ai-risk.v1.yaml", include_str!("builtin/ai-risk.v1.yaml")),
];
