//! Build once: every dev-dependency of every workspace member is a normal dependency of this
//! package (tests/Cargo.toml) with the same version and features. Cargo resolves the features of
//! a selected package's normal dependencies even when it builds none of its targets, so
//! `cargo build --workspace --bins` (scripts/build.sh, the main job) resolves the feature set the
//! test build resolves, and the test build after it compiles no dependency again.

use crate::support::workspace;

fn read(path: &std::path::Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: not TOML: {e}", path.display()))
}

/// The features a dependency specification turns on (`features = [...]`), sorted.
fn features(spec: &toml::Value) -> Vec<String> {
    let mut out: Vec<String> = spec
        .get("features")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// One problem per dev-dependency of a member that the tests package does not carry as a normal
/// dependency with the same version, default features and at least the same features.
fn unlisted(members: &[(String, toml::Table)], tests: &toml::Table) -> Vec<String> {
    let empty = toml::Table::new();
    let normal = tests.get("dependencies").and_then(toml::Value::as_table).unwrap_or(&empty);
    let mut problems = Vec::new();
    if tests.contains_key("dev-dependencies") {
        problems.push("tests/Cargo.toml has [dev-dependencies]: list them under [dependencies]".to_string());
    }
    for (member, manifest) in members {
        let dev = manifest.get("dev-dependencies").and_then(toml::Value::as_table).unwrap_or(&empty);
        for (name, spec) in dev {
            let Some(ours) = normal.get(name) else {
                problems.push(format!("{member}: dev-dependency {name} is not a dependency of tests/Cargo.toml"));
                continue;
            };
            for key in ["version", "workspace", "default-features"] {
                if spec.get(key) != ours.get(key) {
                    problems.push(format!(
                        "{member}: dev-dependency {name}: {key} {:?} here, {:?} in tests/Cargo.toml",
                        spec.get(key),
                        ours.get(key)
                    ));
                }
            }
            let (wanted, carried) = (features(spec), features(ours));
            let lacking: Vec<&String> = wanted.iter().filter(|f| !carried.contains(f)).collect();
            if !lacking.is_empty() {
                problems.push(format!("{member}: dev-dependency {name}: features {lacking:?} not in tests/Cargo.toml"));
            }
        }
    }
    problems
}

fn members() -> Vec<(String, toml::Table)> {
    let root = workspace();
    let manifest = read(&root.join("Cargo.toml"));
    let members = manifest["workspace"]["members"].as_array().expect("workspace.members");
    members
        .iter()
        .map(|m| m.as_str().expect("a path"))
        .filter(|m| *m != "tests")
        .map(|m| (m.to_string(), read(&root.join(m).join("Cargo.toml"))))
        .collect()
}

#[test]
fn every_dev_dependency_of_the_workspace_is_a_normal_dependency_of_the_tests_package() {
    let members = members();
    assert!(members.len() >= 4, "found only {} members", members.len());
    let tests = read(&workspace().join("tests/Cargo.toml"));
    let problems = unlisted(&members, &tests);
    assert!(problems.is_empty(), "the test build would compile crates again:\n  {}", problems.join("\n  "));
}

fn table(text: &str) -> toml::Table {
    toml::from_str(text).expect("TOML")
}

#[test]
fn a_missing_or_different_dev_dependency_is_reported() {
    let member =
        table("[dev-dependencies]\nextra = \"1\"\nndarray = { version = \"0.17\", features = [\"std\", \"rayon\"] }");
    let tests =
        table("[dependencies]\nndarray = { version = \"0.17\", features = [\"std\"] }\n[dev-dependencies]\nx = \"1\"");
    let problems = unlisted(&[("benches".to_string(), member)], &tests);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("[dev-dependencies]"));
    assert!(problems.iter().any(|p| p.contains("extra")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("\"rayon\"")), "{problems:#?}");
}
