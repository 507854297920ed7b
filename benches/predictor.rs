//! In-process prediction paths, measured with criterion:
//!
//! - `predictor/<model>/<rows>`: `Predictor::predict_records` on raw records (preprocessing,
//!   forward pass, postprocessing) for 1, 64 and 4096 rows of the bundled data sets;
//! - `forward/<model>/4096`: the network alone on 4096 preprocessed rows;
//! - `floor/sgemm`: the machine's single-precision matrix-multiply rate through the same kernel
//!   burn-ndarray uses (`matrixmultiply`, through ndarray), at a size where it runs at its peak. With a model's
//!   multiply-adds per row it gives the arithmetic floor of a forward pass.
//!
//! Models come from `BENCH_MODEL_REPOSITORY` (default `artifacts/`), as `<name>/<version>/`; the
//! latest version of `diamonds` and `penguins` is used. `benches/run.py` trains them first.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use shared_inference::{Cell, ColumnKind, Predictor};

/// The allocator the `serving` binary runs with, so the figures are the shipped ones.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH_SIZES: [usize; 3] = [1, 64, 4096];

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn latest_version(model_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(model_dir)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u64 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path()))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path)
}

/// The data file's rows as text cells, header first. The bundled files hold no quoted fields.
fn read_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().split(',').map(str::to_string).collect();
    let rows = lines.map(|line| line.split(',').map(str::to_string).collect()).collect();
    (header, rows)
}

/// `n` records in the form a front end hands to the predictor, cycling through the data.
fn records<'a>(
    predictor: &Predictor,
    header: &'a [String],
    rows: &'a [Vec<String>],
    n: usize,
) -> Vec<Vec<(&'a str, Cell<'a>)>> {
    let schema = predictor.schema();
    (0..n)
        .map(|i| {
            let row = &rows[i % rows.len()];
            header
                .iter()
                .zip(row)
                .filter_map(|(column, value)| {
                    let spec = schema.features.iter().find(|c| &c.name == column)?;
                    let cell = match (spec.kind, value.as_str()) {
                        (_, "NA" | "") => Cell::Missing,
                        (ColumnKind::Numeric, text) => Cell::Number(text.parse().unwrap_or(f64::NAN)),
                        (ColumnKind::Categorical, text) => Cell::Text(text),
                    };
                    Some((column.as_str(), cell))
                })
                .collect()
        })
        .collect()
}

fn predictor_paths(c: &mut Criterion) {
    let repository = std::env::var_os("BENCH_MODEL_REPOSITORY").map_or_else(|| root().join("artifacts"), PathBuf::from);
    for name in ["diamonds", "penguins"] {
        let Some(version_dir) = latest_version(&repository.join(name)) else {
            panic!(
                "no trained '{name}' under {}: train the bundled recipes first (benches/run.py does) \
                 or point BENCH_MODEL_REPOSITORY at a model repository",
                repository.display()
            );
        };
        let predictor = Predictor::load(&version_dir).unwrap_or_else(|e| panic!("{}: {e}", version_dir.display()));
        let (header, rows) = read_rows(&root().join("data").join(format!("{name}.csv")));
        let mut group = c.benchmark_group(format!("predictor/{name}"));
        for n in BATCH_SIZES {
            let batch = records(&predictor, &header, &rows, n);
            predictor.predict_records(&batch).unwrap_or_else(|e| panic!("{name}: {e}"));
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::from_parameter(n), &batch, |b, batch| {
                b.iter(|| predictor.predict_records(black_box(batch)))
            });
        }
        group.finish();

        // The network alone on already-preprocessed rows: how much of the above is burn's forward
        // pass, and how much is reading records, preprocessing and postprocessing.
        let batch = records(&predictor, &header, &rows, 4096);
        let columns = shared_inference::ColumnBatch::from_records(predictor.schema(), &batch)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (features, errors) = predictor.preprocess_partial(&columns);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        let mut group = c.benchmark_group(format!("forward/{name}"));
        group.throughput(Throughput::Elements(4096));
        group.bench_function(BenchmarkId::from_parameter(4096), |b| {
            b.iter(|| predictor.forward(black_box(&features), 4096))
        });
        group.finish();
    }
}

/// `C = A · B` for square `n × n` matrices through ndarray's `general_mat_mul`, which runs
/// matrixmultiply's single-precision kernel (the one burn-ndarray's `matmul` reaches).
fn sgemm(n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    let a = ArrayView2::from_shape((n, n), a).expect("n × n values");
    let b = ArrayView2::from_shape((n, n), b).expect("n × n values");
    let mut c = ArrayViewMut2::from_shape((n, n), c).expect("n × n values");
    general_mat_mul(1.0, &a, &b, 0.0, &mut c);
}

fn matmul_floor(c: &mut Criterion) {
    const N: usize = 256;
    let a: Vec<f32> = (0..N * N).map(|i| (i % 17) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..N * N).map(|i| (i % 13) as f32 * 0.1).collect();
    let mut out = vec![0.0f32; N * N];
    let mut group = c.benchmark_group("floor");
    // One element = one multiply-add.
    group.throughput(Throughput::Elements((N * N * N) as u64));
    group.bench_function(BenchmarkId::new("sgemm", N), |bench| {
        bench.iter(|| sgemm(N, black_box(&a), black_box(&b), &mut out))
    });
    group.finish();
}

criterion_group!(benches, predictor_paths, matmul_floor);
criterion_main!(benches);
