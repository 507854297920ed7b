//! The deployment files in `deploy/` against the binary they deploy, so that neither drifts from
//! the other: every flag a manifest passes is one the subcommand's `--help` lists; the container
//! port, `--addr`, the Service, the probes and the scrape annotation name one port; the probe and
//! scrape paths answer 200 on a real server; the termination grace period outlasts the preStop
//! sleep and the drain; the Dockerfile runs the binary on distroless as a non-root user; the
//! release binary needs no shared object or glibc version the runtime image lacks; the KServe
//! runtime and InferenceService agree with each other and with the artifact format; the Indexed
//! Job shards by completion index.
//!
//! Every YAML document of `deploy/**/*.yaml` is read, so a manifest added later is checked too.
//! No container runtime or cluster is needed: the files are parsed and compared with what the
//! binary says of itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;

use crate::support::{Outcome, binary, repository, send, workspace};

/// The paths the probes must use: the Open Inference Protocol's health endpoints.
const READINESS_PATH: &str = "/v2/health/ready";
const LIVENESS_PATH: &str = "/v2/health/live";
/// KServe routes a runtime's HTTP traffic to this container port.
const KSERVE_HTTP_PORT: u16 = 8080;
/// KServe's gRPC port for runtimes (its Python SDK's `DEFAULT_GRPC_PORT`).
const KSERVE_GRPC_PORT: u16 = 8081;
/// Where KServe's storage initializer puts an InferenceService's storageUri.
const KSERVE_MODEL_DIR: &str = "/mnt/models";

fn deploy_dir() -> PathBuf {
    workspace().join("deploy")
}

// ---- the manifests ----------------------------------------------------------------------------

/// One YAML document of a file under `deploy/`.
struct Manifest {
    /// The file, relative to the workspace.
    file: String,
    value: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("<no kind>")
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("<no name>")
    }

    fn describe(&self) -> String {
        format!("{}: {} {}", self.file, self.kind(), self.name())
    }

    /// The pod template's metadata (labels, annotations) and the pod spec, for kinds that run
    /// containers. A KServe runtime holds both in its `spec`.
    fn pod(&self) -> Option<(&Value, &Value)> {
        let v = &self.value;
        match self.kind() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                Some((&v["spec"]["template"]["metadata"], &v["spec"]["template"]["spec"]))
            }
            "CronJob" => {
                let template = &v["spec"]["jobTemplate"]["spec"]["template"];
                Some((&template["metadata"], &template["spec"]))
            }
            "Pod" => Some((&v["metadata"], &v["spec"])),
            "ClusterServingRuntime" | "ServingRuntime" => Some((&v["spec"], &v["spec"])),
            _ => None,
        }
    }

    fn containers(&self) -> Vec<Container<'_>> {
        let Some((meta, pod)) = self.pod() else { return Vec::new() };
        ["initContainers", "containers"]
            .iter()
            .filter_map(|key| pod[*key].as_sequence())
            .flatten()
            .map(|spec| Container { manifest: self, meta, pod, spec })
            .collect()
    }
}

/// Every YAML document of `deploy/**/*.yaml` (and `.yml`), files in name order.
fn manifests() -> Vec<Manifest> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no YAML file under {}", deploy_dir().display());
    let root = workspace();
    let mut manifests = Vec::new();
    for path in files {
        let file = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{file}: YAML document {} does not parse: {e}", index + 1));
            if !value.is_null() {
                manifests.push(Manifest { file: file.clone(), value });
            }
        }
    }
    manifests
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn of_kind<'a>(manifests: &'a [Manifest], kinds: &[&str]) -> Vec<&'a Manifest> {
    let found: Vec<&Manifest> = manifests.iter().filter(|m| kinds.contains(&m.kind())).collect();
    assert!(!found.is_empty(), "no {} among the manifests under deploy/", kinds.join(" or "));
    found
}

/// A container of a manifest's pod spec.
struct Container<'a> {
    manifest: &'a Manifest,
    /// The pod template's metadata (labels, annotations).
    meta: &'a Value,
    pod: &'a Value,
    spec: &'a Value,
}

impl Container<'_> {
    fn describe(&self) -> String {
        format!("{}, container {}", self.manifest.describe(), self.spec["name"].as_str().unwrap_or("<no name>"))
    }

    /// `command` then `args`: what the container runs, with the image's ENTRYPOINT (the binary)
    /// in front when `command` is not given.
    fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        for key in ["command", "args"] {
            let Some(items) = self.spec[key].as_sequence() else { continue };
            for item in items {
                match item.as_str() {
                    Some(word) => words.push(word.to_string()),
                    None => panic!(
                        "{}: {key} holds {item:?}, which is not a string (Kubernetes wants strings)",
                        self.describe()
                    ),
                }
            }
        }
        words
    }

    /// The subcommand it runs and the words after it.
    fn invocation(&self) -> (String, Vec<String>) {
        let mut words = self.words();
        if self.spec["command"].as_sequence().is_some() {
            let program = words.first().cloned().unwrap_or_default();
            assert!(
                program.rsplit('/').next() == Some("serving"),
                "{}: command starts with {program:?}, expected the serving binary (the image has no shell)",
                self.describe()
            );
            words.remove(0);
        }
        assert!(!words.is_empty(), "{}: runs no subcommand (command/args are empty)", self.describe());
        let subcommand = words.remove(0);
        (subcommand, words)
    }

    fn runs(&self, subcommand: &str) -> bool {
        self.invocation().0 == subcommand
    }

    /// The port the server listens on, from `--addr`, which must be given.
    fn addr_port(&self) -> u16 {
        let (_, words) = self.invocation();
        let addr = flag_value(&words, "--addr").unwrap_or_else(|| {
            panic!(
                "{}: passes no --addr (the default, 127.0.0.1:8000, is unreachable from outside the pod)",
                self.describe()
            )
        });
        addr.parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("{}: --addr {addr:?} is not an address: {e}", self.describe()))
            .port()
    }

    /// The port of `--grpc-addr` (an address or a bare port), if the container serves gRPC.
    fn grpc_port(&self) -> Option<u16> {
        let (_, words) = self.invocation();
        let value = flag_value(&words, "--grpc-addr")?;
        if value == "off" {
            return None;
        }
        let port = value.parse::<u16>().ok().or_else(|| value.parse::<SocketAddr>().ok().map(|a| a.port()));
        Some(port.unwrap_or_else(|| panic!("{}: --grpc-addr {value:?} is not an address or a port", self.describe())))
    }

    /// Whether the container declares this container port.
    fn declares_port(&self, port: u16) -> bool {
        self.spec["ports"].as_sequence().into_iter().flatten().any(|p| as_port(&p["containerPort"]) == Some(port))
    }

    /// The serving port: the only port, or the one named `http`.
    fn container_port(&self) -> u16 {
        let ports = self.spec["ports"].as_sequence().map(Vec::as_slice).unwrap_or_default();
        let port = match ports {
            [] => panic!("{}: declares no container port", self.describe()),
            [only] => only,
            many => many
                .iter()
                .find(|p| p["name"].as_str() == Some("http"))
                .unwrap_or_else(|| panic!("{}: several ports and none named http", self.describe())),
        };
        as_port(&port["containerPort"])
            .unwrap_or_else(|| panic!("{}: containerPort {:?} is not a port", self.describe(), port["containerPort"]))
    }

    /// A probe's or a Service's port (a number, or the name of one of this container's ports).
    fn resolve_port(&self, port: &Value) -> Option<u16> {
        match port {
            Value::String(name) => self.spec["ports"]
                .as_sequence()?
                .iter()
                .find(|p| p["name"].as_str() == Some(name.as_str()))
                .and_then(|p| as_port(&p["containerPort"])),
            other => as_port(other),
        }
    }

    /// The value of a security setting: the container's, else the pod's.
    fn security(&self, key: &str) -> &Value {
        let own = &self.spec["securityContext"][key];
        if own.is_null() { &self.pod["securityContext"][key] } else { own }
    }
}

fn as_port(value: &Value) -> Option<u16> {
    value.as_u64().and_then(|p| u16::try_from(p).ok())
}

/// The flags among the words (`--name` or `--name=value`), as `--name`.
fn flags(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split_once('=').map_or(w.as_str(), |(name, _)| name).to_string())
        .collect()
}

/// The value given to `flag` (`--flag value` or `--flag=value`), the last one if repeated.
fn flag_value(words: &[String], flag: &str) -> Option<String> {
    let mut found = None;
    for (i, word) in words.iter().enumerate() {
        if let Some(value) = word.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
            found = Some(value.to_string());
        } else if word == flag {
            found = words.get(i + 1).filter(|next| !next.starts_with("--")).cloned();
        }
    }
    found
}

fn flag_number(container: &Container<'_>, words: &[String], flag: &str) -> u64 {
    let value = flag_value(words, flag).unwrap_or_else(|| panic!("{}: passes no {flag} value", container.describe()));
    value.parse().unwrap_or_else(|e| panic!("{}: {flag} {value:?} is not a whole number: {e}", container.describe()))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector.as_mapping().is_some_and(|wanted| !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v))
}

// ---- the binary -------------------------------------------------------------------------------

/// What `serving <args> --help` prints.
fn help(args: &[&str]) -> String {
    let output = Command::new(binary("serving")).args(args).arg("--help").output().expect("serving runs");
    assert!(output.status.success(), "serving {args:?} --help failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The long flags of an options list: the `--name` words that open an option line (indented
/// at most 6 spaces; descriptions are indented further).
fn help_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') || line.len() - trimmed.len() > 6 {
            continue;
        }
        for word in trimmed.split_whitespace().map(|w| w.trim_end_matches(',')) {
            if !word.starts_with('-') {
                break;
            }
            if word.starts_with("--") {
                flags.insert(word.to_string());
            }
        }
    }
    flags
}

/// The subcommands `serving --help` lists.
fn subcommands() -> BTreeSet<String> {
    let text = help(&[]);
    let commands = text.split("Commands:").nth(1).expect("serving --help lists its commands");
    commands
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A problem for each flag in `words` that `serving <subcommand> --help` does not list.
fn unknown_flags(
    where_: &str,
    subcommand: &str,
    words: &[String],
    known: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let Some(listed) = known.get(subcommand) else {
        return vec![format!(
            "{where_}: runs `serving {subcommand}`, not a subcommand of serving (its --help lists {:?})",
            known.keys().collect::<Vec<_>>()
        )];
    };
    flags(words)
        .into_iter()
        .filter(|flag| !listed.contains(flag))
        .map(|flag| format!("{where_}: passes {flag}, which `serving {subcommand} --help` does not list"))
        .collect()
}

fn known_flags() -> BTreeMap<String, BTreeSet<String>> {
    subcommands().into_iter().filter(|c| c != "help").map(|c| (c.clone(), help_flags(&help(&[&c])))).collect()
}

#[test]
fn every_flag_a_manifest_passes_is_in_the_subcommands_help() {
    let known = known_flags();
    assert!(
        known.get("serve").is_some_and(|f| f.contains("--addr"))
            && known.get("predict").is_some_and(|f| f.contains("--model")),
        "the help parser found no flags: {known:?}"
    );
    let manifests = manifests();
    let mut checked = 0;
    let mut problems = Vec::new();
    for manifest in &manifests {
        for container in manifest.containers() {
            let (subcommand, words) = container.invocation();
            problems.extend(unknown_flags(&container.describe(), &subcommand, &words, &known));
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "found only {checked} containers under deploy/ (expected the Deployment, the KServe runtime and the Job)"
    );
    assert!(problems.is_empty(), "flags the binary does not have:\n  {}", problems.join("\n  "));
}

// ---- ports, probes, scraping ------------------------------------------------------------------

#[test]
fn deployment_port_addr_service_probes_and_scrape_annotation_agree() {
    let manifests = manifests();
    let services = of_kind(&manifests, &["Service"]);
    for deployment in of_kind(&manifests, &["Deployment"]) {
        let servers: Vec<Container<'_>> = deployment.containers().into_iter().filter(|c| c.runs("serve")).collect();
        assert!(!servers.is_empty(), "{}: no container runs `serving serve`", deployment.describe());
        for server in servers {
            let port = server.container_port();
            let where_ = server.describe();
            assert_eq!(server.addr_port(), port, "{where_}: the --addr port against the container port");
            for (probe, path) in [("readinessProbe", READINESS_PATH), ("livenessProbe", LIVENESS_PATH)] {
                let get = &server.spec[probe]["httpGet"];
                assert_eq!(get["path"].as_str(), Some(path), "{where_}: {probe} path");
                assert_eq!(
                    server.resolve_port(&get["port"]),
                    Some(port),
                    "{where_}: {probe} port {:?} against the container port",
                    get["port"]
                );
            }
            let annotations = &server.meta["annotations"];
            assert_eq!(
                annotations["prometheus.io/scrape"].as_str(),
                Some("true"),
                "{where_}: pod annotation prometheus.io/scrape"
            );
            assert_eq!(
                annotations["prometheus.io/path"].as_str(),
                Some("/metrics"),
                "{where_}: pod annotation prometheus.io/path"
            );
            assert_eq!(
                annotations["prometheus.io/port"].as_str().and_then(|p| p.parse::<u16>().ok()),
                Some(port),
                "{where_}: pod annotation prometheus.io/port ({:?}) against the container port",
                annotations["prometheus.io/port"]
            );
            let grpc = server.grpc_port();
            if let Some(grpc) = grpc {
                assert!(server.declares_port(grpc), "{where_}: --grpc-addr port {grpc} is not a container port");
            }
            let selecting: Vec<&&Manifest> = services
                .iter()
                .filter(|s| labels_match(&s.value["spec"]["selector"], &server.meta["labels"]))
                .collect();
            assert!(!selecting.is_empty(), "{where_}: no Service selects the pod labels {:?}", server.meta["labels"]);
            let mut grpc_exposed = false;
            for service in selecting {
                for service_port in service.value["spec"]["ports"].as_sequence().into_iter().flatten() {
                    let target = &service_port["targetPort"];
                    let target = if target.is_null() { &service_port["port"] } else { target };
                    let resolved = server.resolve_port(target);
                    grpc_exposed |= grpc.is_some() && resolved == grpc;
                    assert!(
                        resolved == Some(port) || (grpc.is_some() && resolved == grpc),
                        "{}: targetPort {target:?} is neither the HTTP port {port} nor the gRPC port {grpc:?} of {where_}",
                        service.describe()
                    );
                }
            }
            assert!(grpc.is_none() || grpc_exposed, "{where_}: serves gRPC on {grpc:?}, which no Service exposes");
        }
    }
}

#[test]
fn autoscaler_and_disruption_budget_target_the_deployment() {
    let manifests = manifests();
    let deployments = of_kind(&manifests, &["Deployment"]);
    for hpa in of_kind(&manifests, &["HorizontalPodAutoscaler"]) {
        assert_eq!(hpa.value["apiVersion"].as_str(), Some("autoscaling/v2"), "{}: apiVersion", hpa.describe());
        let target = &hpa.value["spec"]["scaleTargetRef"];
        let deployment = deployments
            .iter()
            .find(|d| target["kind"].as_str() == Some("Deployment") && target["name"].as_str() == Some(d.name()))
            .unwrap_or_else(|| {
                panic!("{}: scaleTargetRef {target:?} names no Deployment under deploy/", hpa.describe())
            });
        let cpu = hpa.value["spec"]["metrics"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|m| m["resource"]["name"].as_str() == Some("cpu"))
            .unwrap_or_else(|| panic!("{}: no CPU metric", hpa.describe()));
        assert_eq!(
            cpu["resource"]["target"]["type"].as_str(),
            Some("Utilization"),
            "{}: CPU target type",
            hpa.describe()
        );
        // Utilisation is measured against the request: without one the autoscaler cannot scale.
        for container in deployment.containers() {
            assert!(
                !container.spec["resources"]["requests"]["cpu"].is_null(),
                "{}: no CPU request, which {} needs to compute utilisation",
                container.describe(),
                hpa.describe()
            );
        }
        let min = hpa.value["spec"]["minReplicas"].as_u64().unwrap_or(1);
        assert!(
            deployment.value["spec"]["replicas"].is_null(),
            "{}: sets replicas, which {} owns (every apply would reset it)",
            deployment.describe(),
            hpa.describe()
        );
        for pdb in of_kind(&manifests, &["PodDisruptionBudget"]) {
            assert_eq!(pdb.value["apiVersion"].as_str(), Some("policy/v1"), "{}: apiVersion", pdb.describe());
            let labels = &deployment.value["spec"]["template"]["metadata"]["labels"];
            assert!(
                labels_match(&pdb.value["spec"]["selector"]["matchLabels"], labels),
                "{}: selector {:?} does not select the pods of {} (labels {labels:?})",
                pdb.describe(),
                pdb.value["spec"]["selector"],
                deployment.describe()
            );
            if let Some(min_available) = pdb.value["spec"]["minAvailable"].as_u64() {
                assert!(
                    min_available < min,
                    "{}: minAvailable {min_available} with {} minReplicas {min}: no pod could ever be evicted",
                    pdb.describe(),
                    hpa.describe()
                );
            }
        }
    }
}

/// A `serving serve` process, killed when dropped.
struct RunningServer {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RunningServer {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn probe_and_scrape_paths_of_the_manifests_answer_200_on_a_real_server() {
    let manifests = manifests();
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for manifest in &manifests {
        for container in manifest.containers().into_iter().filter(|c| c.runs("serve")) {
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(path) = container.spec[probe]["httpGet"]["path"].as_str() {
                    paths.entry(path.to_string()).or_insert_with(|| format!("{} {probe}", container.describe()));
                }
            }
            for key in ["prometheus.io/path", "prometheus.kserve.io/path"] {
                if let Some(path) = container.meta["annotations"][key].as_str() {
                    paths
                        .entry(path.to_string())
                        .or_insert_with(|| format!("{} annotation {key}", container.describe()));
                }
            }
        }
    }
    for expected in [READINESS_PATH, LIVENESS_PATH, "/metrics"] {
        assert!(paths.contains_key(expected), "no manifest probes or scrapes {expected}; found {paths:?}");
    }

    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = dir.path().join("serving.log");
    let child = Command::new(binary("serving"))
        .args(["serve", "--model-repository"])
        .arg(&repository().root)
        .args(["--addr", &addr.to_string(), "--grpc-addr", "off"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("the serving binary starts");
    let mut server = RunningServer { child, log, _dir: dir };

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Outcome::Answered(r) = send(addr, "GET", READINESS_PATH, &[], b"")
            && r.status == 200
        {
            break;
        }
        if let Some(status) = server.child.try_wait().expect("wait on the server") {
            panic!("serving exited ({status}) before it was ready; its log:\n{}", server.log());
        }
        assert!(Instant::now() < deadline, "serving on {addr} not ready within 20 s; its log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    for (path, source) in &paths {
        match send(addr, "GET", path, &[], b"") {
            Outcome::Answered(r) => assert_eq!(
                r.status,
                200,
                "GET {path} (from {source}): expected 200, got {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            other => panic!("GET {path} (from {source}): no answer: {other:?}; server log:\n{}", server.log()),
        }
    }
}

// ---- shutdown ---------------------------------------------------------------------------------

#[test]
fn termination_grace_period_outlasts_pre_stop_sleep_plus_drain_seconds() {
    let manifests = manifests();
    for deployment in of_kind(&manifests, &["Deployment"]) {
        for server in deployment.containers().into_iter().filter(|c| c.runs("serve")) {
            let where_ = server.describe();
            let (_, words) = server.invocation();
            let drain = flag_number(&server, &words, "--drain-seconds");
            let pre_stop = &server.spec["lifecycle"]["preStop"];
            assert!(
                pre_stop["exec"].is_null(),
                "{where_}: preStop runs a command, but the image has no shell and no sleep; use preStop.sleep"
            );
            let sleep = pre_stop["sleep"]["seconds"].as_u64().unwrap_or_else(|| {
                panic!("{where_}: no lifecycle.preStop.sleep.seconds, so SIGTERM can arrive before the endpoints are drained (got {pre_stop:?})")
            });
            // Kubernetes' default when the field is absent.
            let grace = server.pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            assert!(
                grace > sleep + drain,
                "{where_}: terminationGracePeriodSeconds {grace} must exceed preStop sleep {sleep} + --drain-seconds {drain} = {}, or SIGKILL cuts the drain short",
                sleep + drain
            );
        }
    }
}

// ---- security and volumes ---------------------------------------------------------------------

#[test]
fn every_container_runs_the_dockerfiles_image_as_non_root_on_a_read_only_root() {
    let manifests = manifests();
    let dockerfile = Dockerfile::read();
    let image_user = dockerfile.runtime().user().and_then(|u| u.parse::<u64>().ok());
    let mut images = BTreeMap::new();
    for manifest in &manifests {
        for container in manifest.containers() {
            let where_ = container.describe();
            assert_eq!(container.security("runAsNonRoot").as_bool(), Some(true), "{where_}: runAsNonRoot");
            assert_eq!(
                container.spec["securityContext"]["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{where_}: readOnlyRootFilesystem"
            );
            assert_eq!(
                container.spec["securityContext"]["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{where_}: allowPrivilegeEscalation"
            );
            let dropped = &container.spec["securityContext"]["capabilities"]["drop"];
            assert!(
                dropped.as_sequence().is_some_and(|d| d.iter().any(|c| c.as_str() == Some("ALL"))),
                "{where_}: capabilities.drop should hold ALL, got {dropped:?}"
            );
            if let Some(user) = container.security("runAsUser").as_u64() {
                assert_ne!(user, 0, "{where_}: runAsUser 0 is root");
                if let Some(image_user) = image_user {
                    assert_eq!(user, image_user, "{where_}: runAsUser against the USER of deploy/Dockerfile");
                }
            }
            let image = container.spec["image"].as_str().unwrap_or_else(|| panic!("{where_}: no image")).to_string();
            images.entry(image).or_insert_with(Vec::new).push(where_);
        }
    }
    assert_eq!(images.len(), 1, "the manifests should all run the one image deploy/Dockerfile builds: {images:#?}");
}

#[test]
fn paths_the_containers_read_and_write_are_mounted_volumes_of_declared_claims() {
    let manifests = manifests();
    let claims: BTreeSet<&str> = of_kind(&manifests, &["PersistentVolumeClaim"]).iter().map(|m| m.name()).collect();
    for manifest in of_kind(&manifests, &["Deployment", "Job"]) {
        for container in manifest.containers() {
            let where_ = container.describe();
            let mounts: Vec<(&str, &str, bool)> = container.spec["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default(),
                        m["mountPath"].as_str().unwrap_or_default(),
                        m["readOnly"].as_bool().unwrap_or(false),
                    )
                })
                .collect();
            let (subcommand, words) = container.invocation();
            let path_flags: &[(&str, bool)] = match subcommand.as_str() {
                "serve" => &[("--model-repository", true), ("--model", true)],
                // The input may share a writable mount with the output.
                "predict" => &[("--model", true), ("--input", false), ("--output", false)],
                _ => &[],
            };
            let mut checked = 0;
            for (flag, read_only) in path_flags {
                let Some(path) = flag_value(&words, flag) else { continue };
                checked += 1;
                let mount = mounts
                    .iter()
                    .find(|(_, at, _)| Path::new(&path).starts_with(at))
                    .unwrap_or_else(|| panic!("{where_}: {flag} {path} is on no volume mount ({mounts:?})"));
                if *read_only {
                    assert!(mount.2, "{where_}: {flag} {path} only reads, so its mount {} should be readOnly", mount.1);
                }
                let volume = container.pod["volumes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"].as_str() == Some(mount.0))
                    .unwrap_or_else(|| panic!("{where_}: mount {} names no volume of the pod", mount.0));
                if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
                    assert!(
                        claims.contains(claim),
                        "{where_}: volume {} claims {claim}, which no manifest under deploy/ declares (declared: {claims:?})",
                        mount.0
                    );
                }
            }
            assert!(checked > 0, "{where_}: passes none of {path_flags:?}");
        }
    }
}

// ---- the Dockerfile ---------------------------------------------------------------------------

struct Stage {
    image: String,
    name: Option<String>,
    /// (INSTRUCTION, the rest of its logical line)
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, instruction: &str) -> Vec<&str> {
        self.instructions.iter().filter(|(i, _)| i == instruction).map(|(_, rest)| rest.as_str()).collect()
    }

    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last().copied()
    }

    /// The user of the last USER instruction, without its group.
    fn user(&self) -> Option<&str> {
        self.last("USER").map(|u| u.split(':').next().unwrap_or(u).trim())
    }

    /// An exec-form (JSON) instruction; the shell form needs /bin/sh, which distroless lacks.
    fn exec_form(&self, instruction: &str) -> Vec<String> {
        let rest = self
            .last(instruction)
            .unwrap_or_else(|| panic!("deploy/Dockerfile: the runtime stage has no {instruction}"));
        serde_json::from_str(rest).unwrap_or_else(|e| {
            panic!("deploy/Dockerfile: {instruction} {rest} is not the exec (JSON) form ({e}); the image has no shell")
        })
    }
}

struct Dockerfile {
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn read() -> Self {
        let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("deploy/Dockerfile reads");
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(continued) => {
                    current.push_str(continued);
                    current.push(' ');
                }
                None => {
                    current.push_str(line);
                    if !current.trim().is_empty() {
                        logical.push(std::mem::take(&mut current));
                    }
                    current.clear();
                }
            }
        }
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical {
            let line = line.trim();
            let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let (instruction, rest) = (instruction.to_ascii_uppercase(), rest.trim().to_string());
            if instruction == "FROM" {
                let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                let image = words.first().expect("FROM names an image").to_string();
                let name = match words.as_slice() {
                    [_, as_, name, ..] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    _ => None,
                };
                stages.push(Stage { image, name, instructions: Vec::new() });
            } else {
                let stage =
                    stages.last_mut().unwrap_or_else(|| panic!("deploy/Dockerfile: {instruction} before any FROM"));
                stage.instructions.push((instruction, rest));
            }
        }
        assert!(
            stages.len() >= 2,
            "deploy/Dockerfile should have a build stage and a runtime stage, has {}",
            stages.len()
        );
        Self { stages }
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().expect("at least one stage")
    }

    fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref() == Some(name))
    }
}

/// (major, minor) of a version like "1.95" or "1.95.0".
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[test]
fn dockerfile_runs_the_release_binary_on_distroless_as_nonroot_with_the_manifests_port() {
    let dockerfile = Dockerfile::read();
    let runtime = dockerfile.runtime();

    assert!(
        runtime.image.starts_with("gcr.io/distroless/"),
        "deploy/Dockerfile: the runtime stage is {}, expected gcr.io/distroless/...",
        runtime.image
    );
    let nonroot_tag = runtime.image.ends_with(":nonroot") || runtime.image.ends_with("-nonroot");
    match runtime.user() {
        Some(user) => assert!(
            user == "nonroot" || user.parse::<u32>().is_ok_and(|uid| uid != 0),
            "deploy/Dockerfile: the runtime stage runs as USER {user}, expected nonroot (65532)"
        ),
        None => assert!(
            nonroot_tag,
            "deploy/Dockerfile: runtime image {} is not a :nonroot tag and sets no USER",
            runtime.image
        ),
    }
    assert!(
        runtime.all("RUN").is_empty(),
        "deploy/Dockerfile: the runtime stage RUNs {:?}, but distroless has no shell",
        runtime.all("RUN")
    );

    // The binary: copied from a build stage that builds only serving, to where ENTRYPOINT runs it.
    let entrypoint = runtime.exec_form("ENTRYPOINT");
    assert_eq!(
        entrypoint.len(),
        1,
        "deploy/Dockerfile: ENTRYPOINT should be the binary alone (the CMD holds the arguments), got {entrypoint:?}"
    );
    let copies: Vec<Vec<&str>> = runtime.all("COPY").into_iter().map(|c| c.split_whitespace().collect()).collect();
    let copy = copies
        .iter()
        .find(|words| {
            let dest = words.last().copied().unwrap_or_default();
            let source = words.iter().rev().nth(1).copied().unwrap_or_default();
            dest == entrypoint[0]
                || (dest.ends_with('/')
                    && Path::new(dest).join(Path::new(source).file_name().unwrap_or_default())
                        == Path::new(&entrypoint[0]))
        })
        .unwrap_or_else(|| {
            panic!("deploy/Dockerfile: no COPY puts a file at the ENTRYPOINT {}; COPYs: {copies:?}", entrypoint[0])
        });
    let from = copy.iter().find_map(|w| w.strip_prefix("--from=")).unwrap_or_else(|| {
        panic!("deploy/Dockerfile: COPY {copy:?} to the entrypoint does not come --from the build stage")
    });
    let builder =
        dockerfile.stage(from).unwrap_or_else(|| panic!("deploy/Dockerfile: COPY --from={from} names no stage"));
    let source = copy.iter().rev().nth(1).copied().unwrap_or_default();
    let runs = builder.all("RUN").join("\n");
    let build = runs
        .split("&&")
        .find(|command| command.contains("cargo build"))
        .unwrap_or_else(|| panic!("deploy/Dockerfile: stage {from} runs no cargo build: {runs}"));
    for word in ["--release", "--locked"] {
        assert!(build.split_whitespace().any(|w| w == word), "deploy/Dockerfile: `{}` lacks {word}", build.trim());
    }
    assert!(
        build.contains("-p serving") || build.contains("--package serving"),
        "deploy/Dockerfile: `{}` should build only serving (-p serving): a workspace build unifies the trainer's features into it",
        build.trim()
    );
    assert!(
        source.ends_with("target/release/serving") || runs.split_whitespace().any(|w| w == source),
        "deploy/Dockerfile: COPY takes {source}, which stage {from} neither builds nor writes"
    );
    assert!(
        runs.contains("strip"),
        "deploy/Dockerfile: stage {from} does not strip the binary (the size target needs it)"
    );

    // The builder: at least the workspace's rust-version, and the runtime's Debian release (or
    // the binary could need a newer glibc than the runtime has).
    let (builder_name, builder_tag) = builder.image.split_once(':').unwrap_or((&builder.image, ""));
    assert_eq!(
        builder_name, "rust",
        "deploy/Dockerfile: build stage {from} is {}, expected rust:<version>-<debian>",
        builder.image
    );
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).expect("Cargo.toml reads");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = \"")?.strip_suffix('"'))
        .expect("Cargo.toml sets rust-version");
    let (tag_version, tag_release) = builder_tag.split_once('-').unwrap_or((builder_tag, ""));
    assert!(
        major_minor(tag_version) >= major_minor(rust_version) && major_minor(tag_version).is_some(),
        "deploy/Dockerfile: builder rust {tag_version} is older than the workspace's rust-version {rust_version}"
    );
    let debian = [("debian11", "bullseye"), ("debian12", "bookworm"), ("debian13", "trixie")];
    let runtime_release = debian
        .iter()
        .find(|(number, _)| runtime.image.contains(number))
        .unwrap_or_else(|| panic!("deploy/Dockerfile: cannot tell the Debian release of {}", runtime.image));
    assert_eq!(
        tag_release, runtime_release.1,
        "deploy/Dockerfile: the builder's Debian against the runtime's ({})",
        runtime.image
    );

    // The port and the default command.
    let exposed: Vec<u16> = runtime
        .all("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| {
            p.split('/').next().unwrap_or(p).parse().unwrap_or_else(|e| panic!("deploy/Dockerfile: EXPOSE {p}: {e}"))
        })
        .collect();
    let manifests = manifests();
    for deployment in of_kind(&manifests, &["Deployment"]) {
        for server in deployment.containers().into_iter().filter(|c| c.runs("serve")) {
            assert_eq!(
                exposed,
                [server.container_port()],
                "deploy/Dockerfile: EXPOSE against the container port of {}",
                server.describe()
            );
        }
    }
    let cmd = runtime.exec_form("CMD");
    let (subcommand, words) = cmd.split_first().expect("CMD is not empty");
    assert_eq!(subcommand, "serve", "deploy/Dockerfile: CMD should run `serving serve`, got {cmd:?}");
    let problems = unknown_flags("deploy/Dockerfile CMD", subcommand, words, &known_flags());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let addr = flag_value(words, "--addr").unwrap_or_else(|| panic!("deploy/Dockerfile: CMD {cmd:?} passes no --addr"));
    let port =
        addr.parse::<SocketAddr>().unwrap_or_else(|e| panic!("deploy/Dockerfile: CMD --addr {addr}: {e}")).port();
    assert_eq!(exposed, [port], "deploy/Dockerfile: EXPOSE against the CMD's --addr {addr}");

    let ignored = std::fs::read_to_string(workspace().join(".dockerignore")).expect(".dockerignore reads");
    let ignored: BTreeSet<&str> = ignored.lines().map(|l| l.trim().trim_matches('/')).collect();
    for path in ["target", ".git"] {
        assert!(ignored.contains(path), ".dockerignore should exclude {path} from the build context: {ignored:?}");
    }
}

// ---- linkage ----------------------------------------------------------------------------------

/// deploy/runtime-libraries.txt: the sonames the runtime image provides and its glibc version.
struct RuntimeLibraries {
    sonames: BTreeSet<String>,
    glibc: Vec<u32>,
}

fn runtime_libraries() -> RuntimeLibraries {
    let text = std::fs::read_to_string(deploy_dir().join("runtime-libraries.txt"))
        .expect("deploy/runtime-libraries.txt reads");
    let mut sonames = BTreeSet::new();
    let mut glibc = None;
    for line in text.lines().map(|l| l.split('#').next().unwrap_or_default().trim()).filter(|l| !l.is_empty()) {
        if let Some(version) = line.strip_prefix("glibc ") {
            glibc = Some(
                dotted(version.trim())
                    .unwrap_or_else(|| panic!("deploy/runtime-libraries.txt: bad glibc version {version:?}")),
            );
        } else {
            assert!(!line.contains(char::is_whitespace), "deploy/runtime-libraries.txt: {line:?} is not one soname");
            sonames.insert(line.to_string());
        }
    }
    RuntimeLibraries {
        sonames,
        glibc: glibc.expect("deploy/runtime-libraries.txt states the glibc version (`glibc X.Y`)"),
    }
}

fn dotted(version: &str) -> Option<Vec<u32>> {
    version.split('.').map(|p| p.parse().ok()).collect()
}

fn tool(program: &str, args: &[&str], file: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (binutils must be installed): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn release_binary_needs_only_the_libraries_and_glibc_of_the_runtime_image() {
    let libraries = runtime_libraries();
    let serving = binary("serving");

    let dynamic = tool("readelf", &["-d", "-W"], &serving);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split_once('[')?.1.split_once(']').map(|(name, _)| name))
        .collect();
    assert!(
        !needed.is_empty() || dynamic.contains("no dynamic section"),
        "readelf -d {} listed no NEEDED entry and no 'no dynamic section':\n{dynamic}",
        serving.display()
    );
    let missing: Vec<&&str> = needed.iter().filter(|n| !libraries.sonames.contains(**n)).collect();
    assert!(
        missing.is_empty(),
        "{} needs {missing:?}, which deploy/runtime-libraries.txt does not list (the runtime image provides {:?})",
        serving.display(),
        libraries.sonames
    );

    let headers = tool("readelf", &["-l", "-W"], &serving);
    if let Some(interpreter) = headers.lines().find_map(|l| l.split_once("program interpreter: ")?.1.strip_suffix(']'))
    {
        let name = Path::new(interpreter).file_name().and_then(|n| n.to_str()).unwrap_or(interpreter);
        assert!(
            libraries.sonames.contains(name),
            "{} is loaded by {interpreter}, which deploy/runtime-libraries.txt does not list",
            serving.display()
        );
    }

    let symbols = tool("objdump", &["-T"], &serving);
    let required = symbols
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(dotted)
        .max()
        .unwrap_or_else(|| panic!("objdump -T {} shows no GLIBC_ symbol version", serving.display()));
    let show = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
    assert!(
        required <= libraries.glibc,
        "{} requires GLIBC_{}, newer than the runtime image's glibc {} (deploy/runtime-libraries.txt)",
        serving.display(),
        show(&required),
        show(&libraries.glibc)
    );
}

// ---- KServe -----------------------------------------------------------------------------------

#[test]
fn kserve_runtime_speaks_v2_on_8080_and_the_inference_service_selects_it() {
    let manifests = manifests();
    let runtimes = of_kind(&manifests, &["ClusterServingRuntime", "ServingRuntime"]);
    for runtime in &runtimes {
        let spec = &runtime.value["spec"];
        let protocols: Vec<&str> =
            spec["protocolVersions"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
        assert!(protocols.contains(&"v2"), "{}: protocolVersions {protocols:?} lacks v2", runtime.describe());
        let containers = runtime.containers();
        let server =
            containers.iter().find(|c| c.spec["name"].as_str() == Some("kserve-container")).unwrap_or_else(|| {
                panic!(
                    "{}: no container named kserve-container (KServe's name for the model server)",
                    runtime.describe()
                )
            });
        let where_ = server.describe();
        let (subcommand, words) = server.invocation();
        assert_eq!(subcommand, "serve", "{where_}: should run `serving serve`");
        let port = server.container_port();
        assert_eq!(port, KSERVE_HTTP_PORT, "{where_}: container port against KServe's HTTP port");
        assert_eq!(server.addr_port(), port, "{where_}: the --addr port against the container port");
        assert_eq!(
            flag_value(&words, "--model-repository").as_deref(),
            Some(KSERVE_MODEL_DIR),
            "{where_}: --model-repository against where KServe mounts the model"
        );
        assert_eq!(
            flag_value(&words, "--model-name").as_deref(),
            Some("{{.Name}}"),
            "{where_}: --model-name should be the InferenceService's name"
        );
        for (probe, path) in [("readinessProbe", READINESS_PATH), ("livenessProbe", LIVENESS_PATH)] {
            let get = &server.spec[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{where_}: {probe} path");
            assert_eq!(
                server.resolve_port(&get["port"]),
                Some(port),
                "{where_}: {probe} port against the container port"
            );
        }
        match server.grpc_port() {
            Some(grpc) => {
                assert_eq!(grpc, KSERVE_GRPC_PORT, "{where_}: --grpc-addr port against KServe's gRPC port");
                assert!(protocols.contains(&"grpc-v2"), "{}: serves gRPC but lacks grpc-v2", runtime.describe());
            }
            None => assert!(
                !protocols.contains(&"grpc-v2"),
                "{}: declares grpc-v2 but passes no --grpc-addr",
                runtime.describe()
            ),
        }
        let formats = spec["supportedModelFormats"].as_sequence().map(Vec::as_slice).unwrap_or_default();
        assert!(!formats.is_empty(), "{}: no supportedModelFormats", runtime.describe());
        for format in formats {
            assert_eq!(
                format["version"].as_str(),
                Some(shared_inference::FORMAT_VERSION.to_string().as_str()),
                "{}: supportedModelFormats {:?}: version against the artifact format version",
                runtime.describe(),
                format["name"]
            );
        }
    }

    let claims: BTreeSet<&str> = of_kind(&manifests, &["PersistentVolumeClaim"]).iter().map(|m| m.name()).collect();
    for service in of_kind(&manifests, &["InferenceService"]) {
        let model = &service.value["spec"]["predictor"]["model"];
        let where_ = service.describe();
        let runtime_name =
            model["runtime"].as_str().unwrap_or_else(|| panic!("{where_}: predictor.model.runtime is not set"));
        let runtime = runtimes
            .iter()
            .find(|r| r.name() == runtime_name)
            .unwrap_or_else(|| panic!("{where_}: runtime {runtime_name} is none of the runtimes under deploy/"));
        let format = &model["modelFormat"];
        let supported = runtime.value["spec"]["supportedModelFormats"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == format["name"])
            .unwrap_or_else(|| {
                panic!(
                    "{where_}: modelFormat {:?} is not among {}'s supportedModelFormats",
                    format["name"],
                    runtime.describe()
                )
            });
        if !format["version"].is_null() {
            assert_eq!(
                format["version"],
                supported["version"],
                "{where_}: modelFormat version against {}",
                runtime.describe()
            );
        }
        if let Some(protocol) = model["protocolVersion"].as_str() {
            assert!(
                runtime.value["spec"]["protocolVersions"]
                    .as_sequence()
                    .is_some_and(|p| p.iter().any(|v| v.as_str() == Some(protocol))),
                "{where_}: protocolVersion {protocol} is not one {} speaks",
                runtime.describe()
            );
        }
        if model["protocolVersion"].as_str() == Some("grpc-v2") {
            // Knative routes the port named h2c, as HTTP/2: it must be where gRPC listens, and the
            // probes Knative requires on the routed port must check it.
            let grpc = runtime
                .containers()
                .iter()
                .find(|c| c.spec["name"].as_str() == Some("kserve-container"))
                .and_then(Container::grpc_port)
                .unwrap_or_else(|| panic!("{where_}: grpc-v2 on {}, which passes no --grpc-addr", runtime.describe()));
            let h2c = model["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str() == Some("h2c"))
                .unwrap_or_else(|| panic!("{where_}: grpc-v2 without a port named h2c (Knative would route HTTP/1)"));
            assert_eq!(as_port(&h2c["containerPort"]), Some(grpc), "{where_}: the h2c port against --grpc-addr");
            for probe in ["readinessProbe", "livenessProbe"] {
                let probe_spec = &model[probe];
                assert!(!probe_spec.is_null(), "{where_}: no {probe} on the routed gRPC port");
                let probed =
                    ["tcpSocket", "grpc", "httpGet"].iter().find_map(|kind| as_port(&probe_spec[kind]["port"]));
                assert_eq!(probed, Some(grpc), "{where_}: {probe} port against the gRPC port");
            }
        }
        let uri = model["storageUri"].as_str().unwrap_or_else(|| panic!("{where_}: no storageUri"));
        if let Some(rest) = uri.strip_prefix("pvc://") {
            let claim = rest.split('/').next().unwrap_or_default();
            assert!(
                claims.contains(claim),
                "{where_}: storageUri {uri} names claim {claim}, which no manifest under deploy/ declares ({claims:?})"
            );
        }
    }
}

// ---- the Indexed Job --------------------------------------------------------------------------

#[test]
fn scoring_job_is_indexed_and_its_shard_count_is_its_completions() {
    let manifests = manifests();
    for job in of_kind(&manifests, &["Job"]) {
        let spec = &job.value["spec"];
        let where_ = job.describe();
        assert_eq!(spec["completionMode"].as_str(), Some("Indexed"), "{where_}: completionMode");
        let completions = spec["completions"].as_u64().unwrap_or_else(|| panic!("{where_}: completions is not set"));
        let parallelism = spec["parallelism"].as_u64().unwrap_or(1);
        assert!(parallelism <= completions, "{where_}: parallelism {parallelism} > completions {completions}");
        assert_eq!(
            spec["template"]["spec"]["restartPolicy"].as_str(),
            Some("Never"),
            "{where_}: restartPolicy (backoffLimitPerIndex needs Never)"
        );
        assert!(
            spec["backoffLimitPerIndex"].as_u64().is_some() || spec["backoffLimit"].as_u64().is_some(),
            "{where_}: sets neither backoffLimitPerIndex nor backoffLimit"
        );
        for rule in spec["podFailurePolicy"]["rules"].as_sequence().into_iter().flatten() {
            if rule["action"].as_str() == Some("FailIndex") {
                assert!(
                    spec["backoffLimitPerIndex"].as_u64().is_some(),
                    "{where_}: a FailIndex rule needs backoffLimitPerIndex"
                );
                let codes: Vec<u64> = rule["onExitCodes"]["values"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .collect();
                assert_eq!(
                    codes,
                    [u64::from(serving::cli::EXIT_ROWS_FAILED)],
                    "{where_}: FailIndex exit codes against `serving predict`'s exit status for rows that could not be scored"
                );
            }
        }
        let scorers: Vec<Container<'_>> = job.containers().into_iter().filter(|c| c.runs("predict")).collect();
        assert!(!scorers.is_empty(), "{where_}: no container runs `serving predict`");
        for scorer in scorers {
            let (_, words) = scorer.invocation();
            let count = match (flag_value(&words, "--shard-count"), flag_value(&words, "--shard")) {
                (Some(count), None) => count
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("{}: --shard-count {count:?}: {e}", scorer.describe())),
                (None, Some(shard)) => {
                    let (index, count) = shard
                        .split_once('/')
                        .unwrap_or_else(|| panic!("{}: --shard {shard:?} is not INDEX/COUNT", scorer.describe()));
                    assert_eq!(
                        index,
                        "$(JOB_COMPLETION_INDEX)",
                        "{}: --shard {shard}: a fixed index would score one shard in every pod",
                        scorer.describe()
                    );
                    count.parse::<u64>().unwrap_or_else(|e| panic!("{}: --shard {shard:?}: {e}", scorer.describe()))
                }
                other => {
                    panic!("{}: should pass exactly one of --shard-count and --shard, got {other:?}", scorer.describe())
                }
            };
            assert_eq!(count, completions, "{}: shard count against the Job's completions", scorer.describe());
        }
    }
}
