//! Shared fixtures: the workspace's paths, the built binaries, the bundled models trained once
//! per test process, and a minimal HTTP/1.1 client for talking to the real server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use trainer::device::DeviceRequest;
use trainer::{Overrides, RawTrainConfig, TrainConfig, TrainOptions};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// A binary of the workspace, built beside this test executable (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} is not built; build the workspace first (cargo build --workspace)", path.display());
    path
}

/// The recipe's config with its data path made absolute.
pub fn recipe(name: &str, epochs: Option<usize>) -> TrainConfig {
    let root = workspace();
    let raw = RawTrainConfig::from_file(&root.join(format!("configs/{name}.toml"))).expect("bundled recipe parses");
    let data = root.join(&raw.data.path);
    let raw = raw.apply(&Overrides { data: Some(data), epochs, ..Overrides::default() });
    TrainConfig::try_from(raw).expect("bundled recipe is valid")
}

/// A model repository with both bundled models trained on CPU: penguins with its full recipe,
/// diamonds with a few epochs (parity does not need a good model, only the same one).
pub struct Repository {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Repository {
    pub fn version_dir(&self, name: &str) -> PathBuf {
        self.root.join(name).join("1")
    }
}

pub fn repository() -> &'static Repository {
    static REPOSITORY: OnceLock<Repository> = OnceLock::new();
    REPOSITORY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path().join("models");
        let options = TrainOptions { out: root.clone(), device: DeviceRequest::Cpu, progress: false };
        trainer::train(&recipe("penguins", None), &options).expect("penguins trains");
        trainer::train(&recipe("diamonds", Some(4)), &options).expect("diamonds trains");
        Repository { _dir: dir, root }
    })
}

/// The bundled data file's lines (header first) for the recipe's test split, written to a file.
pub fn test_split_csv(name: &str, out: &Path) -> PathBuf {
    let config = recipe(name, None);
    let table = trainer::data::Table::read(&config.data_path).expect("bundled data reads");
    let schema = trainer::pipeline::build_schema(&table, &config).expect("schema");
    let (_, split) = trainer::pipeline::split_rows(&table, &schema, &config).expect("split");
    let text = std::fs::read_to_string(&config.data_path).expect("bundled data reads");
    let lines: Vec<&str> = text.lines().collect();
    let mut csv = String::from(lines[0]);
    csv.push('\n');
    for &row in &split.test {
        // The bundled files have no quoted line breaks: data row r is line r + 1.
        csv.push_str(lines[row + 1]);
        csv.push('\n');
    }
    let path = out.join(format!("{name}-test.csv"));
    std::fs::write(&path, csv).expect("write test split");
    path
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// How a request ended.
#[derive(Debug)]
pub enum Outcome {
    Answered(Response),
    /// The connection failed or closed before any response byte arrived.
    NotAnswered(String),
    /// A response started but was cut off or malformed.
    Broken(String),
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole response.
pub fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Outcome {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return Outcome::NotAnswered(format!("connect: {e}")),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if let Err(e) = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)) {
        return Outcome::NotAnswered(format!("write: {e}"));
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Outcome::NotAnswered(format!("read: {e}"));
    }
    if raw.is_empty() {
        return Outcome::NotAnswered("closed without a response".into());
    }
    parse_response(&raw).map_or_else(Outcome::Broken, Outcome::Answered)
}

/// Reads exactly one response from a connection that may stay open after it (keep-alive).
pub fn read_response(stream: &mut impl std::io::Read) -> Result<Response, String> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let body = &raw[end + 4..];
            let complete = if head.contains("\r\ntransfer-encoding: chunked") {
                body.ends_with(b"0\r\n\r\n")
            } else {
                let length = head
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(Ok(0), |v| v.trim().parse::<usize>())
                    .map_err(|e| format!("bad content-length in {head:?}: {e}"))?;
                body.len() >= length
            };
            if complete {
                return parse_response(&raw);
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => {
                return Err(format!(
                    "connection closed after {} bytes: {:?}",
                    raw.len(),
                    String::from_utf8_lossy(&raw)
                ));
            }
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "read failed after {} bytes ({e}): {:?}",
                    raw.len(),
                    String::from_utf8_lossy(&raw)
                ));
            }
        }
    }
}

/// Parses one whole response (head and body, chunked or with a `Content-Length`).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    let mut body = raw[split + 4..].to_vec();
    let find = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(length) = find("content-length") {
        let length: usize = length.parse().map_err(|_| "bad content-length")?;
        if body.len() != length {
            return Err(format!("body has {} bytes, content-length says {length}", body.len()));
        }
    }
    Ok(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).map_err(|e| e.to_string())?.trim(), 16)
            .map_err(|e| e.to_string())?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), Into::into)
}

/// Builds `package` in release mode by itself, as it ships, into its own target directory (so
/// the workspace's unified features cannot leak in), and returns the binary.
pub fn build_alone(manifest: &Path, package: &str, target: &Path) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", package, "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p {package} --release failed");
    target.join("release").join(package)
}

/// The `serving` binary exactly as it ships: `cargo build -p serving --release` on its own.
/// Cargo's lock on the target directory serializes tests that ask for it at the same time.
pub fn shipped_serving() -> PathBuf {
    build_alone(&workspace().join("Cargo.toml"), "serving", &target_dir().join("serving-alone"))
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A `serving serve` process, killed when dropped if it is still running.
pub struct Server {
    child: Child,
    /// Where to reach it: the address it logged, with an unspecified IP replaced by 127.0.0.1.
    pub addr: SocketAddr,
    /// Where its gRPC service listens, when `--grpc-addr` was given.
    pub grpc_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server on `root` with JSON logs and these extra arguments (`--addr
    /// 127.0.0.1:0` unless they give an address), and waits for its "listening" line.
    pub fn start(root: &Path, args: &[&str]) -> Self {
        Self::start_with_env(root, args, &[])
    }

    pub fn start_with_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary("serving"));
        command.args(["serve", "--log-format", "json", "--model-repository"]).arg(root);
        if !args.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        // gRPC listens on 127.0.0.1:8001 by default, which servers running side by side would
        // share: only the tests that ask for it get it, on a port of their own.
        if !args.contains(&"--grpc-addr") {
            command.args(["--grpc-addr", "off"]);
        }
        command.args(args).env_remove("RUST_LOG").envs(env.iter().copied());
        let mut child =
            command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("the serving binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&log);
        std::thread::spawn(move || {
            // The gRPC line comes first: "listening" is logged once both listeners are bound.
            let mut grpc = None;
            let reachable = |mut addr: SocketAddr| {
                if addr.ip().is_unspecified() {
                    addr.set_ip([127, 0, 0, 1].into());
                }
                addr
            };
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry = serde_json::from_str::<Value>(&line).ok();
                let field = |message: &str, key: &str| {
                    entry
                        .as_ref()
                        .and_then(|e| (e["message"] == message).then(|| e[key].as_str()?.parse::<SocketAddr>().ok())?)
                };
                if let Some(addr) = field("grpc listening", "grpc_addr") {
                    grpc = Some(reachable(addr));
                }
                let listening = field("listening", "addr");
                writer.lock().expect("log lock").push(line);
                if let Some(addr) = listening {
                    let _ = tx.send((reachable(addr), grpc));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((addr, grpc_addr)) => Self { child, addr, grpc_addr, log },
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().expect("log lock").join("\n");
                panic!("serving {args:?} did not log its address ({error}); its log:\n{log}");
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// The log entries, parsed (every line of `--log-format json` is one JSON object).
    pub fn entries(&self) -> Vec<Value> {
        let lines = self.log.lock().expect("log lock").clone();
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?} is not JSON: {e}")))
            .collect()
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// The exit status, if the server has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait on the server")
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on the server") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit within {limit:?}; its log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
