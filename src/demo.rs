//! Sample data for trying Attest out: placeholder until filled.
