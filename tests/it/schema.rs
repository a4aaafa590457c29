//! The committed `schema.graphql` is the server's schema. `ATTEST_UPDATE_SCHEMA=1 cargo test schema`
//! rewrites it.

#[test]
fn schema_graphql_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = attest::graphql::sdl();
    if std::env::var_os("ATTEST_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).expect("write schema.graphql");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == sdl, "schema.graphql is stale: run `ATTEST_UPDATE_SCHEMA=1 cargo test schema` and commit it");
}
