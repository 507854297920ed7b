//! End-to-end tests across the crates: the wall between training and serving, parity between
//! the trainer's evaluation and every serving path, the real server binary under load and
//! shutdown and against slow, over-limit, unauthorized or TLS clients and damaged artifacts,
//! batch scoring of files with bad rows (CSV, JSON Lines, Parquet), sharded scoring, and the
//! deployment files in deploy/ against the binary.

mod batch_scoring;
mod build_once;
mod deploy;
mod grpc;
mod grpc_connections;
mod hardening;
mod kserve_layouts;
mod missing_values;
mod onnx;
mod parity;
mod rollout;
mod server;
mod sharded_scoring;
mod spark;
mod support;
mod unsafe_code;
mod wall;
