//! The real `serving` binary against hostile or unlucky clients and operators, as SECURITY.md
//! promises: slow and stalled clients are cut off by their own timeouts, an over-long declared
//! body is refused before it is read, the connection limit answers at once, a keep-alive
//! connection gets 503 after SIGTERM, bearer tokens with scopes, the warning for a public
//! address without tokens, TLS, and damaged model versions at start-up.
//!
//! Every server listens on an ephemeral port (`--addr 127.0.0.1:0`, or `0.0.0.0:0` where the
//! warning is checked, reached through 127.0.0.1), is given short timeouts so that each test
//! takes a second or two, and is killed when its test ends, also when it fails.
//!
//! `tests/fixtures/tls/{cert.pem,key.pem}` are a TEST-ONLY self-signed certificate and its key,
//! valid for 100 years, made once with:
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
//!  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost
//!  -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth
//!  -keyout key.pem -out cert.pem`
//! (`CA:FALSE`: webpki refuses a CA certificate as the server's own). Never use them elsewhere.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{diamonds_record, wait_ready};
use crate::support::{
    Outcome, Response, Server, binary, copy_dir, parse_response, read_response, repository, send, workspace,
};

/// Runs `serving` with `args` to its end (at most 20 s) and returns its status and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(binary("serving"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the serving binary starts");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on serving") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serving {args:?} was expected to stop by itself but still ran after 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, reader.join().expect("stderr reader"))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    stream
}

/// A request head declaring `content_length` bytes of body; without `Connection: close`, so
/// that the connection is kept alive.
fn head(method: &str, path: &str, headers: &[(&str, &str)], content_length: usize) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {content_length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A whole request (see [`head`]).
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut bytes = head(method, path, headers, body.len());
    bytes.extend_from_slice(body);
    bytes
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Waits until the server closes `stream` (end of stream or a reset), sending nothing, for at
/// most `limit`; returns the time from `since`. Any byte received instead is an error.
fn wait_closed(stream: &mut TcpStream, since: Instant, limit: Duration) -> Result<Duration, String> {
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open {:?} after the start", since.elapsed()));
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(since.elapsed()),
            Ok(n) => {
                return Err(format!(
                    "expected the server to close silently, got {:?}",
                    String::from_utf8_lossy(&buffer[..n])
                ));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(since.elapsed()),
        }
    }
}

fn answered(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Answered(r) => r,
        other => panic!("no response: {other:?}"),
    }
}

fn body_text(response: &Response) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// The `"error"` message of a JSON error body; fails when the body is not one.
fn error_message(response: &Response) -> String {
    let body: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("status {}: body is not JSON ({e}): {:?}", response.status, body_text(response)));
    body["error"].as_str().unwrap_or_else(|| panic!("no \"error\" string in {body}")).to_string()
}

fn closes(response: &Response) -> bool {
    response.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// A v2 inference request for one diamond, every input of shape [1].
fn diamonds_v2_body() -> Vec<u8> {
    let record = diamonds_record(3);
    let inputs: Vec<Value> = record
        .as_object()
        .expect("a record is an object")
        .iter()
        .map(|(name, value)| {
            let datatype = if value.is_string() { "BYTES" } else { "FP64" };
            json!({ "name": name, "datatype": datatype, "shape": [1], "data": [value] })
        })
        .collect();
    json!({ "inputs": inputs }).to_string().into_bytes()
}

fn penguins_v1_body() -> Vec<u8> {
    json!({ "instances": [{
        "island": "Dream", "bill_length_mm": 49.0, "bill_depth_mm": 18.5, "flipper_length_mm": 195,
        "body_mass_g": 3700, "sex": "male", "year": 2008,
    }]})
    .to_string()
    .into_bytes()
}

const DIAMONDS_INFER: &str = "/v2/models/diamonds/infer";

/// Closed after about one second: `--*-timeout-seconds 1` and `--keep-alive-seconds 1`, measured
/// by the client, with room for a loaded machine but not for another bound having acted.
fn assert_about_one_second(what: &str, elapsed: Result<Duration, String>) {
    let elapsed = elapsed.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed <= Duration::from_secs(3),
        "{what}: closed after {elapsed:?}, expected 1-3 s"
    );
}

#[test]
fn silent_trickling_idle_and_stalled_connections_are_each_cut_off_by_their_own_timeout() {
    let server = Server::start(
        &repository().root,
        &["--header-timeout-seconds", "1", "--keep-alive-seconds", "1", "--body-timeout-seconds", "1"],
    );
    wait_ready(server.addr);
    let addr = server.addr;

    // (a) Connects and sends nothing: the keep-alive bound, from the connection opening.
    let silent = std::thread::spawn(move || {
        let opened = Instant::now();
        let mut stream = connect(addr);
        wait_closed(&mut stream, opened, Duration::from_secs(5))
    });
    // (b) Starts a head and adds a byte every 200 ms, never finishing it: the header bound,
    // from its first byte, however steadily bytes keep coming.
    let trickle = std::thread::spawn(move || -> Result<Duration, String> {
        let mut stream = connect(addr);
        let first_byte = Instant::now();
        stream
            .write_all(format!("POST {DIAMONDS_INFER} HTTP/1.1\r\nHost: x\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        let mut buffer = [0u8; 1024];
        while first_byte.elapsed() < Duration::from_secs(5) {
            match stream.read(&mut buffer) {
                Ok(0) => return Ok(first_byte.elapsed()),
                Ok(n) => {
                    return Err(format!("expected a silent close, got {:?}", String::from_utf8_lossy(&buffer[..n])));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stream.write_all(b"x").is_err() {
                        return Ok(first_byte.elapsed());
                    }
                }
                Err(_) => return Ok(first_byte.elapsed()),
            }
        }
        Err("still open 5 s after its first byte".into())
    });
    // (c) One request and response on a kept-alive connection, then nothing: the keep-alive
    // bound, from the response.
    let idle = std::thread::spawn(move || -> Result<Duration, String> {
        let mut stream = connect(addr);
        stream.write_all(&request("GET", "/v2/health/ready", &[], b"")).map_err(|e| format!("write: {e}"))?;
        let response = read_response(&mut stream)?;
        let answered = Instant::now();
        if response.status != 200 || closes(&response) {
            return Err(format!("expected a kept-alive 200, got {} {:?}", response.status, response.headers));
        }
        wait_closed(&mut stream, answered, Duration::from_secs(5))
    });
    // (d) Declares 1000 bytes of body and sends 10: 408 after the body bound, and a close.
    let stalled = std::thread::spawn(move || -> Result<(Duration, Response, Result<Duration, String>), String> {
        let mut stream = connect(addr);
        let mut bytes = head("POST", DIAMONDS_INFER, &[JSON], 1000);
        bytes.extend_from_slice(br#"{"inputs":"#);
        let sent = Instant::now();
        stream.write_all(&bytes).map_err(|e| format!("write: {e}"))?;
        let response = read_response(&mut stream)?;
        let elapsed = sent.elapsed();
        let closed = wait_closed(&mut stream, Instant::now(), Duration::from_secs(2));
        Ok((elapsed, response, closed))
    });

    // (e) Meanwhile, once they are all open and stuck, a normal client is served.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = answered(send(addr, "POST", DIAMONDS_INFER, &[JSON], &diamonds_v2_body()));
    assert_eq!(r.status, 200, "a normal request beside the slow ones: {}", body_text(&r));
    assert_eq!(r.json()["model_name"], "diamonds");
    assert!(started.elapsed() < Duration::from_millis(500), "a normal request took {:?}", started.elapsed());

    assert_about_one_second("(a) a connection that sends nothing", silent.join().expect("thread"));
    assert_about_one_second("(b) a head trickled a byte every 200 ms", trickle.join().expect("thread"));
    assert_about_one_second("(c) an idle kept-alive connection after its response", idle.join().expect("thread"));
    let (elapsed, response, closed) =
        stalled.join().expect("thread").unwrap_or_else(|e| panic!("(d) a stalled body: {e}"));
    assert_eq!(response.status, 408, "(d) a stalled body: {:?} {}", response.headers, body_text(&response));
    assert_about_one_second("(d) a stalled body's 408", Ok(elapsed));
    let message = error_message(&response);
    assert!(message.contains("--body-timeout-seconds"), "(d) the 408 names its flag: {message}");
    assert!(closes(&response), "(d) the 408 closes the connection: {:?}", response.headers);
    let closed = closed.unwrap_or_else(|e| panic!("(d) after the 408: {e}"));
    assert!(closed < Duration::from_secs(1), "(d) closed {closed:?} after the 408");
}

#[test]
fn a_declared_length_over_the_cap_is_refused_before_any_body_byte_is_read() {
    let server = Server::start(&repository().root, &["--max-body-bytes", "1000"]);
    wait_ready(server.addr);
    let mut stream = connect(server.addr);
    stream.set_read_timeout(Some(Duration::from_secs(1))).expect("read timeout");
    let sent = Instant::now();
    stream.write_all(&head("POST", DIAMONDS_INFER, &[JSON], 1 << 30)).expect("write the head");
    let response = read_response(&mut stream).unwrap_or_else(|e| panic!("no 413 within 1 s of the head: {e}"));
    assert!(sent.elapsed() < Duration::from_secs(1), "413 took {:?}", sent.elapsed());
    assert_eq!(response.status, 413, "{:?} {}", response.headers, body_text(&response));
    let message = error_message(&response);
    assert!(message.contains("1000") && message.contains("--max-body-bytes"), "{message}");
    assert!(closes(&response), "the 413 closes the connection: {:?}", response.headers);
    let closed = wait_closed(&mut stream, Instant::now(), Duration::from_secs(2));
    closed.unwrap_or_else(|e| panic!("after the 413, with 1 GiB announced: {e}"));
}

/// A head the HTTP parser itself refuses (a garbled request line, a target over its 65534
/// bytes, more header fields than it takes) gets its status with a JSON error body like every
/// other error, and the connection is closed; a good request on the same server is answered.
#[test]
fn heads_the_http_parser_refuses_get_json_errors_and_a_close() {
    let server = Server::start(&repository().root, &[]);
    wait_ready(server.addr);
    let many_headers: String = (0..300).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let cases: [(Vec<u8>, u16, &str); 3] = [
        (b"THIS IS NOT HTTP\r\n\r\n".to_vec(), 400, "not valid HTTP/1.1"),
        (format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(), 414, "65534 bytes"),
        (format!("GET /v2 HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(), 431, "200 header fields"),
    ];
    for (raw, status, words) in cases {
        let mut stream = connect(server.addr);
        stream.write_all(&raw).expect("write the head");
        let response = read_response(&mut stream).unwrap_or_else(|e| panic!("no {status} response: {e}"));
        assert_eq!(response.status, status, "{:?} {}", response.headers, body_text(&response));
        assert_eq!(response.header("content-type"), Some("application/json"), "{:?}", response.headers);
        let message = error_message(&response);
        assert!(message.contains(words), "{status}: {message}");
        assert!(closes(&response), "{status} closes the connection: {:?}", response.headers);
        wait_closed(&mut stream, Instant::now(), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("after {status}: {e}"));
    }
    let ok = answered(send(server.addr, "GET", "/v2/health/ready", &[], b""));
    assert_eq!(ok.status, 200, "{}", body_text(&ok));
}

#[test]
fn one_connection_over_the_limit_gets_an_immediate_503_and_a_freed_slot_is_reused() {
    let server = Server::start(&repository().root, &["--max-connections", "2"]);
    wait_ready(server.addr);
    // The readiness probes' connections are closed by the server once answered; give it the
    // moment it needs to release their slots after the close the client has already seen.
    std::thread::sleep(Duration::from_millis(100));
    let mut first = connect(server.addr);
    let mut second = connect(server.addr);

    let mut third = connect(server.addr);
    let opened = Instant::now();
    let mut raw = Vec::new();
    // Nothing is sent: the refusal must come without the server reading a request.
    let read = third.read_to_end(&mut raw);
    assert!(opened.elapsed() < Duration::from_secs(1), "the refusal took {:?} ({read:?})", opened.elapsed());
    assert!(
        raw.starts_with(b"HTTP/1.1 503 "),
        "expected an immediate 503, got {read:?}: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let refusal = parse_response(&raw).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&raw)));
    let message = error_message(&refusal);
    assert!(message.contains("--max-connections"), "{message}");
    assert!(refusal.header("retry-after").is_some(), "no retry-after: {:?}", refusal.headers);
    assert!(closes(&refusal), "{:?}", refusal.headers);

    // The two connections within the limit were kept, and were sent nothing.
    for (name, stream) in [("first", &mut first), ("second", &mut second)] {
        stream.set_nonblocking(true).expect("nonblocking");
        let mut buffer = [0u8; 256];
        match stream.read(&mut buffer) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!(
                "the {name} connection within the limit was not left open and silent: {other:?} {:?}",
                String::from_utf8_lossy(&buffer)
            ),
        }
    }

    // Closing one frees its slot: a new connection is served (once the server has seen the close).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(2);
    let last = loop {
        let outcome = send(server.addr, "GET", "/v2/health/ready", &[], b"");
        match outcome {
            Outcome::Answered(r) if r.status == 200 => break r,
            other if Instant::now() > deadline => panic!("no slot freed within 2 s of a close: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert_eq!(last.json()["ready"], true);
    drop(second);
}

#[test]
fn after_sigterm_a_kept_alive_connection_gets_503_with_close_and_the_server_exits_0() {
    let mut server = Server::start(&repository().root, &["--keep-alive-seconds", "1"]);
    wait_ready(server.addr);
    let mut stream = connect(server.addr);
    let inference = request("POST", DIAMONDS_INFER, &[JSON], &diamonds_v2_body());
    stream.write_all(&inference).expect("write");
    let first = read_response(&mut stream).unwrap_or_else(|e| panic!("first request: {e}"));
    assert_eq!(first.status, 200, "{}", body_text(&first));
    assert!(!closes(&first), "the first response kept the connection: {:?}", first.headers);

    server.sigterm();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("shutdown requested") {
        assert!(Instant::now() < deadline, "no \"shutdown requested\" logged within 5 s of SIGTERM:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(5));
    }

    // Readiness on a new connection: still accepted (the kept connection keeps the server
    // draining), and 503 so that load balancers stop sending.
    let ready = answered(send(server.addr, "GET", "/v2/health/ready", &[], b""));
    assert_eq!(ready.status, 503, "readiness while draining: {}", body_text(&ready));
    assert!(ready.header("retry-after").is_some(), "{:?}", ready.headers);
    error_message(&ready);

    // The kept connection, within its drain idle window: 503, told to close and to retry.
    stream.write_all(&inference).expect("write the second request on the kept connection");
    let second = read_response(&mut stream).unwrap_or_else(|e| panic!("second request on the kept connection: {e}"));
    assert_eq!(second.status, 503, "{:?} {}", second.headers, body_text(&second));
    assert!(closes(&second), "the 503 closes the connection: {:?}", second.headers);
    assert!(second.header("retry-after").is_some(), "{:?}", second.headers);
    let message = error_message(&second);
    assert!(message.contains("shutting down"), "{message}");
    wait_closed(&mut stream, Instant::now(), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("the kept connection after its 503: {e}"));

    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.log());
}

const SCORER: &str = "scorer-secret-0123456789";
const READER: &str = "reader-secret-0123456789";

#[test]
fn tokens_with_scopes_guard_every_endpoint_but_health_and_are_never_logged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "[[token]]\nname = \"scorer\"\ntoken = \"{SCORER}\"\nscopes = [\"inference\"]\n\
             [[token]]\nname = \"reader\"\ntoken = \"{READER}\"\nscopes = [\"metadata\", \"metrics\"]\n"
        ),
    )
    .expect("write the token file");
    let file = file.to_str().expect("UTF-8 path");
    // Debug logging: the tokens must stay out of every line the server can write.
    let server =
        Server::start_with_env(&repository().root, &["--tokens", file, "--protect-metrics"], &[("RUST_LOG", "debug")]);
    let addr = server.addr;
    wait_ready(addr);
    let bearer = |token: &str| format!("Bearer {token}");
    let (scorer, reader) = (bearer(SCORER), bearer(READER));
    let call = |method: &str, path: &str, token: Option<&str>| {
        let body = if method == "POST" { diamonds_v2_body() } else { Vec::new() };
        let mut headers = vec![JSON];
        if let Some(token) = token {
            headers.push(("Authorization", token));
        }
        answered(send(addr, method, path, &headers, &body))
    };

    for path in ["/v2/health/live", "/v2/health/ready"] {
        let r = call("GET", path, None);
        assert_eq!(r.status, 200, "{path} without a token: {}", body_text(&r));
    }

    let r = call("POST", DIAMONDS_INFER, None);
    assert_eq!(r.status, 401, "infer without a token: {}", body_text(&r));
    let challenge =
        r.header("www-authenticate").unwrap_or_else(|| panic!("401 without www-authenticate: {:?}", r.headers));
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(error_message(&r).contains("inference"), "the 401 names the scope: {}", body_text(&r));

    let r = call("POST", DIAMONDS_INFER, Some("Bearer not-a-known-token-at-all"));
    assert_eq!(r.status, 401, "infer with an unknown token: {}", body_text(&r));
    assert!(r.header("www-authenticate").is_some_and(|c| c.contains("invalid_token")), "{:?}", r.headers);

    let r = call("POST", DIAMONDS_INFER, Some(&reader));
    assert_eq!(r.status, 403, "infer with the reader token: {}", body_text(&r));
    let challenge =
        r.header("www-authenticate").unwrap_or_else(|| panic!("403 without www-authenticate: {:?}", r.headers));
    assert!(challenge.starts_with("Bearer") && challenge.contains("insufficient_scope"), "{challenge}");
    error_message(&r);

    let r = call("POST", DIAMONDS_INFER, Some(&scorer));
    assert_eq!(r.status, 200, "infer with the scorer token: {}", body_text(&r));
    assert_eq!(r.json()["model_name"], "diamonds");

    let r = call("GET", "/v2/models/diamonds", Some(&scorer));
    assert_eq!(r.status, 403, "metadata with the scorer token: {}", body_text(&r));
    assert!(r.header("www-authenticate").is_some_and(|c| c.contains("insufficient_scope")), "{:?}", r.headers);
    let r = call("GET", "/v2/models/diamonds", Some(&reader));
    assert_eq!(r.status, 200, "metadata with the reader token: {}", body_text(&r));
    assert_eq!(r.json()["name"], "diamonds");

    let r = call("GET", "/metrics", None);
    assert_eq!(r.status, 401, "--protect-metrics, no token: {}", body_text(&r));
    error_message(&r);
    let r = call("GET", "/metrics", Some(&reader));
    assert_eq!(r.status, 200, "metrics with the reader token: {}", body_text(&r));
    assert!(body_text(&r).contains("serving_model_load_failures"), "{}", body_text(&r));

    let log = server.log();
    assert!(!log.is_empty(), "the server logged nothing");
    for secret in [SCORER, READER] {
        assert!(!log.contains(secret), "a token is in the server's log:\n{log}");
    }
}

fn warns_of_no_access_control(server: &Server) -> bool {
    server.entries().iter().any(|e| {
        e["level"].as_str().is_some_and(|l| l.eq_ignore_ascii_case("warn"))
            && e["message"].as_str().is_some_and(|m| m.contains("no access control"))
    })
}

#[test]
fn a_public_address_without_tokens_is_warned_about_and_loopback_is_not() {
    let public = Server::start(&repository().root, &["--addr", "0.0.0.0:0"]);
    wait_ready(public.addr);
    assert!(warns_of_no_access_control(&public), "no warning for 0.0.0.0 without --tokens; log:\n{}", public.log());

    let loopback = Server::start(&repository().root, &[]);
    wait_ready(loopback.addr);
    assert!(!warns_of_no_access_control(&loopback), "a warning for 127.0.0.1; log:\n{}", loopback.log());
    assert!(!loopback.log().contains("no access control"), "{}", loopback.log());
}

fn tls_fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures/tls").join(name)
}

/// A blocking HTTPS request that trusts only the test certificate; returns the raw response.
fn https(addr: SocketAddr, request: &[u8]) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    let certificate = rustls::pki_types::CertificateDer::from_pem_file(tls_fixture("cert.pem"))
        .map_err(|e| format!("reading the test certificate: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).map_err(|e| format!("the test certificate as a root: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, connect(addr));
    tls.write_all(request).map_err(|e| format!("TLS write (handshake included): {e}"))?;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match tls.read(&mut buffer) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            // A close without close_notify after a whole response is no failure here.
            Err(e) if !raw.is_empty() && e.kind() == ErrorKind::UnexpectedEof => return Ok(raw),
            Err(e) => return Err(format!("TLS read after {} bytes: {e}", raw.len())),
        }
    }
}

#[test]
fn tls_serves_https_with_the_given_certificate_and_refuses_plain_http() {
    let (certificate, key) = (tls_fixture("cert.pem"), tls_fixture("key.pem"));
    let (certificate, key) = (certificate.to_str().expect("UTF-8 path"), key.to_str().expect("UTF-8 path"));
    let server = Server::start(&repository().root, &["--tls-certificate", certificate, "--tls-key", key]);
    let listening = server.entries().into_iter().find(|e| e["message"] == "listening").expect("listening line");
    assert_eq!(listening["tls"], true, "{listening}");

    let raw = https(server.addr, b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| panic!("HTTPS readiness: {e}; server log:\n{}", server.log()));
    let response = parse_response(&raw).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&raw)));
    assert_eq!(response.status, 200, "{}", body_text(&response));
    assert_eq!(response.json()["ready"], true);

    // Plain HTTP on the TLS port: never an HTTP answer, and the connection is closed at once.
    let mut plain = connect(server.addr);
    plain.write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    plain.set_read_timeout(Some(Duration::from_secs(3))).expect("read timeout");
    let sent = Instant::now();
    let mut raw = Vec::new();
    let read = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/1.1 200"),
        "plain HTTP on the TLS port got a 200: {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        !matches!(&read, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "plain HTTP on the TLS port was left open for {:?}",
        sent.elapsed()
    );

    // A certificate without its key is refused by the argument parser, naming what is missing.
    let root = repository().root.to_str().expect("UTF-8 path").to_string();
    let (status, stderr) = run_to_exit(&["serve", "--model-repository", &root, "--tls-certificate", certificate]);
    assert!(!status.success(), "started with a certificate and no key:\n{stderr}");
    assert_eq!(status.code(), Some(2), "a usage error:\n{stderr}");
    assert!(stderr.contains("--tls-key"), "the error names --tls-key:\n{stderr}");
}

/// A repository under `dir` holding copies of the trained versions of `models`.
fn repository_copy(dir: &Path, models: &[&str]) -> PathBuf {
    let root = dir.join("models");
    for model in models {
        let version = repository().version_dir(model);
        let name = version.file_name().expect("version directory name");
        copy_dir(&version, &root.join(model).join(name));
    }
    root
}

#[test]
fn damaged_versions_are_reported_and_skipped_unless_strict_and_readiness_needs_every_model() {
    let dir = tempfile::tempdir().expect("temporary directory");

    // Both models have a good version and a damaged one.
    let root = repository_copy(&dir.path().join("both"), &["diamonds", "penguins"]);
    let empty = root.join("penguins/99");
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::fs::create_dir_all(root.join("diamonds/98")).expect("mkdir");
    std::fs::write(root.join("diamonds/98/manifest.json"), "{ this is not a manifest").expect("write");
    let server = Server::start(&root, &[]);
    let addr = server.addr;
    let r = answered(send(addr, "GET", "/v2/health/ready", &[], b""));
    assert_eq!(r.status, 200, "every model has a good version: {}", body_text(&r));
    let r = answered(send(addr, "POST", DIAMONDS_INFER, &[JSON], &diamonds_v2_body()));
    assert_eq!(r.status, 200, "diamonds: {}", body_text(&r));
    let r = answered(send(addr, "POST", "/v1/models/penguins:predict", &[], &penguins_v1_body()));
    assert_eq!(r.status, 200, "penguins: {}", body_text(&r));
    assert_eq!(r.json()["predictions"].as_array().map(Vec::len), Some(1), "{}", body_text(&r));

    let index = answered(send(addr, "GET", "/v2/models", &[], b"")).json();
    let unavailable = index["unavailable"].as_array().unwrap_or_else(|| panic!("no \"unavailable\" list: {index}"));
    assert_eq!(unavailable.len(), 2, "{index}");
    for (model, version) in [("diamonds", "98"), ("penguins", "99")] {
        let entry = unavailable
            .iter()
            .find(|u| u["name"] == model && u["version"] == version)
            .unwrap_or_else(|| panic!("{model}/{version} not listed as unavailable: {index}"));
        assert_eq!(entry["state"], "UNAVAILABLE", "{entry}");
        assert!(entry["reason"].as_str().is_some_and(|r| !r.trim().is_empty()), "no reason: {entry}");
    }
    let models = index["models"].as_array().expect("models");
    for model in ["diamonds", "penguins"] {
        let listed =
            models.iter().find(|m| m["name"] == model).unwrap_or_else(|| panic!("{model} not served: {index}"));
        assert_eq!(listed["versions"], json!(["1"]), "{listed}");
    }
    let metrics = body_text(&answered(send(addr, "GET", "/metrics", &[], b"")));
    for line in
        ["serving_model_load_failures{model=\"penguins\"} 1", "serving_model_load_failures{model=\"diamonds\"} 1"]
    {
        assert!(metrics.lines().any(|l| l == line), "no line {line:?} in /metrics:\n{metrics}");
    }
    let log = server.entries();
    assert!(
        log.iter().any(|e| e["level"] == "ERROR" && e["dir"].as_str().is_some_and(|d| Path::new(d) == empty)),
        "the damaged version is not logged with its directory: {log:?}"
    );
    drop(server);

    // Penguins has only its damaged version: served otherwise, but not ready.
    let root = repository_copy(&dir.path().join("no-penguins"), &["diamonds"]);
    std::fs::create_dir_all(root.join("penguins/99")).expect("mkdir");
    let server = Server::start(&root, &[]);
    let r = answered(send(server.addr, "GET", "/v2/health/ready", &[], b""));
    assert_eq!(r.status, 503, "penguins has no loaded version: {}", body_text(&r));
    assert!(error_message(&r).contains("penguins"), "readiness names the model: {}", body_text(&r));
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    let r = answered(send(server.addr, "POST", DIAMONDS_INFER, &[JSON], &diamonds_v2_body()));
    assert_eq!(r.status, 200, "diamonds is still served: {}", body_text(&r));
    drop(server);

    // --strict: one damaged version stops start-up, naming its directory.
    let root = repository_copy(&dir.path().join("strict"), &["diamonds", "penguins"]);
    let damaged = root.join("penguins/99");
    std::fs::create_dir_all(&damaged).expect("mkdir");
    let root = root.to_str().expect("UTF-8 path").to_string();
    let (status, stderr) = run_to_exit(&["serve", "--addr", "127.0.0.1:0", "--model-repository", &root, "--strict"]);
    assert!(!status.success(), "--strict started with a damaged version:\n{stderr}");
    assert!(stderr.contains(damaged.to_str().expect("UTF-8 path")), "the error names {}:\n{stderr}", damaged.display());
    assert!(!stderr.contains("listening"), "it listened first:\n{stderr}");
}
