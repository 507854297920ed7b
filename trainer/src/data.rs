//! Loading labelled tabular data with polars (CSV or Parquet; `NA` and empty cells are missing)
//! into a [`Table`] of plain columns, and deciding column kinds and the task from the values.
//! Nothing here transforms features: that is `shared-inference`'s preprocessing.

use std::path::Path;

use anyhow::{Context, bail};
use polars_core::prelude::{DataFrame, DataType};
use polars_io::prelude::{CsvReadOptions, NullValues, ParquetReader, SerReader};
use shared_inference::input::{is_missing_text, parse_number};
use shared_inference::{Cell, ColumnBatch, ColumnKind, ColumnValues, Schema, Task};

/// One column of a loaded file.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers (integers and booleans included); NaN marks a missing value.
    Numeric { values: Vec<f64>, integral: bool },
    /// Text; `None` marks a missing value.
    Text(Vec<Option<String>>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric { values, .. } => values.len(),
            Column::Text(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded file: named columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
    pub n_rows: usize,
}

impl Table {
    pub fn column(&self, name: &str) -> anyhow::Result<&Column> {
        match self.names.iter().position(|n| n == name) {
            Some(index) => Ok(&self.columns[index]),
            None => bail!("column '{name}' is not in the data; its columns are {:?}", self.names),
        }
    }

    /// Reads a CSV or Parquet file, chosen by extension.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let frame = read_frame(path).with_context(|| format!("reading {}", path.display()))?;
        let table = Self::from_frame(&frame).with_context(|| format!("reading {}", path.display()))?;
        if table.n_rows == 0 {
            bail!("{} has no data rows", path.display());
        }
        Ok(table)
    }

    pub fn from_frame(frame: &DataFrame) -> anyhow::Result<Self> {
        let mut names = Vec::new();
        let mut columns = Vec::new();
        for column in frame.columns() {
            names.push(column.name().to_string());
            columns.push(convert(column)?);
        }
        Ok(Self { names, columns, n_rows: frame.height() })
    }

    /// Keeps only the given rows, in the given order.
    pub fn take(&self, rows: &[usize]) -> Table {
        let columns = self
            .columns
            .iter()
            .map(|column| match column {
                Column::Numeric { values, integral } => {
                    Column::Numeric { values: rows.iter().map(|&r| values[r]).collect(), integral: *integral }
                }
                Column::Text(values) => Column::Text(rows.iter().map(|&r| values[r].clone()).collect()),
            })
            .collect();
        Table { names: self.names.clone(), columns, n_rows: rows.len() }
    }

    /// Converts columns whose stored type differs from the kind the schema gives them: text in
    /// a numeric column is parsed the way serving parses text (a value that does not parse is an
    /// error naming the column and row), numbers in a categorical column become text.
    pub fn conform(mut self, schema: &Schema) -> anyhow::Result<Self> {
        for spec in &schema.features {
            let index = self.names.iter().position(|n| n == &spec.name).with_context(|| {
                format!("column '{}' is not in the data; its columns are {:?}", spec.name, self.names)
            })?;
            let converted = match (spec.kind, &self.columns[index]) {
                (ColumnKind::Numeric, Column::Text(values)) => {
                    let parsed = values
                        .iter()
                        .enumerate()
                        .map(|(row, v)| {
                            let cell = v.as_deref().map_or(Cell::Missing, Cell::Text);
                            parse_number(&spec.name, row, cell)
                                .map_err(|e| anyhow::anyhow!("data row {}: {e}", row + 1))
                        })
                        .collect::<anyhow::Result<Vec<f64>>>()?;
                    Column::Numeric { values: parsed, integral: false }
                }
                (ColumnKind::Categorical, Column::Numeric { values, .. }) => {
                    Column::Text(values.iter().map(|v| (!v.is_nan()).then(|| v.to_string())).collect())
                }
                _ => continue,
            };
            self.columns[index] = converted;
        }
        Ok(self)
    }

    /// The schema's feature columns as a batch for the shared preprocessing; call
    /// [`Table::conform`] first.
    pub fn feature_batch<'a>(&'a self, schema: &Schema) -> anyhow::Result<ColumnBatch<'a>> {
        let mut values = Vec::with_capacity(schema.features.len());
        for spec in &schema.features {
            values.push(match (spec.kind, self.column(&spec.name)?) {
                (ColumnKind::Numeric, Column::Numeric { values, .. }) => ColumnValues::Numeric(values.clone()),
                (ColumnKind::Categorical, Column::Text(v)) => {
                    ColumnValues::Categorical(v.iter().map(Option::as_deref).collect())
                }
                _ => bail!("column '{}' was not conformed to the schema", spec.name),
            });
        }
        Ok(ColumnBatch::new(schema, values)?)
    }
}

fn read_frame(path: &Path) -> anyhow::Result<DataFrame> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    if metadata.len() == 0 {
        bail!("the file is empty");
    }
    match extension.as_str() {
        "csv" => {
            let null_values = NullValues::AllColumns(vec!["NA".into(), "".into()]);
            let frame = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .map_parse_options(|o| o.with_null_values(Some(null_values.clone())))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))?
                .finish()?;
            Ok(frame)
        }
        "parquet" | "pq" => {
            let file = std::fs::File::open(path)?;
            Ok(ParquetReader::new(file).finish()?)
        }
        other => bail!("unsupported file type '.{other}': use .csv or .parquet"),
    }
}

fn convert(column: &polars_core::prelude::Column) -> anyhow::Result<Column> {
    let name = column.name().to_string();
    let dtype = column.dtype().clone();
    if dtype.is_primitive_numeric() || dtype == DataType::Boolean {
        let integral = dtype.is_integer() || dtype == DataType::Boolean;
        let floats = column.cast(&DataType::Float64).map_err(|e| anyhow::anyhow!("column '{name}': {e}"))?;
        let values = floats.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        Ok(Column::Numeric { values, integral })
    } else if dtype == DataType::String {
        let values = column.str()?.iter().map(|v| v.filter(|t| !is_missing_text(t)).map(str::to_string)).collect();
        Ok(Column::Text(values))
    } else if dtype == DataType::Null {
        Ok(Column::Text(vec![None; column.len()]))
    } else {
        let text =
            column.cast(&DataType::String).map_err(|e| anyhow::anyhow!("column '{name}' of type {dtype}: {e}"))?;
        Ok(Column::Text(text.str()?.iter().map(|v| v.map(str::to_string)).collect()))
    }
}

/// Decides each feature column's kind: text is categorical, numbers are numeric, unless the
/// recipe says otherwise. A text column whose values are mostly numbers is an error that names
/// the first value that is not one, since that is almost always a data problem.
pub fn infer_kind(table: &Table, name: &str, declared: Option<ColumnKind>) -> anyhow::Result<ColumnKind> {
    let column = table.column(name)?;
    match (column, declared) {
        (_, Some(ColumnKind::Categorical)) => Ok(ColumnKind::Categorical),
        (Column::Numeric { .. }, _) => Ok(ColumnKind::Numeric),
        (Column::Text(values), declared) => {
            let present: Vec<(usize, &str)> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.as_deref().map(|t| (i, t.trim())))
                .filter(|(_, t)| !t.is_empty())
                .collect();
            let numeric = present.iter().filter(|(_, t)| t.trim().parse::<f64>().is_ok()).count();
            let first_bad = present.iter().find(|(_, t)| t.trim().parse::<f64>().is_err());
            let looks_numeric = !present.is_empty() && numeric * 10 >= present.len() * 9;
            match (declared, first_bad) {
                (Some(ColumnKind::Numeric), Some((row, text))) | (None, Some((row, text)))
                    if declared.is_some() || looks_numeric =>
                {
                    bail!(
                        "column '{name}' is numeric but data row {} holds '{text}' \
                         (declare it in data.categorical if it really is a category)",
                        row + 1
                    )
                }
                (Some(ColumnKind::Numeric), None) => Ok(ColumnKind::Numeric),
                _ => Ok(ColumnKind::Categorical),
            }
        }
    }
}

/// Decides the task from the target's values: text, booleans or a few distinct integers are
/// classification (binary with two classes); any other numbers are regression.
pub fn infer_task(target: &Column) -> Task {
    const MAX_INTEGER_CLASSES: usize = 10;
    let n_classes = |values: &mut Vec<String>| {
        values.sort();
        values.dedup();
        values.len()
    };
    let classes = match target {
        Column::Text(values) => n_classes(&mut values.iter().flatten().cloned().collect()),
        Column::Numeric { values, integral: true } => {
            let mut distinct: Vec<String> = values.iter().filter(|v| !v.is_nan()).map(|v| v.to_string()).collect();
            let n = n_classes(&mut distinct);
            if n > MAX_INTEGER_CLASSES {
                return Task::Regression;
            }
            n
        }
        Column::Numeric { integral: false, .. } => return Task::Regression,
    };
    if classes == 2 { Task::BinaryClassification } else { Task::MulticlassClassification }
}

/// The target as class names (classification) or numbers (regression), row by row; a missing
/// target is an error naming the row, because a row without a label cannot be trained on.
pub fn target_labels(column: &Column, name: &str) -> anyhow::Result<Vec<String>> {
    let mut labels = Vec::with_capacity(column.len());
    for row in 0..column.len() {
        let label = match column {
            Column::Text(values) => values[row].clone(),
            Column::Numeric { values, .. } => (!values[row].is_nan()).then(|| values[row].to_string()),
        };
        match label {
            Some(label) => labels.push(label),
            None => bail!("target column '{name}' is missing a value at data row {}", row + 1),
        }
    }
    Ok(labels)
}

pub fn target_numbers(column: &Column, name: &str) -> anyhow::Result<Vec<f64>> {
    match column {
        Column::Numeric { values, .. } => {
            if let Some(row) = values.iter().position(|v| !v.is_finite()) {
                bail!("target column '{name}' is missing a value at data row {}", row + 1);
            }
            Ok(values.clone())
        }
        Column::Text(values) => values
            .iter()
            .enumerate()
            .map(|(row, v)| match v.as_deref().map(|t| t.trim().parse::<f64>()) {
                Some(Ok(n)) if n.is_finite() => Ok(n),
                _ => bail!(
                    "target column '{name}' must hold numbers for regression, but data row {} holds {v:?}",
                    row + 1
                ),
            })
            .collect(),
    }
}
