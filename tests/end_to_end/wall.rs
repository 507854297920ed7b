//! The wall between training and serving (DESIGN invariant 1): `serving`'s own dependency graph
//! holds no training crate, nor does the embedding example's (`embedded-model`), and neither does
//! the release binary `cargo build -p serving --release` makes. The checks are also run against a
//! deliberately wrong workspace, to show that they can fail.

use std::path::Path;
use std::process::Command;

use crate::support::{build_alone, shipped_serving, workspace};

/// Crates that carry training code, as cargo names them; a trailing `*` matches a prefix.
const BANNED: &[&str] = &[
    "trainer",
    "burn-autodiff",
    "burn-optim",
    "burn-train",
    "burn-cuda",
    "burn-cubecl",
    "cubecl*",
    "cudarc",
    "polars*",
    "onnx-protobuf",
    "protobuf",
];

/// burn's tensor crate (`burn-std`) depends on these two unconditionally: they hold its shape,
/// error and byte-buffer types, no GPU runtime and no training code. Every other `cubecl*`
/// crate stays banned.
const ALLOWED: &[&str] = &["cubecl-common", "cubecl-zspace"];

fn is_banned(crate_name: &str) -> bool {
    let name = crate_name.replace('_', "-");
    if ALLOWED.contains(&name.as_str()) {
        return false;
    }
    BANNED.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *pattern,
    })
}

/// Banned crates in `package`'s normal dependency graph, for the workspace at `manifest`.
fn banned_in_graph(manifest: &Path, package: &str) -> Vec<String> {
    let mut found: Vec<String> = graph(manifest, package).into_iter().filter(|name| is_banned(name)).collect();
    found.sort();
    found.dedup();
    found
}

/// Crates whose code is in a binary, read from its symbol table: every `crate::path` in the
/// demangled names whose crate is banned.
fn banned_in_binary(binary: &Path) -> Vec<String> {
    let output = Command::new("nm").arg("--demangle").arg(binary).output().expect("nm (binutils) runs");
    assert!(output.status.success(), "nm failed: {}", String::from_utf8_lossy(&output.stderr));
    let symbols = String::from_utf8_lossy(&output.stdout);
    assert!(
        symbols.lines().count() > 100,
        "{} has almost no symbols; the check needs an unstripped binary",
        binary.display()
    );
    let mut found = Vec::new();
    for line in symbols.lines() {
        let bytes = line.as_bytes();
        let mut start = 0;
        while let Some(offset) = line[start..].find("::") {
            let end = start + offset;
            let mut begin = end;
            while begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_') {
                begin -= 1;
            }
            let path_start = begin == 0 || !matches!(bytes[begin - 1], b':');
            let name = &line[begin..end];
            if path_start && !name.is_empty() && is_banned(name) {
                found.push(name.to_string());
            }
            start = end + 2;
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn serving_graph_holds_no_training_crate() {
    assert_eq!(banned_in_graph(&workspace().join("Cargo.toml"), "serving"), Vec::<String>::new());
}

/// The embedding example (`examples/embedded`) is what users copy into their own services: the
/// inference library and a web stack, and no training crate.
#[test]
fn the_embedding_example_graph_holds_no_training_crate() {
    let manifest = workspace().join("Cargo.toml");
    assert_eq!(banned_in_graph(&manifest, "embedded-model"), Vec::<String>::new());
    // The graph checked is the example's own: the inference library with a web stack around it.
    let example = graph(&manifest, "embedded-model");
    let expected = ["shared-inference", "burn-ndarray", "axum", "tokio"];
    assert!(expected.iter().all(|name| example.iter().any(|e| e == name)), "{example:?}");
}

/// What a prediction does not need (DESIGN invariant 2): no HTTP stack, no CLI parser, no file
/// readers. `shared-inference` must hold none of these, nor any training crate.
const NOT_FOR_PREDICTION: &[&str] = &["axum", "hyper", "tokio", "clap", "csv", "indicatif", "tracing"];

/// Every crate name in `package`'s normal dependency graph.
fn graph(manifest: &Path, package: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none", "-p", package, "--manifest-path"])
        .arg(manifest)
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn shared_inference_holds_only_what_a_prediction_needs() {
    let manifest = workspace().join("Cargo.toml");
    assert_eq!(banned_in_graph(&manifest, "shared-inference"), Vec::<String>::new());
    let mut found: Vec<String> = graph(&manifest, "shared-inference")
        .into_iter()
        .filter(|name| NOT_FOR_PREDICTION.contains(&name.as_str()))
        .collect();
    found.sort();
    found.dedup();
    assert_eq!(found, Vec::<String>::new(), "shared-inference depends on serving or CLI crates");
    // The same filter does see those crates where they belong.
    let serving = graph(&manifest, "serving");
    assert!(["axum", "clap", "tokio"].iter().all(|name| serving.iter().any(|s| s == name)), "{serving:?}");
}

#[test]
fn the_trainer_graph_is_seen_as_training() {
    // The same check on the trainer must find the training crates, or it is checking nothing.
    let found = banned_in_graph(&workspace().join("Cargo.toml"), "trainer");
    for expected in ["burn-autodiff", "burn-optim", "polars-io", "polars-core", "protobuf", "onnx-protobuf"] {
        assert!(found.iter().any(|f| f == expected), "{expected} not found in the trainer's graph: {found:?}");
    }
}

/// polars' query engine: minutes of a fresh build that reading a file into columns never uses.
const POLARS_QUERY_ENGINE: &[&str] =
    &["polars", "polars-ops", "polars-lazy", "polars-plan", "polars-expr", "polars-stream", "polars-sql"];

#[test]
fn the_workspace_compiles_polars_readers_without_its_query_engine() {
    // The tests package carries every member's dependencies (build_once.rs), so its graph is
    // what the main job and the test command compile.
    let manifest = workspace().join("Cargo.toml");
    for package in ["trainer", "workspace-tests"] {
        let graph = graph(&manifest, package);
        assert!(graph.iter().any(|name| name == "polars-io"), "{package} reads no file with polars: {graph:?}");
        let engine: Vec<&String> = graph.iter().filter(|name| POLARS_QUERY_ENGINE.contains(&name.as_str())).collect();
        assert_eq!(engine, Vec::<&String>::new(), "{package} compiles polars' query engine");
    }
}

#[test]
fn serving_release_binary_holds_no_training_symbols() {
    let binary = shipped_serving();
    assert_eq!(banned_in_binary(&binary), Vec::<String>::new());
}

/// A two-crate workspace whose `package` (a binary) links a crate named `burn-autodiff`.
fn write_wrong_workspace(root: &Path, package: &str) {
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("Cargo.toml", &format!("[workspace]\nresolver = \"2\"\nmembers = [\"{package}\", \"burn-autodiff\"]\n"));
    write(
        &format!("{package}/Cargo.toml"),
        &format!(
            "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nburn-autodiff = {{ path = \"../burn-autodiff\" }}\n"
        ),
    );
    write(
        &format!("{package}/src/main.rs"),
        "fn main() { println!(\"{}\", burn_autodiff::backward_pass(std::env::args().count() as u64)); }\n",
    );
    write("burn-autodiff/Cargo.toml", "[package]\nname = \"burn-autodiff\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    write(
        "burn-autodiff/src/lib.rs",
        "#[inline(never)]\npub fn backward_pass(x: u64) -> u64 { x.wrapping_mul(6364136223846793005).rotate_left(7) ^ x }\n",
    );
}

#[test]
fn both_checks_fail_on_a_serving_that_links_training_code() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_wrong_workspace(dir.path(), "serving");
    let manifest = dir.path().join("Cargo.toml");
    assert_eq!(banned_in_graph(&manifest, "serving"), vec!["burn-autodiff".to_string()]);
    let binary = build_alone(&manifest, "serving", &dir.path().join("target"));
    assert_eq!(banned_in_binary(&binary), vec!["burn_autodiff".to_string()]);
}

#[test]
fn the_graph_check_fails_on_an_example_that_links_training_code() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_wrong_workspace(dir.path(), "embedded-model");
    let manifest = dir.path().join("Cargo.toml");
    assert_eq!(banned_in_graph(&manifest, "embedded-model"), vec!["burn-autodiff".to_string()]);
}

#[test]
fn the_allow_list_is_exactly_what_burn_requires() {
    assert!(is_banned("cubecl-runtime") && is_banned("cubecl") && is_banned("polars-core") && is_banned("cubecl_cuda"));
    assert!(!is_banned("cubecl-common") && !is_banned("burn-ndarray") && !is_banned("serde"));
}
