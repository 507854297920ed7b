//! Offline batch scoring (`serving predict`): CSV, JSON Lines or Parquet in, any of them out,
//! streamed in chunks so memory stays flat whatever the file size. One output row per input row,
//! in input order; a row that cannot be scored is written with an `error` naming its line (or
//! row), the column and the problem, and scoring goes on.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use serde_json::Value;
use shared_inference::input::RowBuilder;
use shared_inference::output;
use shared_inference::{Cell, Predictions, Predictor};

use crate::parquet_file::{self, KeptType, ParquetReader, ParquetWriter};

/// One JSON Lines record: its columns, or why the line is not a record.
type ParsedLine = Result<serde_json::Map<String, Value>, String>;

/// File formats `serving predict` reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    /// The format a path's extension names, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") || lower.ends_with(".json") {
            Some(Format::Jsonl)
        } else if lower.ends_with(".parquet") || lower.ends_with(".pq") {
            Some(Format::Parquet)
        } else {
            None
        }
    }

    /// The extension files of this format are written with.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub input_format: Format,
    pub output_format: Format,
    /// Input columns copied to the output beside the predictions (an id, say).
    pub keep: Vec<String>,
    pub chunk_rows: usize,
}

/// What a run did; errors are kept for the summary, the first few in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub rows: usize,
    pub failed: usize,
    pub first_errors: Vec<String>,
}

/// Messages of failed rows a run keeps in full for its summary.
pub const ERRORS_KEPT: usize = 10;

/// One input row on its way through a chunk.
struct Row<'a> {
    line: u64,
    /// Values of the kept columns, as they will be written.
    kept: Vec<Value>,
    /// The model's features in schema order, or why the row could not be read.
    cells: Result<Vec<Cell<'a>>, String>,
}

/// Scores `input`, CSV or JSON Lines, into `output`. `on_progress` is called with the number
/// of rows done.
pub fn score(
    predictor: &Predictor,
    input: impl BufRead + Send,
    output: impl Write + Send,
    options: &BatchOptions,
    mut on_progress: impl FnMut(usize),
) -> anyhow::Result<BatchSummary> {
    let kept_types =
        vec![if options.input_format == Format::Jsonl { KeptType::Json } else { KeptType::Text }; options.keep.len()];
    let mut writer = OutputWriter::new(output, options, predictor, kept_types)?;
    let mut summary = BatchSummary::default();
    let chunk_rows = options.chunk_rows.max(1);
    match options.input_format {
        Format::Parquet => bail!("Parquet is read from a file, not a stream (its index is at its end)"),
        Format::Csv => score_csv(predictor, input, &mut writer, options, &mut summary, &mut on_progress)?,
        Format::Jsonl => {
            let mut lines = input.lines();
            let mut line_number = 0u64;
            let mut done = false;
            while !done {
                let mut objects: Vec<(u64, ParsedLine)> = Vec::with_capacity(chunk_rows);
                while objects.len() < chunk_rows {
                    let Some(line) = lines.next() else {
                        done = true;
                        break;
                    };
                    line_number += 1;
                    let line = line.with_context(|| format!("reading line {line_number}"))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    objects.push((
                        line_number,
                        match serde_json::from_str::<Value>(&line) {
                            Ok(Value::Object(map)) => Ok(map),
                            Ok(other) => Err(format!("expected a JSON object of column -> value, got {other}")),
                            Err(e) => Err(format!("invalid JSON: {e}")),
                        },
                    ));
                }
                let rows: Vec<Row<'_>> = objects
                    .iter()
                    .map(|(line, object)| match object {
                        Ok(map) => json_row(*line, map, predictor, &options.keep),
                        Err(message) => Row {
                            line: *line,
                            kept: vec![Value::Null; options.keep.len()],
                            cells: Err(message.clone()),
                        },
                    })
                    .collect();
                score_chunk(predictor, rows, &mut writer, &mut summary)?;
                on_progress(summary.rows);
            }
        }
    }
    writer.finish()?;
    Ok(summary)
}

/// Scores a Parquet file into `output`, a chunk of rows at a time (row groups are streamed, not
/// loaded whole). Rows are numbered from 1 in the file in error messages.
pub fn score_parquet(
    predictor: &Predictor,
    input: std::fs::File,
    output: impl Write + Send,
    options: &BatchOptions,
    mut on_progress: impl FnMut(usize),
) -> anyhow::Result<BatchSummary> {
    let features = predictor.schema().feature_names();
    let mut reader = ParquetReader::open(input, &features, &options.keep)?;
    let mut writer = OutputWriter::new(output, options, predictor, reader.kept_types().to_vec())?;
    let mut summary = BatchSummary::default();
    let chunk_rows = options.chunk_rows.max(1);
    loop {
        let chunk = reader.read_chunk(chunk_rows)?;
        let mut cells = Vec::with_capacity(features.len());
        if chunk.rows == 0 {
            break;
        }
        let mut builder = RowBuilder::new(predictor.schema(), chunk.rows);
        let mut slots = Vec::with_capacity(chunk.rows);
        let mut lines = Vec::with_capacity(chunk.rows);
        let mut kept = Vec::with_capacity(chunk.rows);
        for row in 0..chunk.rows {
            lines.push(chunk.first_row + row as u64);
            kept.push(chunk.kept(row));
            slots.push(match chunk.cells(row, &mut cells) {
                Ok(()) => {
                    let at = builder.n_rows();
                    builder.push_cells(at, &cells).map(|()| at).map_err(|e| e.to_string())
                }
                Err(message) => Err(message),
            });
        }
        let prepared = finish_chunk(predictor, builder, lines, kept, slots)?;
        write_chunk(predictor, prepared, &mut writer, &mut summary)?;
        on_progress(summary.rows);
    }
    writer.finish()?;
    Ok(summary)
}

/// A chunk read and preprocessed, on its way to the forward pass and the writer.
struct PreparedChunk {
    lines: Vec<u64>,
    kept: Vec<Vec<Value>>,
    /// For each input row: its row in `features`, or why it cannot be scored.
    slots: Vec<Result<usize, String>>,
    features: Vec<f32>,
    n_rows: usize,
}

/// Chunks in flight between the reading thread and the scoring thread; bounds memory.
const CHUNKS_IN_FLIGHT: usize = 2;

/// CSV scoring on two threads: one reads, parses and preprocesses chunk `n + 1` while the
/// other runs the forward pass over chunk `n` and writes it. Chunks stay in input order (one
/// producer, one consumer, a FIFO channel) and at most `CHUNKS_IN_FLIGHT` wait in between, so
/// memory stays flat. The work per row is exactly `Predictor::predict_partial`, split in two.
fn score_csv<W: Write + Send>(
    predictor: &Predictor,
    input: impl BufRead + Send,
    writer: &mut OutputWriter<W>,
    options: &BatchOptions,
    summary: &mut BatchSummary,
    on_progress: &mut impl FnMut(usize),
) -> anyhow::Result<()> {
    let chunk_rows = options.chunk_rows.max(1);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(input);
    let header = reader.headers().context("reading the CSV header")?.clone();
    // A column given twice would be read from one of the two copies, silently: refuse it.
    for (index, name) in header.iter().enumerate() {
        if let Some(first) = header.iter().take(index).position(|earlier| earlier == name) {
            bail!("the CSV header names column '{name}' twice (columns {} and {})", first + 1, index + 1);
        }
    }
    let feature_index = column_indices(&header, &predictor.schema().feature_names(), "model feature")?;
    let keep_index = column_indices(&header, &options.keep, "--keep")?;
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<anyhow::Result<PreparedChunk>>(CHUNKS_IN_FLIGHT);
        let columns = CsvColumns { width: header.len(), features: &feature_index, keep: &keep_index };
        let producer = scope.spawn(move || {
            // Records are reused from chunk to chunk: their buffers are allocated once.
            let mut records: Vec<csv::StringRecord> = Vec::new();
            let mut failures: Vec<Option<(u64, String)>> = Vec::new();
            let mut done = false;
            while !done {
                failures.clear();
                while failures.len() < chunk_rows {
                    let n = failures.len();
                    if records.len() == n {
                        records.push(csv::StringRecord::new());
                    }
                    match reader.read_record(&mut records[n]) {
                        Ok(true) => failures.push(None),
                        Ok(false) => {
                            done = true;
                            break;
                        }
                        Err(e) if e.is_io_error() => {
                            let _ = sender.send(Err(anyhow::Error::new(e).context("reading the input")));
                            return;
                        }
                        Err(e) => {
                            let line = e.position().map_or(0, |p| p.line());
                            failures.push(Some((line, e.to_string())));
                        }
                    }
                }
                if failures.is_empty() {
                    break;
                }
                let chunk = prepare_csv_chunk(predictor, &records[..failures.len()], &failures, &columns);
                if sender.send(chunk).is_err() {
                    return; // the scoring side stopped on an error of its own
                }
            }
        });
        let mut outcome = Ok(());
        for chunk in receiver {
            outcome = chunk.and_then(|chunk| write_chunk(predictor, chunk, writer, summary));
            if outcome.is_err() {
                break;
            }
            on_progress(summary.rows);
        }
        if producer.join().is_err() {
            bail!("the reading thread panicked");
        }
        outcome
    })
}

/// Reads a chunk's cells into a batch and preprocesses it: the first half of
/// `Predictor::predict_partial`, with each row's outcome recorded.
fn prepare_chunk(predictor: &Predictor, rows: Vec<Row<'_>>) -> anyhow::Result<PreparedChunk> {
    let mut builder = RowBuilder::new(predictor.schema(), rows.len());
    let mut slots: Vec<Result<usize, String>> = Vec::with_capacity(rows.len());
    for row in &rows {
        slots.push(match &row.cells {
            Ok(cells) => {
                let at = builder.n_rows();
                builder.push_cells(at, cells).map(|()| at).map_err(|e| e.to_string())
            }
            Err(message) => Err(message.clone()),
        });
    }
    let (lines, kept) = rows.into_iter().map(|row| (row.line, row.kept)).unzip();
    finish_chunk(predictor, builder, lines, kept, slots)
}

/// Preprocesses the rows a chunk's builder holds and records the rows that failed.
fn finish_chunk(
    predictor: &Predictor,
    builder: RowBuilder<'_, '_>,
    lines: Vec<u64>,
    kept: Vec<Vec<Value>>,
    mut slots: Vec<Result<usize, String>>,
) -> anyhow::Result<PreparedChunk> {
    let batch = builder.finish()?;
    let (features, errors) = predictor.preprocess_partial(&batch);
    mark_failed(&mut slots, errors);
    Ok(PreparedChunk { lines, kept, slots, features, n_rows: batch.n_rows() })
}

/// The second half: the forward pass and postprocessing, then one output row per input row.
fn write_chunk<W: Write + Send>(
    predictor: &Predictor,
    chunk: PreparedChunk,
    writer: &mut OutputWriter<W>,
    summary: &mut BatchSummary,
) -> anyhow::Result<()> {
    let predictions = predictor.predict_features(chunk.features, chunk.n_rows);
    let mut slots = chunk.slots;
    // As in `Predictor::predict_partial`: a prediction that is not finite fails its row.
    let not_finite: Vec<_> = predictions
        .non_finite_rows()
        .map(|(row, value)| shared_inference::InputError::NotFinite { row, value })
        .collect();
    mark_failed(&mut slots, not_finite);
    for ((line, kept), slot) in chunk.lines.into_iter().zip(&chunk.kept).zip(slots) {
        write_row(line, kept, slot, &predictions, writer, summary)?;
    }
    Ok(())
}

/// Moves the errors of rows that failed preprocessing into their slots.
fn mark_failed(slots: &mut [Result<usize, String>], errors: Vec<shared_inference::InputError>) {
    for error in errors {
        if let Some(bad) = error.row()
            && let Some(slot) = slots.iter_mut().find(|s| s.as_ref().is_ok_and(|&r| r == bad))
        {
            *slot = Err(error.to_string());
        }
    }
}

fn write_row<W: Write + Send>(
    line: u64,
    kept: &[Value],
    slot: Result<usize, String>,
    predictions: &Predictions,
    writer: &mut OutputWriter<W>,
    summary: &mut BatchSummary,
) -> anyhow::Result<()> {
    summary.rows += 1;
    match slot {
        Ok(at) => writer.write_prediction(kept, predictions, at),
        Err(message) => {
            let message = format!("{} {line}: {message}", writer.unit);
            summary.failed += 1;
            if summary.first_errors.len() < ERRORS_KEPT {
                summary.first_errors.push(message.clone());
            }
            writer.write_error(kept, &message)
        }
    }
}

fn column_indices(header: &csv::StringRecord, names: &[String], what: &str) -> anyhow::Result<Vec<usize>> {
    names
        .iter()
        .map(|name| match header.iter().position(|h| h == name) {
            Some(i) => Ok(i),
            None => bail!(
                "the input has no column '{name}' ({what}); its columns are {:?}",
                header.iter().collect::<Vec<_>>()
            ),
        })
        .collect()
}

/// Where a CSV file's columns are.
struct CsvColumns<'c> {
    /// Fields per record (the header's).
    width: usize,
    /// The model's features, in schema order.
    features: &'c [usize],
    keep: &'c [usize],
}

/// [`prepare_chunk`] for CSV records, without a row object per record: cells go straight into
/// the batch.
fn prepare_csv_chunk(
    predictor: &Predictor,
    records: &[csv::StringRecord],
    failures: &[Option<(u64, String)>],
    columns: &CsvColumns<'_>,
) -> anyhow::Result<PreparedChunk> {
    let n = records.len();
    let mut builder = RowBuilder::new(predictor.schema(), n);
    let (mut lines, mut kept, mut slots) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut cells = Vec::with_capacity(columns.features.len());
    for (record, failure) in records.iter().zip(failures) {
        if let Some((line, message)) = failure {
            lines.push(*line);
            kept.push(vec![Value::Null; columns.keep.len()]);
            slots.push(Err(message.clone()));
            continue;
        }
        lines.push(record.position().map_or(0, |p| p.line()));
        kept.push(columns.keep.iter().map(|&i| Value::from(record.get(i).unwrap_or(""))).collect());
        if record.len() != columns.width {
            slots.push(Err(format!("expected {} fields, got {}", columns.width, record.len())));
            continue;
        }
        cells.clear();
        // Cells go in as text: the core reads "" and NA as missing, one rule for every path.
        cells.extend(columns.features.iter().map(|&i| record.get(i).map_or(Cell::Missing, Cell::Text)));
        let at = builder.n_rows();
        slots.push(builder.push_cells(at, &cells).map(|()| at).map_err(|e| e.to_string()));
    }
    finish_chunk(predictor, builder, lines, kept, slots)
}

fn json_row<'a>(line: u64, map: &'a serde_json::Map<String, Value>, predictor: &Predictor, keep: &[String]) -> Row<'a> {
    let kept = keep.iter().map(|k| map.get(k).cloned().unwrap_or(Value::Null)).collect();
    let cells = predictor
        .schema()
        .features
        .iter()
        .map(|spec| match map.get(&spec.name) {
            None => Err(format!("missing column '{}'", spec.name)),
            Some(Value::Null) => Ok(Cell::Missing),
            Some(Value::Number(n)) => Ok(Cell::Number(n.as_f64().unwrap_or(f64::NAN))),
            Some(Value::String(s)) => Ok(Cell::Text(s)),
            Some(other) => Err(format!("column '{}': expected a number, text or null, got {other}", spec.name)),
        })
        .collect();
    Row { line, kept, cells }
}

fn score_chunk<W: Write + Send>(
    predictor: &Predictor,
    rows: Vec<Row<'_>>,
    writer: &mut OutputWriter<W>,
    summary: &mut BatchSummary,
) -> anyhow::Result<()> {
    write_chunk(predictor, prepare_chunk(predictor, rows)?, writer, summary)
}

/// Writes prediction rows in the chosen format.
struct OutputWriter<W: Write + Send> {
    format: Format,
    csv: Option<csv::Writer<W>>,
    plain: Option<std::io::BufWriter<W>>,
    parquet: Option<ParquetWriter<W>>,
    keep: Vec<String>,
    kept_types: Vec<KeptType>,
    columns: Vec<String>,
    classes: Vec<String>,
    cells: Vec<String>,
    /// What an input position is called in messages: a line of text, or a Parquet row.
    unit: &'static str,
}

impl<W: Write + Send> OutputWriter<W> {
    fn new(
        output: W,
        options: &BatchOptions,
        predictor: &Predictor,
        kept_types: Vec<KeptType>,
    ) -> anyhow::Result<Self> {
        let classes = predictor.labels().to_vec();
        let classification = predictor.schema().task.is_classification();
        let columns = Predictions::column_names(classification, &classes);
        if options.output_format != Format::Parquet {
            parquet_file::check_text_output(&kept_types)?;
        }
        let (mut csv, mut plain, mut parquet) = (None, None, None);
        match options.output_format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(output);
                let header: Vec<&str> = options
                    .keep
                    .iter()
                    .map(String::as_str)
                    .chain(columns.iter().map(String::as_str))
                    .chain(std::iter::once("error"))
                    .collect();
                writer.write_record(&header)?;
                csv = Some(writer);
            }
            Format::Jsonl => plain = Some(std::io::BufWriter::with_capacity(1 << 16, output)),
            Format::Parquet => {
                let kept: Vec<(String, KeptType)> =
                    options.keep.iter().cloned().zip(kept_types.iter().cloned()).collect();
                parquet = Some(ParquetWriter::new(output, &kept, &columns, classification)?);
            }
        }
        Ok(Self {
            format: options.output_format,
            csv,
            plain,
            parquet,
            keep: options.keep.clone(),
            kept_types,
            columns,
            classes,
            cells: Vec::new(),
            unit: if options.input_format == Format::Parquet { "row" } else { "line" },
        })
    }

    fn write_prediction(&mut self, kept: &[Value], predictions: &Predictions, row: usize) -> anyhow::Result<()> {
        if let Some(w) = self.parquet.as_mut() {
            return match predictions {
                Predictions::Regression { values } => w.write_prediction(kept, None, &values[row..=row]),
                Predictions::Classification { probabilities, labels, n_classes } => w.write_prediction(
                    kept,
                    Some(&self.classes[labels[row]]),
                    &probabilities[row * n_classes..(row + 1) * n_classes],
                ),
            };
        }
        predictions.row_cells(row, &self.classes, &mut self.cells);
        match self.format {
            Format::Csv => {
                let w = self.csv.as_mut().context("csv writer")?;
                for (value, kind) in kept.iter().zip(&self.kept_types) {
                    w.write_field(value_text(value, kind))?;
                }
                for cell in &self.cells {
                    w.write_field(cell)?;
                }
                w.write_field("")?;
                w.write_record(None::<&[u8]>)?;
            }
            Format::Jsonl => {
                let mut object = self.kept_object(kept);
                for (name, cell) in self.columns.iter().zip(&self.cells) {
                    // Numbers are written from the same shortest text as in CSV, so both formats
                    // carry identical bits.
                    let value = match cell.parse::<f64>() {
                        Ok(_) if name != output::LABEL => serde_json::from_str(cell).unwrap_or(Value::Null),
                        _ => Value::from(cell.as_str()),
                    };
                    object.insert(name.clone(), value);
                }
                let w = self.plain.as_mut().context("jsonl writer")?;
                serde_json::to_writer(&mut *w, &object)?;
                w.write_all(b"\n")?;
            }
            Format::Parquet => bail!("the Parquet writer is missing"),
        }
        Ok(())
    }

    /// The kept columns of a JSON Lines output row; 32-bit floats in their own shortest text.
    fn kept_object(&self, kept: &[Value]) -> serde_json::Map<String, Value> {
        let mut object = serde_json::Map::new();
        for ((name, value), kind) in self.keep.iter().zip(kept).zip(&self.kept_types) {
            let value = match value {
                Value::Number(n) if kind.is_f32() => n
                    .as_f64()
                    .and_then(|f| serde_json::from_str(&(f as f32).to_string()).ok())
                    .unwrap_or_else(|| value.clone()),
                _ => value.clone(),
            };
            object.insert(name.clone(), value);
        }
        object
    }

    fn write_error(&mut self, kept: &[Value], message: &str) -> anyhow::Result<()> {
        match self.format {
            Format::Parquet => self.parquet.as_mut().context("parquet writer")?.write_error(kept, message)?,
            Format::Csv => {
                let w = self.csv.as_mut().context("csv writer")?;
                for (value, kind) in kept.iter().zip(&self.kept_types) {
                    w.write_field(value_text(value, kind))?;
                }
                for _ in &self.columns {
                    w.write_field("")?;
                }
                w.write_field(message)?;
                w.write_record(None::<&[u8]>)?;
            }
            Format::Jsonl => {
                let mut object = self.kept_object(kept);
                object.insert("error".into(), Value::from(message));
                let w = self.plain.as_mut().context("jsonl writer")?;
                serde_json::to_writer(&mut *w, &object)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some(mut w) = self.csv {
            w.flush()?;
        }
        if let Some(mut w) = self.plain {
            w.flush()?;
        }
        if let Some(w) = self.parquet {
            w.finish()?;
        }
        Ok(())
    }
}

/// A kept value as a text cell; 32-bit floats in their own shortest text.
fn value_text(value: &Value, kind: &KeptType) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) if kind.is_f32() => n.as_f64().map_or_else(|| n.to_string(), |f| (f as f32).to_string()),
        other => other.to_string(),
    }
}
