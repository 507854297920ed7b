//! The command line: `serving serve` (HTTP) and `serving predict` (files). Parsing, wiring and
//! reporting only; the protocol is in `http.rs`, `oip.rs` and `v1.rs`, file scoring in `batch.rs`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use shared_inference::Predictor;

use crate::batch::{self, BatchOptions, Format};
use crate::http::{self, AppState, Limits};
use crate::registry::Registry;

/// Serve models trained by `trainer` over HTTP (Open Inference Protocol v2, KServe v1), or
/// score files offline. CPU only; reads artifacts, never trains.
#[derive(Debug, Parser)]
#[command(name = "serving", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every model version of a repository (<dir>/<name>/<version>/) over HTTP and gRPC.
    Serve(ServeArgs),
    /// Score CSV, JSON Lines or Parquet files with one model, streaming, one output row per input
    /// row; a directory or glob of part files can be split into shards scored by separate
    /// processes.
    Predict(PredictArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A model repository: every <name>/<version>/ below it is served; requests without a
    /// version get the latest. It may also be one model's directory of <version>/ directories,
    /// or one version directory (holding manifest.json), as KServe mounts a model at
    /// /mnt/models; see --model-name.
    #[arg(long, value_name = "DIR", required_unless_present = "model")]
    pub model_repository: Option<PathBuf>,
    /// The name the model is served under when --model-repository is one model's directory or
    /// one version directory (default: the model directory's name). KServe passes the
    /// InferenceService's name here.
    #[arg(long, value_name = "NAME", requires = "model_repository")]
    pub model_name: Option<String>,
    /// Serve only this version directory (<repository>/<name>/<version>); repeatable. Without
    /// --model-repository, what is served never changes.
    #[arg(long, value_name = "DIR")]
    pub model: Vec<PathBuf>,
    /// How the repository's contents reach the server after start-up: `poll` rescans it (and
    /// serving.toml) every --poll-interval-seconds; `explicit` changes only through
    /// POST /v2/repository/models/<name>/load and .../unload; `none` loads it once.
    #[arg(long, value_enum, default_value = "poll")]
    pub model_control: crate::repository::ModelControl,
    /// Seconds between two scans of the repository in `poll` mode.
    #[arg(long, default_value_t = 2.0)]
    pub poll_interval_seconds: f64,
    /// `explicit` mode: load this model at start (repeatable; default: every model).
    #[arg(long, value_name = "NAME")]
    pub load_model: Vec<String>,
    /// Address to listen on. Loopback by default: expose it deliberately.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
    /// Where the Open Inference Protocol over gRPC (inference.GRPCInferenceService) listens: an
    /// address, or a bare port for loopback (`8001` is 127.0.0.1:8001); `off` serves no gRPC.
    /// Loopback by default, like --addr. The same models, limits, tokens, TLS and metrics as HTTP.
    #[arg(long, value_name = "ADDR|PORT|off", default_value = "127.0.0.1:8001")]
    pub grpc_addr: GrpcAddr,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Inference requests processed at once; requests beyond it get 503 instead of queueing.
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: usize,
    /// Threads that run forward passes, fed in arrival order (default: one per available CPU).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub inference_threads: usize,
    /// Requests with a body of at most this many bytes are answered on the I/O thread that read
    /// them instead of being handed to an inference thread (the hand-off costs more than their
    /// work); 0 hands every request over. Only handed-over requests are subject to the timeout.
    #[arg(long, default_value_t = crate::http::DEFAULT_INLINE_MAX_BYTES)]
    pub inline_max_bytes: usize,
    /// Time limit, in milliseconds, of a request handed to the inference threads (see
    /// --inline-max-bytes); slower requests get 503.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_millis: u64,
    /// On SIGTERM/SIGINT: readiness turns 503, new requests get 503 with `Connection: close`,
    /// requests in flight finish; the server exits (status 0) once every connection has closed
    /// or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 30)]
    pub drain_seconds: u64,
    /// A connection must send a complete request head within this many seconds of its first
    /// byte (and finish a TLS handshake within it), or it is closed.
    #[arg(long, default_value_t = 10)]
    pub header_timeout_seconds: u64,
    /// A request body must arrive within this many seconds of its head, or the request gets 408
    /// and the connection is closed.
    #[arg(long, default_value_t = 30)]
    pub body_timeout_seconds: u64,
    /// A connection that sends nothing for this many seconds after its last response (or after
    /// opening) is closed.
    #[arg(long, default_value_t = 5)]
    pub keep_alive_seconds: u64,
    /// Open connections at most; one more is answered at once with 503 and closed. Lowered to
    /// fit the process's open-file limit (`ulimit -n`) when that is smaller.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Bytes of request bodies held while they arrive, summed over all connections; a body that
    /// would go past it gets 503. Bounds what slow or stalled senders can make the server hold.
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    pub max_buffered_body_bytes: usize,
    /// Bearer tokens with scopes (TOML; see the README's "Access control"). Without it every
    /// endpoint is open. Tokens are never accepted on the command line.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Require a token with the `metrics` scope for /metrics (open by default, for scrapers).
    #[arg(long, requires = "tokens")]
    pub protect_metrics: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_certificate: Option<PathBuf>,
    /// The private key (PEM) of --tls-certificate.
    #[arg(long, value_name = "FILE", requires = "tls_certificate")]
    pub tls_key: Option<PathBuf>,
    /// Stop at start-up if any model version fails to load (by default it is reported and
    /// skipped, and the other models are served).
    #[arg(long)]
    pub strict: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The model's version directory (<repository>/<name>/<version>).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// What to score: a file (.csv, .jsonl, .parquet), a directory of part files (as Spark and
    /// Hive write them; walked in full, hidden and _-prefixed entries skipped), a glob in quotes
    /// ("data/part-*.parquet"), or - for standard input (CSV or JSON Lines; needs --format).
    #[arg(long, value_name = "PATH")]
    pub input: String,
    /// Where to write: a file (.csv, .jsonl, .parquet), or - for standard output (the default).
    /// When --input names a directory or a glob, a directory: each input file gets an output
    /// file at the same relative path, with the output format's extension.
    #[arg(long, value_name = "PATH", default_value = "-")]
    pub output: String,
    /// Format of whichever side has no telling extension: standard input and output, input files
    /// without an extension, and the files of an output directory (default there: the input's).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Copy this input column to the output beside the predictions; repeatable. From Parquet to
    /// Parquet it keeps its type exactly.
    #[arg(long, value_name = "COLUMN")]
    pub keep: Vec<String>,
    /// Score only this share of the input files: those whose position in the sorted list, modulo
    /// COUNT, is INDEX. COUNT runs with INDEX 0 to COUNT-1 score every file exactly once.
    #[arg(long, value_name = "INDEX/COUNT", conflicts_with = "shard_count")]
    pub shard: Option<crate::files::Shard>,
    /// Like --shard, with the index taken from JOB_COMPLETION_INDEX, which Kubernetes sets in
    /// each pod of an Indexed Job (give the Job's `completions` here).
    #[arg(long, value_name = "COUNT")]
    pub shard_count: Option<usize>,
    /// Rows scored per forward pass; memory grows with it, not with the file.
    #[arg(long, default_value_t = 4096)]
    pub chunk_rows: usize,
    /// Draw no progress bar (one is drawn only when stderr is a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// Exit status of `serving predict` when some rows could not be scored.
pub const EXIT_ROWS_FAILED: u8 = 3;

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(args) => serve(args).map(|()| 0),
        Command::Predict(args) => predict(args),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let started = std::time::Instant::now();
    let repository = match &args.model_repository {
        Some(root) => {
            if !args.model.is_empty() {
                bail!("--model DIR serves a fixed set of versions; give either it or --model-repository");
            }
            let layout = crate::repository::Layout::detect(root, args.model_name.as_deref())?;
            if layout != crate::repository::Layout::Repository {
                tracing::info!(?layout, root = %root.display(), "serving one model's files");
            }
            crate::repository::Repository::open_as(root, layout, args.model_control, args.strict, &args.load_model)?
        }
        None => {
            let mut registry = Registry::default();
            for dir in &args.model {
                registry.load_version(dir)?;
            }
            crate::repository::Repository::fixed(registry)
        }
    };
    if !(args.poll_interval_seconds.is_finite() && args.poll_interval_seconds >= 0.05) {
        bail!("--poll-interval-seconds must be at least 0.05, got {}", args.poll_interval_seconds);
    }
    let repository = std::sync::Arc::new(repository);
    repository
        .start_polling(Duration::from_secs_f64(args.poll_interval_seconds))
        .context("starting the repository poller")?;
    let registry = repository.registry();
    for failure in registry.failures() {
        tracing::error!(
            model = failure.model,
            version = failure.version,
            dir = %failure.dir.display(),
            reason = failure.reason,
            "model version not loaded; serving the others (--strict stops instead)"
        );
    }
    let tokens = match &args.tokens {
        Some(path) => crate::auth::Tokens::load(path)?,
        None => crate::auth::Tokens::default(),
    };
    for addr in std::iter::once(args.addr).chain(args.grpc_addr.0) {
        if tokens.is_empty() && !addr.ip().is_loopback() {
            tracing::warn!(
                addr = %addr,
                "listening on a non-loopback address with no access control: anyone who can reach it can \
                 predict and read metadata (see --tokens)"
            );
        }
    }
    let tls = |protocol: &[u8]| match (&args.tls_certificate, &args.tls_key) {
        (Some(certificate), Some(key)) => crate::tls::acceptor(certificate, key, protocol).map(Some),
        _ => Ok(None),
    };
    let (http_tls, grpc_tls) = (tls(crate::tls::HTTP1)?, tls(crate::tls::HTTP2)?);
    let max_connections = match crate::server::open_files_limit() {
        Some(files) if args.max_connections + crate::server::RESERVED_DESCRIPTORS > files => {
            let fitted = files.saturating_sub(crate::server::RESERVED_DESCRIPTORS).max(1);
            tracing::warn!(
                requested = args.max_connections,
                open_files_limit = files,
                max_connections = fitted,
                "--max-connections lowered to fit the open-file limit; raise `ulimit -n` to allow more"
            );
            fitted
        }
        _ => args.max_connections.max(1),
    };
    for model in registry.all() {
        tracing::info!(
            model = model.name,
            version = model.version,
            task = model.predictor.schema().task.as_str(),
            "model loaded"
        );
    }
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_concurrency: args.max_concurrency.max(1),
        timeout: Duration::from_millis(args.timeout_millis.max(1)),
        inference_threads: args.inference_threads,
        inline_max_bytes: args.inline_max_bytes,
        body_timeout: Duration::from_secs(args.body_timeout_seconds.max(1)),
        max_buffered_body_bytes: args.max_buffered_body_bytes.max(args.max_body_bytes.min(1 << 20)),
    };
    let connection_limits = crate::server::ConnectionLimits {
        max_connections,
        header_timeout: Duration::from_secs(args.header_timeout_seconds.max(1)),
        keep_alive: Duration::from_secs(args.keep_alive_seconds.max(1)),
        request_backstop: limits.body_timeout + limits.timeout + Duration::from_secs(30),
    };
    let access = crate::http::Access { tokens, protect_metrics: args.protect_metrics };
    drop(registry);
    tracing::info!(model_control = args.model_control.as_str(), "model repository opened");
    let state = AppState::with_repository(repository, limits, access).context("starting the inference threads")?;
    tracing::info!(threads = state.inference_threads(), "inference threads started");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
        let drain = Duration::from_secs(args.drain_seconds);
        let mut endpoints = vec![crate::server::Endpoint {
            tls: http_tls.clone(),
            listener,
            app: crate::server::App::Http(http::app(state.clone())),
        }];
        if let Some(addr) = args.grpc_addr.0 {
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| {
                    format!("binding --grpc-addr {addr} (gRPC; give another address or port, or `--grpc-addr off`)")
                })?;
            tracing::info!(grpc_addr = %listener.local_addr()?, tls = grpc_tls.is_some(), "grpc listening");
            endpoints.push(crate::server::Endpoint {
                listener,
                app: crate::server::App::Grpc(crate::grpc::GrpcApp::new(state.clone())),
                tls: grpc_tls,
            });
        }
        // Last: a client that reads this line can reach every listener.
        tracing::info!(addr = %endpoints[0].listener.local_addr()?, tls = http_tls.is_some(), startup_millis = started.elapsed().as_millis() as u64, "listening");
        let drained = crate::server::serve(endpoints, state, connection_limits, shutdown_signal(), drain).await;
        if drained.connections_cut > 0 {
            tracing::warn!(
                connections = drained.connections_cut,
                requests_in_progress = drained.requests_cut,
                drain_seconds = drain.as_secs(),
                "drain window ended with connections still open; closing them"
            );
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Where the gRPC service listens, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcAddr(pub Option<SocketAddr>);

impl std::str::FromStr for GrpcAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(GrpcAddr(None));
        }
        if let Ok(port) = text.parse::<u16>() {
            return Ok(GrpcAddr(Some(SocketAddr::from(([127, 0, 0, 1], port)))));
        }
        text.parse()
            .map(|addr| GrpcAddr(Some(addr)))
            .map_err(|e| format!("'{text}' is not an address, a port or `off`: {e}"))
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

fn predict(args: PredictArgs) -> anyhow::Result<u8> {
    let predictor =
        Predictor::load(&args.model).with_context(|| format!("loading the model in {}", args.model.display()))?;
    let shard = match (args.shard, args.shard_count) {
        (Some(shard), _) => shard,
        (None, Some(count)) => {
            let index = std::env::var(crate::files::JOB_COMPLETION_INDEX).ok();
            crate::files::Shard::from_job(count, index.as_deref())?
        }
        (None, None) => crate::files::Shard::ALL,
    };
    // (input, its format, output, its format) for each file this run scores.
    let mut jobs: Vec<(String, Format, String, Format)> = Vec::new();
    if args.input == "-" {
        let input_format = format_for(&args.input, args.format, "--input")?;
        if shard.index == 0 {
            jobs.push(("-".into(), input_format, args.output.clone(), output_format(&args, input_format)?));
        }
    } else {
        let inputs = crate::files::resolve(&args.input, args.format)?;
        let mine = inputs.shard(shard);
        if inputs.several {
            if args.output == "-" {
                bail!("--input {} names several files: --output must be a directory", args.input);
            }
            let dir = PathBuf::from(&args.output);
            if dir.is_file() {
                bail!("--output {}: a file, but --input names several files; give a directory", args.output);
            }
            for file in &mine {
                let format = args.format.unwrap_or(file.format);
                let out = crate::files::output_path(&dir, file, format);
                jobs.push((
                    file.path.to_string_lossy().into_owned(),
                    file.format,
                    out.to_string_lossy().into_owned(),
                    format,
                ));
            }
        } else {
            for file in &mine {
                jobs.push((args.input.clone(), file.format, args.output.clone(), output_format(&args, file.format)?));
            }
        }
        if shard != crate::files::Shard::ALL {
            eprintln!("shard {shard}: {} of {} input files", mine.len(), inputs.files.len());
        }
    }
    let mut total = batch::BatchSummary::default();
    for (input, input_format, output, output_format) in &jobs {
        if jobs.len() > 1 {
            eprintln!("{input} -> {output}");
        }
        let options = BatchOptions {
            input_format: *input_format,
            output_format: *output_format,
            keep: args.keep.clone(),
            chunk_rows: args.chunk_rows,
        };
        let summary =
            score_file(&predictor, input, output, &options, args.quiet).with_context(|| format!("scoring {input}"))?;
        total.rows += summary.rows;
        total.failed += summary.failed;
        for message in summary.first_errors {
            if total.first_errors.len() < batch::ERRORS_KEPT {
                total.first_errors.push(if jobs.len() > 1 { format!("{input}: {message}") } else { message });
            }
        }
    }
    eprintln!("scored {} rows: {} ok, {} failed", total.rows, total.rows - total.failed, total.failed);
    for message in &total.first_errors {
        eprintln!("  {message}");
    }
    if total.failed > total.first_errors.len() {
        eprintln!("  ... and {} more (see the error column)", total.failed - total.first_errors.len());
    }
    Ok(if total.failed > 0 { EXIT_ROWS_FAILED } else { 0 })
}

/// The output format of a single-file run.
fn output_format(args: &PredictArgs, input_format: Format) -> anyhow::Result<Format> {
    if args.output == "-" {
        Ok(args.format.unwrap_or(input_format))
    } else {
        format_for(&args.output, args.format, "--output")
    }
}

/// Scores one input into one output, through a temporary file renamed at the end, so that a
/// failed run leaves no half file and a rerun replaces the output whole.
fn score_file(
    predictor: &Predictor,
    input: &str,
    output: &str,
    options: &BatchOptions,
    quiet: bool,
) -> anyhow::Result<batch::BatchSummary> {
    let temporary = (output != "-").then(|| PathBuf::from(format!("{output}.tmp")));
    if let Some(parent) = temporary.as_ref().and_then(|t| t.parent()).filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let sink: Box<dyn Write + Send> = match &temporary {
        None => Box::new(std::io::stdout()),
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
    };
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} rows scored ({per_sec}, {elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let progress = |rows: usize| {
        if let Some(bar) = &bar {
            bar.set_position(rows as u64);
        }
    };
    let result = if input == "-" {
        batch::score(predictor, std::io::BufReader::with_capacity(1 << 16, std::io::stdin()), sink, options, progress)
    } else {
        let file = std::fs::File::open(input).with_context(|| format!("opening {input}"));
        file.and_then(|file| match options.input_format {
            Format::Parquet => batch::score_parquet(predictor, file, sink, options, progress),
            _ => batch::score(predictor, std::io::BufReader::with_capacity(1 << 16, file), sink, options, progress),
        })
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match (result, &temporary) {
        (Err(error), Some(path)) => {
            let _ = std::fs::remove_file(path);
            Err(error)
        }
        (Err(error), None) => Err(error),
        (Ok(summary), Some(path)) => {
            std::fs::rename(path, output).with_context(|| format!("moving the output into {output}"))?;
            Ok(summary)
        }
        (Ok(summary), None) => Ok(summary),
    }
}

fn format_for(path: &str, flag: Option<Format>, which: &str) -> anyhow::Result<Format> {
    match (Format::from_path(path), flag) {
        (Some(format), _) => Ok(format),
        (None, Some(format)) => Ok(format),
        (None, None) => {
            bail!("{which} {path}: cannot tell the format from the name; pass --format csv, jsonl or parquet")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc_addr(extra: &[&str]) -> Option<SocketAddr> {
        let args = ["serving", "serve", "--model-repository", "models"].iter().chain(extra);
        match Cli::try_parse_from(args).expect("the arguments parse").command {
            Command::Serve(args) => args.grpc_addr.0,
            _ => panic!("not the serve command"),
        }
    }

    #[test]
    fn grpc_listens_on_loopback_8001_unless_told_another_address_a_port_or_off() {
        assert_eq!(grpc_addr(&[]), Some(SocketAddr::from(([127, 0, 0, 1], 8001))));
        assert_eq!(grpc_addr(&["--grpc-addr", "off"]), None);
        assert_eq!(grpc_addr(&["--grpc-addr", "9001"]), Some(SocketAddr::from(([127, 0, 0, 1], 9001))));
        assert_eq!(grpc_addr(&["--grpc-addr", "0.0.0.0:9002"]), Some(SocketAddr::from(([0, 0, 0, 0], 9002))));
        let error = "not-an-address".parse::<GrpcAddr>().expect_err("refused");
        assert!(error.contains("not an address, a port or `off`"), "{error}");
    }
}
