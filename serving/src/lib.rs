//! `serving`: the slim CPU binary production runs. It loads artifacts through
//! `shared-inference`, answers the Open Inference Protocol v2 and KServe v1 over HTTP, and scores
//! files offline. It depends on no training crate; CI checks its graph and its binary.

#![forbid(unsafe_code)]

pub mod auth;
pub mod batch;
pub mod cli;
pub mod config;
pub mod cork;
pub mod error;
pub mod files;
pub mod grpc;
pub mod http;
pub mod json;
pub mod metrics;
pub mod oip;
pub mod parquet_file;
pub mod pool;
pub mod registry;
pub mod repository;
pub mod server;
pub mod tls;
pub mod v1;

pub use http::{AppState, DEFAULT_INLINE_MAX_BYTES, Limits, app};
pub use registry::Registry;
