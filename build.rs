//! Embeds the web application: every file under `web/` becomes an entry of a table generated in
//! `OUT_DIR/web_assets.rs`, `(path, bytes)`, which `src/web.rs` serves.

use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = root.join("web");
    println!("cargo:rerun-if-changed=web");
    let mut files = Vec::new();
    collect(&web, &mut files);
    files.sort();
    let mut out = String::from("/// Every file under `web/`, by its path relative to it.\n");
    out.push_str("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for file in &files {
        // Cargo only notices new files in a directory it watches, so watch each directory too.
        if let Some(parent) = file.parent() {
            println!("cargo:rerun-if-changed={}", parent.display());
        }
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file.strip_prefix(&web).expect("collected under web/");
        let rel = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
        out.push_str(&format!("    ({rel:?}, include_bytes!({:?})),\n", file.display().to_string()));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_assets.rs");
    std::fs::write(dest, out).expect("write the asset table");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
