//! The Open Inference Protocol over gRPC on the real binary: the generated code is the one the
//! `.proto` gives, and `tritonclient.grpc` (unchanged, from PyPI) gets health, metadata and the
//! same bits as HTTP v2 and `serving predict`, and the same errors as HTTP for the same bad
//! requests (tests/grpc/check.py).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Server, binary, repository, test_split_csv, workspace};

const GENERATED: &str = "serving/src/grpc/inference.rs";

/// The Rust code `protox` (the `.proto` compiled in Rust, no `protoc`) and tonic's generator make.
fn generate(out: &Path) -> String {
    let root = workspace();
    let files = protox::compile(["grpc_service.proto"], [root.join("serving/proto")]).expect("the .proto compiles");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_fds(files)
        .expect("the code generator runs");
    std::fs::read_to_string(out.join("inference.rs")).expect("the generated file")
}

/// Fails when serving/src/grpc/inference.rs is not what the `.proto` generates; with
/// `REGENERATE_GRPC=1` it writes it.
#[test]
fn grpc_generated_code_is_current() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let generated = generate(dir.path());
    let checked_in = workspace().join(GENERATED);
    if std::env::var_os("REGENERATE_GRPC").is_some() {
        std::fs::write(&checked_in, &generated).expect("write the generated code");
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(generated.contains("GrpcInferenceService"), "the generated code has no service");
    assert!(
        current == generated,
        "{GENERATED} differs from what serving/proto/grpc_service.proto generates: run \
         REGENERATE_GRPC=1 cargo nextest run --release -p workspace-tests grpc_generated_code_is_current"
    );
}

/// The check can fail: a field renumbered in the `.proto` changes the generated code.
#[test]
fn a_changed_proto_changes_the_generated_code() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let proto = std::fs::read_to_string(workspace().join("serving/proto/grpc_service.proto")).expect("the .proto");
    let changed = proto.replace("repeated bytes raw_input_contents = 7;", "repeated bytes raw_input_contents = 9;");
    assert_ne!(changed, proto, "the field to renumber is in the .proto");
    std::fs::write(dir.path().join("grpc_service.proto"), changed).expect("write");
    let files = protox::compile(["grpc_service.proto"], [dir.path()]).expect("compiles");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    tonic_prost_build::configure()
        .build_client(false)
        .emit_rerun_if_changed(false)
        .out_dir(&out)
        .compile_fds(files)
        .expect("generates");
    let generated = std::fs::read_to_string(out.join("inference.rs")).expect("generated");
    let current = std::fs::read_to_string(workspace().join(GENERATED)).expect("checked in");
    assert_ne!(generated, current);
}

fn python() -> PathBuf {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: ./scripts/test.sh creates it (scripts/python-env.sh tests/grpc/requirements.txt)",
        python.display()
    );
    python
}

/// Runs tests/grpc/check.py for each model against `server` (with `extra` arguments), after
/// scoring the model's test split with `serving predict` for it to compare with.
fn check_models(server: &Server, models: &[&str], extra: &[&str]) {
    let repository = repository();
    let dir = tempfile::tempdir().expect("temporary directory");
    let grpc = server.grpc_addr.expect("the server logs its gRPC address");
    for &model in models {
        let rows = test_split_csv(model, dir.path());
        let scored = dir.path().join(format!("{model}.scored.csv"));
        let status = Command::new(binary("serving"))
            .args(["predict", "--quiet", "--model"])
            .arg(repository.root.join(model).join("1"))
            .arg("--input")
            .arg(&rows)
            .arg("--output")
            .arg(&scored)
            .status()
            .expect("serving predict runs");
        assert!(status.success());
        let output = Command::new(python())
            .arg(workspace().join("tests/grpc/check.py"))
            .args(["--grpc", &grpc.to_string(), "--http", &server.addr.to_string(), "--model", model])
            .arg("--rows")
            .arg(&rows)
            .arg("--scored")
            .arg(&scored)
            .args(extra)
            .output()
            .expect("the check runs");
        assert!(
            output.status.success(),
            "tests/grpc/check.py failed for {model}:\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            server.log()
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("rows agree"), "{stdout}");
    }
}

/// `tritonclient.grpc` against the real server, both models: tests/grpc/check.py compares with
/// HTTP v2 (binary tensors, through `tritonclient.http`'s wire format done by hand) and with
/// `serving predict`, bit for bit, and checks the error codes and texts.
#[test]
fn tritonclient_grpc_gets_the_bits_of_http_v2_and_serving_predict() {
    let server = Server::start(&repository().root, &["--grpc-addr", "127.0.0.1:0"]);
    check_models(&server, &["penguins", "diamonds"], &[]);
}

/// gRPC over TLS with the certificate and key HTTPS uses (ALPN `h2`): `tritonclient.grpc` with
/// `ssl=True`, trusting only the test certificate, gets the same bits and errors as HTTPS v2 and
/// `serving predict` (see tests/end_to_end/hardening.rs for the fixture).
#[test]
fn tritonclient_grpc_over_tls_gets_the_bits_of_https_v2_and_serving_predict() {
    let tls = workspace().join("tests/fixtures/tls");
    let (certificate, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    let (certificate, key) = (certificate.to_str().expect("UTF-8 path"), key.to_str().expect("UTF-8 path"));
    let server = Server::start(
        &repository().root,
        &["--grpc-addr", "127.0.0.1:0", "--tls-certificate", certificate, "--tls-key", key],
    );
    check_models(&server, &["penguins"], &["--certificate", certificate]);
}

/// Access control over gRPC is HTTP's: no token is UNAUTHENTICATED, a token without the
/// inference scope PERMISSION_DENIED, a wrong token UNAUTHENTICATED, health needs none, and a
/// token with the scope predicts.
#[test]
fn grpc_enforces_the_same_tokens_as_http() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        "[[token]]\nname = \"scorer\"\ntoken = \"scorer-token-0123456789\"\nscopes = [\"inference\"]\n\
         [[token]]\nname = \"reader\"\ntoken = \"reader-token-0123456789\"\nscopes = [\"metadata\"]\n",
    )
    .expect("write the token file");
    let file = file.to_str().expect("UTF-8 path");
    let server = Server::start(&repository().root, &["--grpc-addr", "127.0.0.1:0", "--tokens", file]);
    let grpc = server.grpc_addr.expect("gRPC address");
    let output = Command::new(python())
        .arg(workspace().join("tests/grpc/check.py"))
        .args(["--grpc", &grpc.to_string(), "--model", "penguins", "--auth-check"])
        .args(["--scorer-token", "scorer-token-0123456789", "--reader-token", "reader-token-0123456789"])
        .output()
        .expect("the check runs");
    assert!(
        output.status.success(),
        "{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("access control agrees"));
}
