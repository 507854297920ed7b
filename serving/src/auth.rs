//! Access control: bearer tokens with scopes, read from a file.
//!
//! Every endpoint belongs to one scope ([`required_scope`], the one place that decides it, for
//! every protocol this server speaks); a request to a protected endpoint must carry
//! `Authorization: Bearer <token>` for a token that holds that scope. Health endpoints stay open
//! so that probes need no secret; `/metrics` is open unless `--protect-metrics` is given.
//!
//! Tokens are never taken from the command line (it shows in `ps`) and never logged: the file
//! is read once at start-up, each token is kept only as its SHA-256 digest, and a presented
//! token is hashed and compared with every known digest in constant time, so neither the
//! comparison nor which entry matched shows in the response time.
//!
//! The file is TOML:
//!
//! ```toml
//! [[token]]
//! name = "batch-scorer"              # shown in logs instead of the token
//! token = "a-long-random-secret"     # or: sha256 = "<64 hex digits of the token's SHA-256>"
//! scopes = ["inference", "metadata"] # any of: inference, metadata, metrics, admin
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use axum::http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};

/// What a token may do. Each endpoint needs exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Predictions: `POST .../infer`, `POST /v1/models/<name>:predict`.
    Inference,
    /// Reading what is served: server and model metadata, readiness of a model, configuration.
    Metadata,
    /// `GET /metrics`, when `--protect-metrics` is given.
    Metrics,
    /// Changing what is served: the model repository endpoints.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Inference => "inference",
            Scope::Metadata => "metadata",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

/// The scope an endpoint needs; `None` for endpoints open to everyone.
pub fn required_scope(method: &Method, path: &str, protect_metrics: bool) -> Option<Scope> {
    if path.starts_with("/v2/health/") {
        return None;
    }
    // gRPC: the same scopes for the same questions (health open, inference, repository admin).
    if let Some(rpc) = path.strip_prefix(crate::grpc::SERVICE_PATH) {
        return match rpc {
            "ServerLive" | "ServerReady" => None,
            "ModelInfer" => Some(Scope::Inference),
            rpc if rpc.starts_with("Repository") => Some(Scope::Admin),
            _ => Some(Scope::Metadata),
        };
    }
    if path == "/metrics" {
        return protect_metrics.then_some(Scope::Metrics);
    }
    if path.starts_with("/v2/repository") {
        return Some(Scope::Admin);
    }
    let predicts = (path.starts_with("/v2/models/") && path.ends_with("/infer"))
        || (path.starts_with("/v1/models/") && path.ends_with(":predict"));
    if predicts && method == Method::POST {
        return Some(Scope::Inference);
    }
    // Everything else, unknown paths included: an unauthenticated client learns nothing, not
    // even which paths exist.
    Some(Scope::Metadata)
}

#[derive(Debug)]
struct Token {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// The known tokens. Empty means access control is off.
#[derive(Debug, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this endpoint needs a bearer token with the '{}' scope: send 'Authorization: Bearer <token>'", .0.as_str())]
    Missing(Scope),
    #[error("the Authorization header must be 'Bearer <token>'")]
    Malformed,
    #[error("the bearer token is not valid")]
    Unknown,
    #[error("the token '{name}' does not have the '{}' scope this endpoint needs", .scope.as_str())]
    WrongScope { name: String, scope: Scope },
}

impl Denied {
    /// 401 for no or a bad token, 403 for a known token without the scope.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Denied::WrongScope { .. })
    }

    /// The `WWW-Authenticate` challenge (RFC 6750).
    pub fn challenge(&self) -> String {
        match self {
            Denied::Missing(_) => "Bearer realm=\"serving\"".to_string(),
            Denied::Malformed => "Bearer realm=\"serving\", error=\"invalid_request\"".to_string(),
            Denied::Unknown => "Bearer realm=\"serving\", error=\"invalid_token\"".to_string(),
            Denied::WrongScope { scope, .. } => {
                format!("Bearer realm=\"serving\", error=\"insufficient_scope\", scope=\"{}\"", scope.as_str())
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: Option<String>,
    sha256: Option<String>,
    scopes: Vec<Scope>,
}

/// Tokens shorter than this are refused: they could be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

impl Tokens {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Reads a token file (format in the module docs).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("token file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: TokenFile = toml::from_str(text).context("not a valid token file")?;
        if file.token.is_empty() {
            bail!("no [[token]] entries");
        }
        let mut tokens: Vec<Token> = Vec::with_capacity(file.token.len());
        for (index, entry) in file.token.into_iter().enumerate() {
            let at = format!("token {} ('{}')", index + 1, entry.name);
            if entry.name.trim().is_empty() {
                bail!("token {}: 'name' is empty", index + 1);
            }
            if tokens.iter().any(|t| t.name == entry.name) {
                bail!("{at}: the name is used twice");
            }
            if entry.scopes.is_empty() {
                bail!("{at}: 'scopes' is empty; give at least one of inference, metadata, metrics, admin");
            }
            let digest = match (&entry.token, &entry.sha256) {
                (Some(token), None) => {
                    if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
                        bail!("{at}: a token must be at least {MIN_TOKEN_CHARS} characters with no spaces");
                    }
                    Sha256::digest(token.as_bytes()).into()
                }
                (None, Some(hex)) => parse_digest(hex).with_context(|| format!("{at}: 'sha256'"))?,
                (Some(_), Some(_)) => bail!("{at}: give 'token' or 'sha256', not both"),
                (None, None) => bail!("{at}: give 'token' or 'sha256'"),
            };
            if tokens.iter().any(|t| t.digest == digest) {
                bail!("{at}: the same token is listed twice");
            }
            tokens.push(Token { name: entry.name, digest, scopes: entry.scopes });
        }
        Ok(Self { tokens })
    }

    /// Lets the request through, or says why not. With no tokens configured everything passes.
    pub fn check(&self, headers: &HeaderMap, scope: Option<Scope>) -> Result<(), Denied> {
        let Some(scope) = scope else { return Ok(()) };
        if self.tokens.is_empty() {
            return Ok(());
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = values.next().ok_or(Denied::Missing(scope))?;
        if values.next().is_some() {
            return Err(Denied::Malformed);
        }
        let value = value.to_str().map_err(|_| Denied::Malformed)?;
        let (kind, presented) = value.split_once(' ').ok_or(Denied::Malformed)?;
        if !kind.eq_ignore_ascii_case("bearer") || presented.trim().is_empty() {
            return Err(Denied::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        // Every digest is compared, whichever matches, so the time does not say which did.
        let mut found: Option<&Token> = None;
        for token in &self.tokens {
            if constant_time_eq(&token.digest, &digest) {
                found = Some(token);
            }
        }
        let token = found.ok_or(Denied::Unknown)?;
        if token.scopes.contains(&scope) { Ok(()) } else { Err(Denied::WrongScope { name: token.name.clone(), scope }) }
    }
}

fn parse_digest(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("must be 64 hexadecimal digits, got {} characters", hex.len());
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(digest)
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= std::hint::black_box(x ^ y);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const FILE: &str = r#"
[[token]]
name = "scorer"
token = "scorer-secret-0123456789"
scopes = ["inference"]

[[token]]
name = "operator"
sha256 = "HASH"
scopes = ["metadata", "admin", "metrics"]
"#;

    fn tokens() -> Tokens {
        let hash: String = Sha256::digest(b"operator-secret-0123456789").iter().map(|b| format!("{b:02x}")).collect();
        Tokens::parse(&FILE.replace("HASH", &hash)).expect("valid file")
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
        headers
    }

    #[test]
    fn each_endpoint_has_one_scope_and_health_is_open() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(required_scope(&get, "/v2/health/live", true), None);
        assert_eq!(required_scope(&get, "/v2/health/ready", true), None);
        assert_eq!(required_scope(&get, "/metrics", false), None);
        assert_eq!(required_scope(&get, "/metrics", true), Some(Scope::Metrics));
        assert_eq!(required_scope(&post, "/v2/models/m/infer", false), Some(Scope::Inference));
        assert_eq!(required_scope(&post, "/v2/models/m/versions/2/infer", false), Some(Scope::Inference));
        assert_eq!(required_scope(&post, "/v1/models/m:predict", false), Some(Scope::Inference));
        assert_eq!(required_scope(&get, "/v2/models/m", false), Some(Scope::Metadata));
        assert_eq!(required_scope(&get, "/v2/models/m/infer", false), Some(Scope::Metadata));
        assert_eq!(required_scope(&post, "/v2/repository/index", false), Some(Scope::Admin));
        assert_eq!(required_scope(&get, "/no/such/path", false), Some(Scope::Metadata));
    }

    #[test]
    fn tokens_are_checked_by_scope() {
        let tokens = tokens();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.check(&bearer("scorer-secret-0123456789"), Some(Scope::Inference)), Ok(()));
        assert_eq!(tokens.check(&bearer("operator-secret-0123456789"), Some(Scope::Admin)), Ok(()));
        assert_eq!(
            tokens.check(&bearer("scorer-secret-0123456789"), Some(Scope::Admin)),
            Err(Denied::WrongScope { name: "scorer".into(), scope: Scope::Admin })
        );
        assert_eq!(tokens.check(&bearer("scorer-secret-012345678"), Some(Scope::Inference)), Err(Denied::Unknown));
        assert_eq!(tokens.check(&HeaderMap::new(), Some(Scope::Metadata)), Err(Denied::Missing(Scope::Metadata)));
        assert_eq!(tokens.check(&HeaderMap::new(), None), Ok(()));
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
        assert_eq!(tokens.check(&basic, Some(Scope::Metadata)), Err(Denied::Malformed));
        let mut twice = bearer("scorer-secret-0123456789");
        twice.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer operator-secret-0123456789"));
        assert_eq!(tokens.check(&twice, Some(Scope::Inference)), Err(Denied::Malformed));
        assert!(Denied::WrongScope { name: "x".into(), scope: Scope::Admin }.is_forbidden());
        assert!(!Denied::Unknown.is_forbidden());
        // No tokens configured: access control is off.
        assert_eq!(Tokens::default().check(&HeaderMap::new(), Some(Scope::Admin)), Ok(()));
    }

    #[test]
    fn bad_token_files_are_refused_with_the_entry_named() {
        let refuse = |text: &str, expected: &str| {
            let error = format!("{:#}", Tokens::parse(text).expect_err(text));
            assert!(error.contains(expected), "{error}");
        };
        refuse("", "no [[token]] entries");
        refuse("[[token]]\nname = \"a\"\ntoken = \"short\"\nscopes = [\"inference\"]", "at least 16 characters");
        refuse(
            "[[token]]\nname = \"a\"\ntoken = \"0123456789abcdefgh\"\nscopes = []",
            "token 1 ('a'): 'scopes' is empty",
        );
        refuse(
            "[[token]]\nname = \"a\"\ntoken = \"0123456789abcdefgh\"\nscopes = [\"root\"]",
            "not a valid token file",
        );
        refuse("[[token]]\nname = \"a\"\nsha256 = \"abc\"\nscopes = [\"admin\"]", "64 hexadecimal digits");
        refuse("[[token]]\nname = \"a\"\nscopes = [\"admin\"]", "give 'token' or 'sha256'");
        refuse(
            "[[token]]\nname = \"a\"\ntoken = \"0123456789abcdefgh\"\nscopes = [\"admin\"]\n[[token]]\nname = \"a\"\ntoken = \"0123456789abcdefgX\"\nscopes = [\"admin\"]",
            "token 2 ('a'): the name is used twice",
        );
        refuse(
            "[[token]]\nname = \"a\"\ntoken = \"0123456789abcdefgh\"\nscopes = [\"admin\"]\n[[token]]\nname = \"b\"\ntoken = \"0123456789abcdefgh\"\nscopes = [\"admin\"]",
            "token 2 ('b'): the same token is listed twice",
        );
    }

    #[test]
    fn constant_time_eq_is_equality() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}
