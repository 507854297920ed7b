//! Parquet for `serving predict`: a reader that streams a file's row groups a chunk of rows at
//! a time, reading only the columns the model and `--keep` name, and a writer that buffers a
//! bounded number of rows per row group. Both work on Parquet's physical values directly, so a
//! number read is the number stored and a kept column is written back with the type it came
//! with.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};
use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as PhysicalType};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, Type, TypePtr};
use serde_json::Value;
use shared_inference::Cell;

/// How a Parquet column's values are read: what its physical and logical types make of it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    /// An integer; `unsigned` when annotated so (the stored bits are then read as unsigned).
    Integer {
        unsigned: bool,
    },
    /// A decimal: the stored integer times 10^-scale.
    Decimal {
        scale: i32,
    },
    /// A date, time or timestamp: an integer with a unit, not a plain number.
    Temporal,
    Float,
    Double,
    /// UTF-8 text (BYTE_ARRAY annotated as a string, an enum or JSON).
    Text,
    /// BYTE_ARRAY with no text annotation: read as text when it is valid UTF-8.
    Binary,
    /// INT96, FIXED_LEN_BYTE_ARRAY other than a decimal, and other annotations.
    Other,
}

fn kind(column: &ColumnDescPtr) -> Kind {
    let physical = column.physical_type();
    match column.logical_type_ref() {
        Some(LogicalType::String | LogicalType::Enum | LogicalType::Json) => return Kind::Text,
        Some(LogicalType::Decimal(decimal)) => return Kind::Decimal { scale: decimal.scale },
        Some(LogicalType::Date | LogicalType::Time(_) | LogicalType::Timestamp(_)) => return Kind::Temporal,
        Some(LogicalType::Integer(int)) => return Kind::Integer { unsigned: !int.is_signed },
        Some(_) => return Kind::Other,
        None => {}
    }
    match column.converted_type() {
        ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON => return Kind::Text,
        ConvertedType::DECIMAL => return Kind::Decimal { scale: column.type_scale() },
        ConvertedType::UINT_8 | ConvertedType::UINT_16 | ConvertedType::UINT_32 | ConvertedType::UINT_64 => {
            return Kind::Integer { unsigned: true };
        }
        ConvertedType::DATE
        | ConvertedType::TIME_MILLIS
        | ConvertedType::TIME_MICROS
        | ConvertedType::TIMESTAMP_MILLIS
        | ConvertedType::TIMESTAMP_MICROS
        | ConvertedType::INTERVAL => return Kind::Temporal,
        _ => {}
    }
    match physical {
        PhysicalType::BOOLEAN => Kind::Bool,
        PhysicalType::INT32 | PhysicalType::INT64 => Kind::Integer { unsigned: false },
        PhysicalType::FLOAT => Kind::Float,
        PhysicalType::DOUBLE => Kind::Double,
        PhysicalType::BYTE_ARRAY => Kind::Binary,
        PhysicalType::INT96 | PhysicalType::FIXED_LEN_BYTE_ARRAY => Kind::Other,
    }
}

/// A column's type as a person reads it, for error messages.
fn type_text(column: &ColumnDescPtr) -> String {
    match column.logical_type_ref() {
        Some(logical) => format!("{} ({logical:?})", column.physical_type()),
        None if column.converted_type() != ConvertedType::NONE => {
            format!("{} ({})", column.physical_type(), column.converted_type())
        }
        None => column.physical_type().to_string(),
    }
}

/// The non-null values of one column's chunk (read) or row group (written), by physical type.
#[derive(Debug)]
enum Values {
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

impl Values {
    fn for_type(physical: PhysicalType) -> Self {
        match physical {
            PhysicalType::BOOLEAN => Values::Bool(Vec::new()),
            PhysicalType::INT32 => Values::I32(Vec::new()),
            PhysicalType::INT64 => Values::I64(Vec::new()),
            PhysicalType::FLOAT => Values::F32(Vec::new()),
            PhysicalType::DOUBLE => Values::F64(Vec::new()),
            PhysicalType::BYTE_ARRAY => Values::Bytes(Vec::new()),
            // INT96 is neither read as a feature nor kept (see `ParquetReader::open`).
            PhysicalType::FIXED_LEN_BYTE_ARRAY | PhysicalType::INT96 => Values::Fixed(Vec::new()),
        }
    }

    fn clear(&mut self) {
        match self {
            Values::Bool(v) => v.clear(),
            Values::I32(v) => v.clear(),
            Values::I64(v) => v.clear(),
            Values::F32(v) => v.clear(),
            Values::F64(v) => v.clear(),
            Values::Bytes(v) => v.clear(),
            Values::Fixed(v) => v.clear(),
        }
    }
}

/// One chunk of one column: the definition levels (when the column is optional) and the
/// non-null values, in Parquet's layout.
#[derive(Debug)]
struct Buffer {
    name: String,
    kind: Kind,
    max_def: i16,
    defs: Vec<i16>,
    values: Values,
    /// For each row of the chunk, its index in `values`, or `None` where the value is null.
    at: Vec<Option<usize>>,
}

impl Buffer {
    fn new(column: &ColumnDescPtr) -> Self {
        let values = Values::for_type(column.physical_type());
        Self {
            name: column.name().to_string(),
            kind: kind(column),
            max_def: column.max_def_level(),
            defs: Vec::new(),
            values,
            at: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.defs.clear();
        self.at.clear();
        self.values.clear();
    }

    /// Reads up to `rows` more rows from `reader`; returns how many it read.
    fn read(&mut self, reader: &mut ColumnReader, rows: usize) -> anyhow::Result<usize> {
        let defs = (self.max_def > 0).then_some(&mut self.defs);
        let (records, _, _) = match (reader, &mut self.values) {
            (ColumnReader::BoolColumnReader(r), Values::Bool(v)) => r.read_records(rows, defs, None, v),
            (ColumnReader::Int32ColumnReader(r), Values::I32(v)) => r.read_records(rows, defs, None, v),
            (ColumnReader::Int64ColumnReader(r), Values::I64(v)) => r.read_records(rows, defs, None, v),
            (ColumnReader::FloatColumnReader(r), Values::F32(v)) => r.read_records(rows, defs, None, v),
            (ColumnReader::DoubleColumnReader(r), Values::F64(v)) => r.read_records(rows, defs, None, v),
            (ColumnReader::ByteArrayColumnReader(r), Values::Bytes(v)) => r.read_records(rows, defs, None, v),
            (ColumnReader::FixedLenByteArrayColumnReader(r), Values::Fixed(v)) => r.read_records(rows, defs, None, v),
            _ => bail!("column '{}': its reader does not match its type", self.name),
        }
        .with_context(|| format!("reading column '{}'", self.name))?;
        Ok(records)
    }

    /// Fills `at` from the definition levels once a chunk is read.
    fn index(&mut self, rows: usize) -> anyhow::Result<()> {
        self.at.clear();
        if self.max_def == 0 {
            self.at.extend((0..rows).map(Some));
        } else {
            let mut next = 0;
            for &def in &self.defs {
                if def == self.max_def {
                    self.at.push(Some(next));
                    next += 1;
                } else {
                    self.at.push(None);
                }
            }
        }
        if self.at.len() != rows {
            bail!("column '{}': {} values for {rows} rows", self.name, self.at.len());
        }
        Ok(())
    }

    /// The cell a model feature reads from row `row`, or why the value cannot be one.
    fn cell(&self, row: usize) -> Result<Cell<'_>, String> {
        let Some(i) = self.at[row] else { return Ok(Cell::Missing) };
        Ok(match (&self.values, self.kind) {
            (Values::I32(v), Kind::Integer { unsigned: true }) => Cell::Number(f64::from(v[i] as u32)),
            (Values::I32(v), Kind::Integer { .. }) => Cell::Number(f64::from(v[i])),
            (Values::I64(v), Kind::Integer { unsigned: true }) => Cell::Number(v[i] as u64 as f64),
            (Values::I64(v), Kind::Integer { .. }) => Cell::Number(v[i] as f64),
            (Values::I32(v), Kind::Decimal { scale }) => Cell::Number(decimal(i128::from(v[i]), scale)),
            (Values::I64(v), Kind::Decimal { scale }) => Cell::Number(decimal(i128::from(v[i]), scale)),
            (Values::Bytes(v), Kind::Decimal { scale }) => Cell::Number(decimal(big_endian(v[i].data())?, scale)),
            (Values::Fixed(v), Kind::Decimal { scale }) => Cell::Number(decimal(big_endian(v[i].data())?, scale)),
            (Values::F32(v), _) => Cell::Number(f64::from(v[i])),
            (Values::F64(v), _) => Cell::Number(v[i]),
            (Values::Bytes(v), _) => Cell::Text(
                std::str::from_utf8(v[i].data())
                    .map_err(|_| format!("column '{}': the value is not UTF-8 text", self.name))?,
            ),
            _ => return Err(format!("column '{}': its type cannot be a model input", self.name)),
        })
    }

    /// The value a kept column carries for row `row`, exactly (see [`KeptType`]).
    fn kept(&self, row: usize) -> Value {
        let Some(i) = self.at[row] else { return Value::Null };
        match (&self.values, self.kind) {
            (Values::Bool(v), _) => Value::Bool(v[i]),
            (Values::I32(v), Kind::Integer { unsigned: true }) => Value::from(v[i] as u32),
            (Values::I32(v), _) => Value::from(v[i]),
            (Values::I64(v), Kind::Integer { unsigned: true }) => Value::from(v[i] as u64),
            (Values::I64(v), _) => Value::from(v[i]),
            (Values::F32(v), _) => number(f64::from(v[i])),
            (Values::F64(v), _) => number(v[i]),
            // `check_keepable` let through only text here; a value that is not UTF-8 is kept
            // with its bad bytes replaced, and the row's features still decide its outcome.
            (Values::Bytes(v), _) => Value::from(String::from_utf8_lossy(v[i].data()).into_owned()),
            (Values::Fixed(_), _) => Value::Null,
        }
    }
}

/// A float as JSON: NaN and the infinities, which JSON has no numbers for, become text.
fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or_else(|| Value::from(value.to_string()), Value::Number)
}

fn decimal(unscaled: i128, scale: i32) -> f64 {
    unscaled as f64 / 10f64.powi(scale)
}

/// A big-endian two's-complement integer of at most 16 bytes, as decimals are stored.
fn big_endian(bytes: &[u8]) -> Result<i128, String> {
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(format!("a decimal of {} bytes (1 to 16 are read)", bytes.len()));
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut full = [fill; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(i128::from_be_bytes(full))
}

/// The type a kept column is written with: its Parquet type when it came from a Parquet file
/// (so it is written back exactly), else text.
#[derive(Debug, Clone)]
pub enum KeptType {
    Text,
    /// Whatever JSON value the input held (JSON Lines input).
    Json,
    Parquet(TypePtr),
}

impl KeptType {
    /// Whether a CSV or JSON Lines output can carry this column without changing its meaning:
    /// dates, times, timestamps and decimals are stored as integers with a unit or a scale,
    /// which only a Parquet output keeps.
    fn text_safe(&self) -> Result<(), String> {
        if let KeptType::Parquet(t) = self {
            let info = t.get_basic_info();
            let annotated = matches!(
                info.logical_type_ref(),
                Some(LogicalType::Decimal(_) | LogicalType::Date | LogicalType::Time(_) | LogicalType::Timestamp(_))
            ) || matches!(
                info.converted_type(),
                ConvertedType::DECIMAL
                    | ConvertedType::DATE
                    | ConvertedType::TIME_MILLIS
                    | ConvertedType::TIME_MICROS
                    | ConvertedType::TIMESTAMP_MILLIS
                    | ConvertedType::TIMESTAMP_MICROS
            );
            if annotated {
                return Err(format!(
                    "--keep {}: a {} column is kept only in a Parquet output (CSV and JSON Lines would show \
                     its stored integer)",
                    info.name(),
                    info.logical_type_ref().map_or_else(|| info.converted_type().to_string(), |l| format!("{l:?}"))
                ));
            }
        }
        Ok(())
    }

    /// Whether the column holds 32-bit floats (written back in their own shortest text).
    pub fn is_f32(&self) -> bool {
        matches!(self, KeptType::Parquet(t) if t.get_physical_type() == PhysicalType::FLOAT)
    }
}

/// Checks that kept columns of these types can be written in a text output.
pub fn check_text_output(kept: &[KeptType]) -> anyhow::Result<()> {
    for k in kept {
        k.text_safe().map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// A Parquet file read a chunk of rows at a time.
pub struct ParquetReader {
    file: SerializedFileReader<File>,
    /// Leaf column index in the file, per buffer.
    columns: Vec<usize>,
    /// The model's features (in schema order), then the kept columns.
    buffers: Vec<Buffer>,
    n_features: usize,
    row_group: usize,
    readers: Option<Vec<ColumnReader>>,
    kept_types: Vec<KeptType>,
    /// Rows read so far (the 1-based number of the next row is this + 1).
    rows_read: u64,
}

impl std::fmt::Debug for ParquetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetReader").field("row_group", &self.row_group).field("rows_read", &self.rows_read).finish()
    }
}

impl ParquetReader {
    /// Opens `file` and finds the columns named `features` (which the model reads) and `keep`.
    pub fn open(file: File, features: &[String], keep: &[String]) -> anyhow::Result<Self> {
        let file = SerializedFileReader::new(file).context("reading the Parquet footer (is this a Parquet file?)")?;
        let schema = file.metadata().file_metadata().schema_descr_ptr();
        let all: Vec<ColumnDescPtr> = (0..schema.num_columns()).map(|i| schema.column(i)).collect();
        let find = |name: &str, what: &str| -> anyhow::Result<usize> {
            let mut found = all.iter().enumerate().filter(|(_, c)| c.path().parts().first().is_some_and(|p| p == name));
            let Some((index, column)) = found.next() else {
                let names: Vec<&str> = schema.root_schema().get_fields().iter().map(|f| f.name()).collect();
                bail!("the input has no column '{name}' ({what}); its columns are {names:?}");
            };
            if found.next().is_some() || column.path().parts().len() != 1 || column.max_rep_level() > 0 {
                bail!("column '{name}' ({what}) is nested (a group, list or map); only flat columns are read");
            }
            Ok(index)
        };
        let mut columns = Vec::new();
        let mut buffers = Vec::new();
        for name in features {
            let index = find(name, "model feature")?;
            let column = &all[index];
            match kind(column) {
                Kind::Bool | Kind::Temporal | Kind::Other => {
                    bail!("column '{name}' is {}: a model feature is read from numbers or text", type_text(column))
                }
                _ => {}
            }
            columns.push(index);
            buffers.push(Buffer::new(column));
        }
        let mut kept_types = Vec::new();
        for name in keep {
            let index = find(name, "--keep")?;
            let column = &all[index];
            let keepable = match column.physical_type() {
                PhysicalType::BOOLEAN | PhysicalType::INT32 | PhysicalType::INT64 => true,
                PhysicalType::FLOAT | PhysicalType::DOUBLE => true,
                PhysicalType::BYTE_ARRAY => kind(column) == Kind::Text,
                PhysicalType::INT96 | PhysicalType::FIXED_LEN_BYTE_ARRAY => false,
            };
            if !keepable {
                bail!(
                    "--keep {name}: a {} column cannot be kept (kept columns are booleans, integers, floats or \
                     text)",
                    type_text(column)
                );
            }
            columns.push(index);
            buffers.push(Buffer::new(column));
            kept_types.push(KeptType::Parquet(column.self_type_ptr()));
        }
        Ok(Self {
            file,
            columns,
            buffers,
            n_features: features.len(),
            row_group: 0,
            readers: None,
            kept_types,
            rows_read: 0,
        })
    }

    /// The types of the kept columns, in `--keep` order.
    pub fn kept_types(&self) -> &[KeptType] {
        &self.kept_types
    }

    /// Reads the next `max_rows` rows (fewer at the end of the file; 0 once it is done) into the
    /// buffers, across row groups as needed.
    pub fn read_chunk(&mut self, max_rows: usize) -> anyhow::Result<Chunk<'_>> {
        for buffer in &mut self.buffers {
            buffer.clear();
        }
        let mut rows = 0;
        while rows < max_rows {
            if self.readers.is_none() {
                if self.row_group >= self.file.num_row_groups() {
                    break;
                }
                let group = self.file.get_row_group(self.row_group).context("opening a row group")?;
                let readers = self
                    .columns
                    .iter()
                    .map(|&c| group.get_column_reader(c))
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("opening the columns of row group {}", self.row_group))?;
                self.readers = Some(readers);
            }
            let want = max_rows - rows;
            let readers = self.readers.as_mut().context("row group readers")?;
            let mut got: Option<usize> = None;
            for (buffer, reader) in self.buffers.iter_mut().zip(readers.iter_mut()) {
                let n = buffer.read(reader, want)?;
                match got {
                    None => got = Some(n),
                    Some(m) if m != n => bail!(
                        "row group {}: column '{}' has {n} rows where the others have {m}",
                        self.row_group,
                        buffer.name
                    ),
                    Some(_) => {}
                }
            }
            // A file read for no column at all (a model with no features cannot be written)
            // would never advance; every model has at least one feature.
            let got = got.unwrap_or(0);
            if got < want {
                self.readers = None;
                self.row_group += 1;
            }
            rows += got;
        }
        for buffer in &mut self.buffers {
            buffer.index(rows)?;
        }
        let first_row = self.rows_read + 1;
        self.rows_read += rows as u64;
        Ok(Chunk { buffers: &self.buffers, n_features: self.n_features, rows, first_row })
    }
}

/// The rows one [`ParquetReader::read_chunk`] read.
#[derive(Debug)]
pub struct Chunk<'r> {
    buffers: &'r [Buffer],
    n_features: usize,
    pub rows: usize,
    /// The 1-based number, in the file, of the chunk's first row.
    pub first_row: u64,
}

impl<'r> Chunk<'r> {
    /// Row `row`'s features in schema order, or the first reason one cannot be read.
    pub fn cells(&self, row: usize, out: &mut Vec<Cell<'r>>) -> Result<(), String> {
        out.clear();
        for buffer in &self.buffers[..self.n_features] {
            out.push(buffer.cell(row)?);
        }
        Ok(())
    }

    /// Row `row`'s kept values, in `--keep` order.
    pub fn kept(&self, row: usize) -> Vec<Value> {
        self.buffers[self.n_features..].iter().map(|b| b.kept(row)).collect()
    }
}

/// Rows per row group of a written file: large enough for readers to scan well, small enough
/// that the buffered rows stay a few MiB.
pub const ROW_GROUP_ROWS: usize = 1 << 17;

/// One output column's buffered rows.
#[derive(Debug)]
struct OutColumn {
    name: String,
    defs: Vec<i16>,
    values: Values,
}

impl OutColumn {
    fn push_null(&mut self) {
        self.defs.push(0);
    }

    fn push_f32(&mut self, value: f32) -> anyhow::Result<()> {
        let Values::F32(v) = &mut self.values else { bail!("column '{}' does not hold floats", self.name) };
        v.push(value);
        self.defs.push(1);
        Ok(())
    }

    fn push_text(&mut self, value: &str) -> anyhow::Result<()> {
        let Values::Bytes(v) = &mut self.values else { bail!("column '{}' does not hold text", self.name) };
        v.push(ByteArray::from(value));
        self.defs.push(1);
        Ok(())
    }

    /// A kept value, converted back to the column's physical type.
    fn push_value(&mut self, value: &Value) -> anyhow::Result<()> {
        if value.is_null() {
            self.push_null();
            return Ok(());
        }
        let name = &self.name;
        let wrong = || anyhow::anyhow!("kept column '{name}': the value {value} does not fit its type");
        match &mut self.values {
            Values::Bool(v) => v.push(value.as_bool().ok_or_else(wrong)?),
            // Unsigned 32- and 64-bit values were read as the stored bits reinterpreted, and go
            // back the same way.
            Values::I32(v) => v.push(match value.as_i64() {
                Some(i) => i32::try_from(i).or_else(|_| u32::try_from(i).map(|u| u as i32)).map_err(|_| wrong())?,
                None => return Err(wrong()),
            }),
            Values::I64(v) => v.push(match (value.as_i64(), value.as_u64()) {
                (Some(i), _) => i,
                (None, Some(u)) => u as i64,
                _ => return Err(wrong()),
            }),
            Values::F32(v) => v.push(float(value).ok_or_else(wrong)? as f32),
            Values::F64(v) => v.push(float(value).ok_or_else(wrong)?),
            Values::Bytes(v) => v.push(ByteArray::from(match value {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            })),
            Values::Fixed(_) => return Err(wrong()),
        }
        self.defs.push(1);
        Ok(())
    }

    fn clear(&mut self) {
        self.defs.clear();
        self.values.clear();
    }
}

/// A kept float: a number, or the text `number` made of NaN and the infinities.
fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok().filter(|f: &f64| !f.is_finite()),
        _ => None,
    }
}

fn text_type(name: &str) -> anyhow::Result<Type> {
    Ok(Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(Some(LogicalType::String))
        .build()?)
}

/// Writes prediction rows to a Parquet file, one row group per [`ROW_GROUP_ROWS`] rows.
pub struct ParquetWriter<W: Write + Send> {
    writer: Option<SerializedFileWriter<W>>,
    /// Kept columns, then the prediction columns, then `error`.
    columns: Vec<OutColumn>,
    n_kept: usize,
    /// Whether the first prediction column is the (text) label.
    labelled: bool,
    rows: usize,
}

impl<W: Write + Send> std::fmt::Debug for ParquetWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetWriter").field("rows", &self.rows).finish()
    }
}

impl<W: Write + Send> ParquetWriter<W> {
    /// `kept` names and types the kept columns, `predictions` the model's output columns (a
    /// label first when `labelled`, then floats).
    pub fn new(output: W, kept: &[(String, KeptType)], predictions: &[String], labelled: bool) -> anyhow::Result<Self> {
        let mut fields: Vec<TypePtr> = Vec::new();
        let mut columns = Vec::new();
        for (name, kind) in kept {
            let field = match kind {
                KeptType::Parquet(t) => {
                    let info = t.get_basic_info();
                    Type::primitive_type_builder(name, t.get_physical_type())
                        .with_repetition(Repetition::OPTIONAL)
                        .with_logical_type(info.logical_type_ref().cloned())
                        .with_converted_type(info.converted_type())
                        .with_precision(t.get_precision())
                        .with_scale(t.get_scale())
                        .build()?
                }
                KeptType::Text | KeptType::Json => text_type(name)?,
            };
            let values = match field.get_physical_type() {
                other @ (PhysicalType::INT96 | PhysicalType::FIXED_LEN_BYTE_ARRAY) => {
                    bail!("--keep {name}: {other} columns are not written")
                }
                physical => Values::for_type(physical),
            };
            fields.push(Arc::new(field));
            columns.push(OutColumn { name: name.clone(), defs: Vec::new(), values });
        }
        for (i, name) in predictions.iter().enumerate() {
            if labelled && i == 0 {
                fields.push(Arc::new(text_type(name)?));
                columns.push(OutColumn { name: name.clone(), defs: Vec::new(), values: Values::Bytes(Vec::new()) });
            } else {
                fields.push(Arc::new(
                    Type::primitive_type_builder(name, PhysicalType::FLOAT)
                        .with_repetition(Repetition::OPTIONAL)
                        .build()?,
                ));
                columns.push(OutColumn { name: name.clone(), defs: Vec::new(), values: Values::F32(Vec::new()) });
            }
        }
        fields.push(Arc::new(text_type("error")?));
        columns.push(OutColumn { name: "error".into(), defs: Vec::new(), values: Values::Bytes(Vec::new()) });
        let schema = Type::group_type_builder("schema").with_fields(fields).build()?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("tabular-ml serving {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(output, Arc::new(schema), Arc::new(properties))?;
        Ok(Self { writer: Some(writer), columns, n_kept: kept.len(), labelled, rows: 0 })
    }

    /// A scored row: its kept values, then the label (if any) and the floats.
    pub fn write_prediction(&mut self, kept: &[Value], label: Option<&str>, floats: &[f32]) -> anyhow::Result<()> {
        let (kept_columns, rest) = self.columns.split_at_mut(self.n_kept);
        for (column, value) in kept_columns.iter_mut().zip(kept) {
            column.push_value(value)?;
        }
        let mut outputs = rest.iter_mut();
        if self.labelled {
            let column = outputs.next().context("label column")?;
            column.push_text(label.context("a classification row without a label")?)?;
        }
        for &value in floats {
            outputs.next().context("a prediction column")?.push_f32(value)?;
        }
        outputs.next().context("error column")?.push_null();
        self.row_done()
    }

    /// A row that could not be scored: its kept values, null predictions, and the message.
    pub fn write_error(&mut self, kept: &[Value], message: &str) -> anyhow::Result<()> {
        let (kept_columns, rest) = self.columns.split_at_mut(self.n_kept);
        for (column, value) in kept_columns.iter_mut().zip(kept) {
            column.push_value(value)?;
        }
        let (error, outputs) = rest.split_last_mut().context("error column")?;
        for column in outputs {
            column.push_null();
        }
        error.push_text(message)?;
        self.row_done()
    }

    fn row_done(&mut self) -> anyhow::Result<()> {
        self.rows += 1;
        if self.rows == ROW_GROUP_ROWS {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn flush_row_group(&mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let writer = self.writer.as_mut().context("the Parquet writer is closed")?;
        let mut group = writer.next_row_group()?;
        for column in &mut self.columns {
            let mut out = group.next_column()?.context("the output schema has fewer columns than the rows")?;
            let defs = Some(column.defs.as_slice());
            match &column.values {
                Values::Bool(v) => out.typed::<parquet::data_type::BoolType>().write_batch(v, defs, None)?,
                Values::I32(v) => out.typed::<parquet::data_type::Int32Type>().write_batch(v, defs, None)?,
                Values::I64(v) => out.typed::<parquet::data_type::Int64Type>().write_batch(v, defs, None)?,
                Values::F32(v) => out.typed::<parquet::data_type::FloatType>().write_batch(v, defs, None)?,
                Values::F64(v) => out.typed::<parquet::data_type::DoubleType>().write_batch(v, defs, None)?,
                Values::Bytes(v) => out.typed::<ByteArrayType>().write_batch(v, defs, None)?,
                Values::Fixed(v) => out.typed::<FixedLenByteArrayType>().write_batch(v, defs, None)?,
            };
            out.close()?;
            column.clear();
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }

    /// Writes the last row group and the footer.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush_row_group()?;
        let writer = self.writer.take().context("the Parquet writer is closed")?;
        let mut inner = writer.into_inner()?;
        inner.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(name: &str, physical: PhysicalType, logical: Option<LogicalType>) -> TypePtr {
        Arc::new(
            Type::primitive_type_builder(name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()
                .expect("a valid column type"),
        )
    }

    #[test]
    fn kept_columns_come_back_with_their_type_and_their_exact_values() {
        let day = annotated("day", PhysicalType::INT32, Some(LogicalType::Date));
        let count = annotated("count", PhysicalType::INT32, Some(LogicalType::integer(32, false)));
        let weight = annotated("weight", PhysicalType::FLOAT, None);
        let kept = vec![
            ("day".to_string(), KeptType::Parquet(day)),
            ("count".to_string(), KeptType::Parquet(count)),
            ("weight".to_string(), KeptType::Parquet(weight)),
        ];
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("kept.parquet");
        let mut writer = ParquetWriter::new(File::create(&path).expect("create"), &kept, &["prediction".into()], false)
            .expect("writer");
        let rows = [
            vec![Value::from(19_000), Value::from(u32::MAX), number(f64::from(0.1f32))],
            vec![Value::Null, Value::from(7u32), number(f64::from(f32::MIN_POSITIVE))],
        ];
        writer.write_prediction(&rows[0], None, &[1.5]).expect("row 1");
        writer.write_error(&rows[1], "row 2: bad").expect("row 2");
        writer.finish().expect("footer");

        let names: Vec<String> = ["day", "count", "weight"].map(String::from).to_vec();
        let mut reader = ParquetReader::open(File::open(&path).expect("open"), &["prediction".into()], &names)
            .expect("the written file reads back");
        for (got, (_, want)) in reader.kept_types().iter().zip(&kept) {
            let (KeptType::Parquet(got), KeptType::Parquet(want)) = (got, want) else { panic!("not Parquet types") };
            assert_eq!(got.get_physical_type(), want.get_physical_type(), "{}", want.name());
            assert_eq!(
                got.get_basic_info().logical_type_ref(),
                want.get_basic_info().logical_type_ref(),
                "{}",
                want.name()
            );
        }
        let chunk = reader.read_chunk(10).expect("rows");
        assert_eq!(chunk.rows, 2);
        assert_eq!(chunk.kept(0), rows[0], "values read back as written, unsigned and f32 included");
        assert_eq!(chunk.kept(1), rows[1]);
        let mut cells = Vec::new();
        chunk.cells(0, &mut cells).expect("a float cell");
        assert_eq!(cells, [Cell::Number(1.5)]);
        chunk.cells(1, &mut cells).expect("a null cell");
        assert_eq!(cells, [Cell::Missing], "an error row's prediction is null");
    }

    #[test]
    fn a_date_or_decimal_kept_column_is_refused_for_text_outputs_with_its_name() {
        let day = KeptType::Parquet(annotated("day", PhysicalType::INT32, Some(LogicalType::Date)));
        let error = check_text_output(&[KeptType::Text, day]).expect_err("a date in CSV").to_string();
        assert!(error.contains("--keep day") && error.contains("Parquet output"), "{error}");
        let plain = KeptType::Parquet(annotated("id", PhysicalType::INT64, None));
        assert!(check_text_output(&[plain, KeptType::Json]).is_ok());
    }

    #[test]
    fn decimals_read_from_their_big_endian_bytes() {
        assert_eq!(big_endian(&[0x01, 0x00]), Ok(256));
        assert_eq!(big_endian(&[0xff, 0xfe]), Ok(-2));
        assert!(big_endian(&[0; 17]).is_err());
        assert!((decimal(-12345, 2) - -123.45).abs() < 1e-12);
    }
}
