//! Embeds every `contracts/*.toml` into the crate: contracts are config as
//! code, built once and deployed everywhere. Adding a dataset is adding a file.
use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
    println!("cargo:rerun-if-changed={}", dir.display());
    // A missing folder is a build error, never an empty registry (which
    // would make every file at run time "no contract for dataset ...").
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) => panic!("cannot read the contracts folder {}: {e}", dir.display()),
    };
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    let mut out = String::from("/// (file name, contents) of every embedded contract.\npub static CONTRACTS: &[(&str, &str)] = &[\n");
    for p in &files {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            p.display().to_string()
        );
    }
    out.push_str("];\n");
    // Reference tables (small CSVs joined by the curate stage).
    let refdir = dir.join("reference");
    println!("cargo:rerun-if-changed={}", refdir.display());
    let mut refs: Vec<_> = std::fs::read_dir(&refdir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    refs.retain(|p| p.extension().is_some_and(|e| e == "csv"));
    refs.sort();
    out.push_str("/// (table name, CSV contents) of every embedded reference table.\npub static REFERENCES: &[(&str, &str)] = &[\n");
    for p in &refs {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            p.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("contracts.rs");
    std::fs::write(dest, out).unwrap_or_else(|e| panic!("cannot write contracts.rs: {e}"));
}
