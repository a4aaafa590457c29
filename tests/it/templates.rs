//! Template and answer-value validation, scoring.
