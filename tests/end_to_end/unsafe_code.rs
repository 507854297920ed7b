//! Invariant 5: `unsafe` code lives only in `shared-inference`'s kernel module. Every Rust file
//! of the product crates (and of `tests/`, `benches/` and `examples/`) is scanned for `unsafe` blocks,
//! functions, impls and lint exemptions; `serving` and `trainer` must forbid it at their roots,
//! and `shared-inference` must deny it everywhere but the kernel module.

use std::path::{Path, PathBuf};

use crate::support::workspace;

/// The one place `unsafe` may appear, relative to the workspace.
const KERNEL_MODULE: &str = "shared-inference/src/kernel";

/// Lines of `source` that hold unsafe code or lift the lint: `unsafe {`, `unsafe fn`,
/// `unsafe impl`, `unsafe extern`, `allow(unsafe_code)`. Comments are skipped.
fn unsafe_lines(source: &str) -> Vec<(usize, String)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            let tokens: Vec<&str> = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '{'))
                .filter(|t| !t.is_empty())
                .collect();
            let keyword = tokens.windows(2).any(|pair| {
                pair[0] == "unsafe"
                    && ["{", "fn", "impl", "extern", "trait"].iter().any(|next| pair[1].starts_with(next))
            }) || tokens.iter().any(|t| *t == "unsafe{" || t.starts_with("unsafe{"));
            keyword || code.contains("allow(unsafe_code)")
        })
        .map(|(i, line)| (i + 1, line.trim().to_string()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn unsafe_code_lives_only_in_the_kernel_module() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["shared-inference", "serving", "trainer", "tests", "benches", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 40, "found only {} Rust files", files.len());
    let mut found = Vec::new();
    let mut in_kernel = 0;
    for file in &files {
        let relative = file.strip_prefix(&root).expect("inside the workspace");
        let source = std::fs::read_to_string(file).expect("readable source");
        let lines = unsafe_lines(&source);
        if relative.starts_with(KERNEL_MODULE) {
            in_kernel += lines.len();
        } else if relative != Path::new("tests/end_to_end/unsafe_code.rs") {
            found.extend(lines.into_iter().map(|(n, line)| format!("{}:{n}: {line}", relative.display())));
        }
    }
    assert_eq!(found, Vec::<String>::new(), "unsafe code outside {KERNEL_MODULE}");
    // The scan does see the kernel's unsafe code, or it would be checking nothing.
    assert!(in_kernel >= 5, "the scan found only {in_kernel} unsafe lines in the kernel module");
}

#[test]
fn serving_and_trainer_forbid_unsafe_code_and_the_core_denies_it() {
    let root = workspace();
    for file in [
        "serving/src/lib.rs",
        "serving/src/main.rs",
        "trainer/src/lib.rs",
        "trainer/src/main.rs",
        "examples/embedded/src/main.rs",
    ] {
        let source = std::fs::read_to_string(root.join(file)).expect("readable source");
        assert!(source.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"), "{file} does not forbid unsafe code");
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace manifest");
    assert!(manifest.contains("unsafe_code = \"deny\""), "the workspace lints no longer deny unsafe code");
    let kernel = std::fs::read_to_string(root.join(KERNEL_MODULE).join("mod.rs")).expect("kernel module");
    assert!(kernel.contains("#![allow(unsafe_code)]"), "the kernel module is where the exemption lives");
}

#[test]
fn the_scan_finds_unsafe_code_in_its_usual_forms() {
    let source = "fn a() {\n    unsafe { f() };\n}\nunsafe fn b() {}\n// unsafe { in a comment }\n\
                  #[allow(unsafe_code)]\nunsafe impl Send for X {}\nlet s = \"an unsafe word\";\nunsafe{g()}\n";
    let lines: Vec<usize> = unsafe_lines(source).into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, vec![2, 4, 6, 7, 9]);
}
