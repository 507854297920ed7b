//! gRPC under the connection layer HTTP uses, on the real binary, over raw HTTP/2 (hyper's
//! client, so that each test decides when every byte of a call is sent): a message over the
//! body cap is refused from its 5-byte prefix with HTTP's text and RESOURCE_EXHAUSTED, a stalled
//! body gets DEADLINE_EXCEEDED within the body timeout, a call in flight finishes across SIGTERM
//! and the server then exits 0, and a connection over the limit shared with HTTP gets a GOAWAY
//! naming it. TLS over gRPC is checked with `tritonclient.grpc` (tests/grpc/check.py).

use std::convert::Infallible;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use prost::Message;
use serving::grpc::inference::model_infer_request::InferInputTensor;
use serving::grpc::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use shared_inference::schema::ColumnKind;
use tokio::sync::mpsc;

use crate::support::{Server, repository, send, test_split_csv};

/// A request body sent piece by piece: each `Bytes` on the channel is one DATA frame; dropping
/// the sender ends the body.
struct Piecewise(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for Piecewise {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|piece| piece.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// An HTTP/2 connection to the gRPC listener, driven in the background.
async fn connect(addr: SocketAddr) -> SendRequest<Piecewise> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the gRPC listener");
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

/// Starts a call of `rpc`; what is sent on the returned channel is its body.
fn start_call(
    sender: &mut SendRequest<Piecewise>,
    rpc: &str,
) -> (mpsc::UnboundedSender<Bytes>, tokio::task::JoinHandle<hyper::Result<hyper::Response<Incoming>>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let request = hyper::Request::post(format!("http://127.0.0.1/inference.GRPCInferenceService/{rpc}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Piecewise(rx))
        .expect("a request");
    let response = sender.send_request(request);
    (tx, tokio::spawn(response))
}

/// A message as gRPC frames it: uncompressed, its length big-endian, then its bytes.
fn framed(message: &impl Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// The outcome of a started call, which must come within `limit` (`what` says why).
async fn outcome_within(
    response: tokio::task::JoinHandle<hyper::Result<hyper::Response<Incoming>>>,
    limit: Duration,
    what: &str,
) -> Outcome {
    let response = tokio::time::timeout(limit, response)
        .await
        .unwrap_or_else(|_| panic!("no response within {limit:?}: {what}"))
        .expect("the call task")
        .expect("a response");
    outcome(response).await
}

/// Sends `message` as a whole call of ModelInfer and waits for its outcome.
async fn whole_call(sender: &mut SendRequest<Piecewise>, message: &ModelInferRequest) -> Outcome {
    let (body, response) = start_call(sender, "ModelInfer");
    body.send(Bytes::from(framed(message))).expect("send");
    drop(body);
    outcome(response.await.expect("the call task").expect("a response")).await
}

/// What a call ended with: its gRPC status code and message, and its response message bytes.
#[derive(Debug)]
struct Outcome {
    code: i32,
    message: String,
    body: Bytes,
}

async fn outcome(response: hyper::Response<Incoming>) -> Outcome {
    let (parts, body) = response.into_parts();
    assert_eq!(parts.status, 200, "gRPC answers every call with HTTP 200");
    let collected = body.collect().await.expect("the response body");
    // A call refused before its handler is "trailers-only": the status is in the headers.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers.get(name).or_else(|| parts.headers.get(name)).map(|v| v.to_str().expect("ASCII").to_string())
    };
    let code = field("grpc-status").expect("a grpc-status").parse().expect("a number");
    let message = percent_decoded(&field("grpc-message").unwrap_or_default());
    Outcome { code, message, body: collected.to_bytes() }
}

/// `grpc-message` is percent-encoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 message")
}

const OK: i32 = 0;
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;

/// A `ModelInfer` for the first row of the penguins test split, every input in typed contents.
fn penguins_request() -> ModelInferRequest {
    let dir = tempfile::tempdir().expect("temporary directory");
    let rows = test_split_csv("penguins", dir.path());
    let mut reader = csv::Reader::from_path(&rows).expect("the rows");
    let header = reader.headers().expect("a header").clone();
    let row = reader.records().next().expect("one row").expect("a record");
    let predictor = shared_inference::Predictor::load(&repository().version_dir("penguins")).expect("penguins loads");
    let inputs = predictor
        .schema()
        .features
        .iter()
        .map(|feature| {
            let cell = header.iter().position(|h| h == feature.name).map(|i| &row[i]).expect("the column");
            let (datatype, contents) = match feature.kind {
                ColumnKind::Numeric => (
                    "FP64",
                    InferTensorContents { fp64_contents: vec![cell.parse().unwrap_or(f64::NAN)], ..Default::default() },
                ),
                ColumnKind::Categorical => (
                    "BYTES",
                    InferTensorContents { bytes_contents: vec![cell.as_bytes().to_vec()], ..Default::default() },
                ),
            };
            InferInputTensor {
                name: feature.name.clone(),
                datatype: datatype.to_string(),
                shape: vec![1],
                contents: Some(contents),
                ..Default::default()
            }
        })
        .collect();
    ModelInferRequest { model_name: "penguins".to_string(), inputs, ..Default::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime")
}

/// A message over `--max-body-bytes` is refused as soon as its prefix declares it (the bytes
/// never come), with HTTP's 413 text and RESOURCE_EXHAUSTED, not tonic's OUT_OF_RANGE; one whose
/// bytes really are over the cap is refused the same way; one under it is answered; the
/// rejections are counted in the metrics under `protocol="grpc"`.
#[test]
fn a_grpc_message_over_the_body_cap_is_refused_from_its_prefix_with_https_error() {
    let server = Server::start(&repository().root, &["--grpc-addr", "127.0.0.1:0", "--max-body-bytes", "4096"]);
    let grpc = server.grpc_addr.expect("gRPC address");
    let request = penguins_request();
    runtime().block_on(async {
        let mut sender = connect(grpc).await;
        // 1 GiB declared, 5 bytes sent, the body left open.
        let (body, response) = start_call(&mut sender, "ModelInfer");
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&(1u32 << 30).to_be_bytes());
        body.send(Bytes::from(prefix)).expect("send the prefix");
        let refused = outcome_within(response, Duration::from_secs(5), "refused without waiting for the bytes").await;
        assert_eq!(refused.code, RESOURCE_EXHAUSTED, "{refused:?}");
        assert_eq!(refused.message, "request body is larger than the limit of 4096 bytes (see --max-body-bytes)");
        drop(body);

        // Really over it: the request padded past 4096 bytes.
        let padded = ModelInferRequest { id: "x".repeat(5000), ..request.clone() };
        let refused = whole_call(&mut sender, &padded).await;
        assert_eq!(refused.code, RESOURCE_EXHAUSTED, "{refused:?}");
        assert!(refused.message.contains("limit of 4096 bytes"), "{refused:?}");

        // Under it: answered.
        let answered = whole_call(&mut sender, &request).await;
        assert_eq!(answered.code, OK, "{answered:?}");
        let message = ModelInferResponse::decode(&answered.body[5..]).expect("a ModelInferResponse");
        assert_eq!(message.model_name, "penguins");
        assert!(!message.raw_output_contents.is_empty());
    });
    let crate::support::Outcome::Answered(metrics) = send(server.addr, "GET", "/metrics", &[], b"") else {
        panic!("/metrics is not answered")
    };
    let metrics = String::from_utf8(metrics.body).expect("text");
    assert!(
        metrics.lines().any(|l| l.contains("protocol=\"grpc\",outcome=\"client_error\"") && l.ends_with(" 2")),
        "the two refusals are counted:\n{metrics}"
    );
}

/// A body that stops half-way gets DEADLINE_EXCEEDED with HTTP's text once
/// `--body-timeout-seconds` has passed, and not much later.
#[test]
fn a_stalled_grpc_body_gets_deadline_exceeded_within_the_body_timeout() {
    let server = Server::start(&repository().root, &["--grpc-addr", "127.0.0.1:0", "--body-timeout-seconds", "1"]);
    let grpc = server.grpc_addr.expect("gRPC address");
    let whole = framed(&penguins_request());
    runtime().block_on(async {
        let mut sender = connect(grpc).await;
        let started = Instant::now();
        let (body, response) = start_call(&mut sender, "ModelInfer");
        body.send(Bytes::copy_from_slice(&whole[..whole.len() / 2])).expect("send half");
        let stalled = outcome_within(response, Duration::from_secs(5), "the body timeout and a margin").await;
        let waited = started.elapsed();
        assert_eq!(stalled.code, DEADLINE_EXCEEDED, "{stalled:?}");
        assert_eq!(stalled.message, "the request body did not arrive within 1 s (see --body-timeout-seconds)");
        assert!(waited >= Duration::from_millis(900), "answered after {waited:?}, before the timeout");
        drop(body);
    });
}

/// SIGTERM while a call is half-sent: the server keeps the call, which finishes with its answer
/// once the rest arrives; the connection then closes (GOAWAY) and the server exits 0, long
/// before the drain window ends.
#[test]
fn a_grpc_call_in_flight_finishes_across_sigterm_and_the_server_exits_0() {
    let mut server = Server::start(&repository().root, &["--grpc-addr", "127.0.0.1:0", "--drain-seconds", "20"]);
    let grpc = server.grpc_addr.expect("gRPC address");
    let whole = framed(&penguins_request());
    let started = Instant::now();
    runtime().block_on(async {
        let mut sender = connect(grpc).await;
        let (body, response) = start_call(&mut sender, "ModelInfer");
        body.send(Bytes::copy_from_slice(&whole[..10])).expect("send the start");
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.sigterm();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(server.exited().is_none(), "the server exited with a call in flight:\n{}", server.log());
        body.send(Bytes::copy_from_slice(&whole[10..])).expect("send the rest");
        drop(body);
        let answered = outcome(response.await.expect("task").expect("the call in flight is answered")).await;
        assert_eq!(answered.code, OK, "{answered:?}");
        let message = ModelInferResponse::decode(&answered.body[5..]).expect("a ModelInferResponse");
        assert_eq!(message.outputs.len(), message.raw_output_contents.len());
        assert!(!message.outputs.is_empty());
    });
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status; log:\n{}", server.log());
    assert!(started.elapsed() < Duration::from_secs(15), "exited only at the end of the drain window");
    assert!(!server.log().contains("drain window ended"), "{}", server.log());
}

/// `--max-connections` counts HTTP and gRPC connections together: with the HTTP listener holding
/// every slot, a gRPC connection is answered at once with the server's SETTINGS and a GOAWAY
/// whose debug data names the limit; once a slot is free, gRPC calls are answered.
#[test]
fn one_grpc_connection_over_the_shared_limit_gets_a_goaway_naming_it() {
    let server = Server::start(
        &repository().root,
        &["--grpc-addr", "127.0.0.1:0", "--max-connections", "2", "--keep-alive-seconds", "30"],
    );
    let grpc = server.grpc_addr.expect("gRPC address");
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(server.addr).expect("an HTTP connection")).collect();
    // The server counts them once it has accepted them.
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = TcpStream::connect(grpc).expect("connect");
    refused.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut bytes = Vec::new();
    let _ = refused.read_to_end(&mut bytes);
    assert!(bytes.len() > 18, "got {} bytes", bytes.len());
    assert_eq!(bytes[3], 0x4, "a SETTINGS frame first");
    assert_eq!(bytes[9 + 3], 0x7, "then a GOAWAY");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("server has its limit of 2 open connections (see --max-connections)"), "{text}");

    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let request = penguins_request();
    runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut sender = connect(grpc).await;
            let (body, response) = start_call(&mut sender, "ModelInfer");
            let _ = body.send(Bytes::from(framed(&request)));
            drop(body);
            match response.await.expect("task") {
                Ok(response) => {
                    let answered = outcome(response).await;
                    assert_eq!(answered.code, OK, "{answered:?}");
                    return;
                }
                // The slots are given back as the server sees the closes.
                Err(error) => assert!(Instant::now() < deadline, "still refused once slots are free: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
