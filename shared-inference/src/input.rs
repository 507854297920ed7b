//! Raw model inputs, column by column, as the transport delivered them. Every front end (HTTP v1
//! records, v2 tensors, CSV and JSON Lines rows, the trainer's data frames) builds a
//! [`ColumnBatch`]; turning raw values into features is the preprocessing's job, not this one's.

use crate::error::InputError;
use crate::schema::{ColumnKind, Schema};

/// One raw value of a record, borrowed from wherever it was parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

/// The values of one column for every row of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues<'a> {
    /// Numbers; NaN marks a missing value.
    Numeric(Vec<f64>),
    /// Categories; `None` marks a missing value.
    Categorical(Vec<Option<&'a str>>),
}

impl ColumnValues<'_> {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Numeric(v) => v.len(),
            ColumnValues::Categorical(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every feature column of a batch, in schema order, all of the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBatch<'a> {
    n_rows: usize,
    columns: Vec<ColumnValues<'a>>,
}

impl<'a> ColumnBatch<'a> {
    /// Checks that `columns` matches the schema's features in order, kind and length.
    pub fn new(schema: &Schema, columns: Vec<ColumnValues<'a>>) -> Result<Self, InputError> {
        let expected = schema.feature_names();
        if columns.len() != schema.features.len() {
            let column = expected.get(columns.len()).cloned().unwrap_or_default();
            return Err(InputError::MissingColumn { column, expected });
        }
        let n_rows = columns.first().map_or(0, ColumnValues::len);
        for (spec, values) in schema.features.iter().zip(&columns) {
            let kind_ok = matches!(
                (spec.kind, values),
                (ColumnKind::Numeric, ColumnValues::Numeric(_))
                    | (ColumnKind::Categorical, ColumnValues::Categorical(_))
            );
            if !kind_ok {
                let got = match values {
                    ColumnValues::Numeric(_) => "numbers".to_string(),
                    ColumnValues::Categorical(_) => "text".to_string(),
                };
                return Err(match spec.kind {
                    ColumnKind::Numeric => InputError::NotANumber { column: spec.name.clone(), row: 0, got },
                    ColumnKind::Categorical => InputError::NotText { column: spec.name.clone(), row: 0, got },
                });
            }
            if values.len() != n_rows {
                return Err(InputError::RowCountMismatch {
                    column: spec.name.clone(),
                    first: schema.features[0].name.clone(),
                    expected: n_rows,
                    got: values.len(),
                });
            }
        }
        Ok(Self { n_rows, columns })
    }

    /// Builds a batch from records, each a list of `(column, value)` pairs in any order.
    /// Text given for a numeric column is parsed as a number; a number given for a categorical
    /// column is an error, because categories are matched as text.
    pub fn from_records<R>(schema: &Schema, records: &'a [R]) -> Result<Self, InputError>
    where
        R: AsRef<[(&'a str, Cell<'a>)]>,
    {
        let mut builder = RowBuilder::new(schema, records.len());
        for (row, record) in records.iter().enumerate() {
            builder.push_row(row, record.as_ref().iter().copied())?;
        }
        builder.finish()
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn columns(&self) -> &[ColumnValues<'a>] {
        &self.columns
    }
}

/// Fills a [`ColumnBatch`] one record at a time; used by every record-shaped front end.
#[derive(Debug)]
pub struct RowBuilder<'s, 'a> {
    schema: &'s Schema,
    columns: Vec<ColumnValues<'a>>,
    seen: Vec<bool>,
    /// Per-record scratch, reused so that appending a record allocates nothing.
    cells: Vec<Cell<'a>>,
    numbers: Vec<f64>,
}

impl<'s, 'a> RowBuilder<'s, 'a> {
    pub fn new(schema: &'s Schema, capacity: usize) -> Self {
        let columns = schema
            .features
            .iter()
            .map(|c| match c.kind {
                ColumnKind::Numeric => ColumnValues::Numeric(Vec::with_capacity(capacity)),
                ColumnKind::Categorical => ColumnValues::Categorical(Vec::with_capacity(capacity)),
            })
            .collect();
        let n_columns = schema.features.len();
        Self {
            schema,
            columns,
            seen: vec![false; n_columns],
            cells: Vec::with_capacity(n_columns),
            numbers: Vec::with_capacity(n_columns),
        }
    }

    /// Appends one record. `row` is only used in error messages. A column the record does not
    /// name is an error; so is a column the model does not know. On error nothing is appended.
    pub fn push_row<I>(&mut self, row: usize, cells: I) -> Result<(), InputError>
    where
        I: IntoIterator<Item = (&'a str, Cell<'a>)>,
    {
        self.seen.iter_mut().for_each(|s| *s = false);
        let mut parsed = std::mem::take(&mut self.cells);
        parsed.clear();
        parsed.resize(self.columns.len(), Cell::Missing);
        let result = self.place_cells(cells, &mut parsed).and_then(|()| self.push_cells(row, &parsed));
        self.cells = parsed;
        result
    }

    /// Puts a record's named cells into schema order in `parsed`, checking every name.
    fn place_cells<I>(&mut self, cells: I, parsed: &mut [Cell<'a>]) -> Result<(), InputError>
    where
        I: IntoIterator<Item = (&'a str, Cell<'a>)>,
    {
        for (i, (name, cell)) in cells.into_iter().enumerate() {
            let Some(index) = self.schema.position_from(i, name) else {
                return Err(InputError::UnknownColumn {
                    column: name.to_string(),
                    expected: self.schema.feature_names(),
                });
            };
            if std::mem::replace(&mut self.seen[index], true) {
                return Err(InputError::DuplicateColumn { column: name.to_string() });
            }
            parsed[index] = cell;
        }
        if let Some(index) = self.seen.iter().position(|s| !s) {
            return Err(InputError::MissingColumn {
                column: self.schema.features[index].name.clone(),
                expected: self.schema.feature_names(),
            });
        }
        Ok(())
    }

    /// Appends one record whose cells are already in schema order.
    pub fn push_cells(&mut self, row: usize, cells: &[Cell<'a>]) -> Result<(), InputError> {
        // Convert first, push second, so that a bad row leaves every column untouched.
        self.numbers.clear();
        for (spec, cell) in self.schema.features.iter().zip(cells) {
            if spec.kind == ColumnKind::Numeric {
                self.numbers.push(parse_number(&spec.name, row, *cell)?);
            } else if let Cell::Number(n) = cell {
                return Err(InputError::NotText { column: spec.name.clone(), row, got: format!("the number {n}") });
            }
        }
        let mut numbers = self.numbers.iter();
        for (values, cell) in self.columns.iter_mut().zip(cells) {
            match values {
                ColumnValues::Numeric(v) => v.push(numbers.next().copied().unwrap_or(f64::NAN)),
                ColumnValues::Categorical(v) => v.push(match cell {
                    Cell::Text(t) => Some(*t),
                    _ => None,
                }),
            }
        }
        Ok(())
    }

    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, ColumnValues::len)
    }

    pub fn finish(self) -> Result<ColumnBatch<'a>, InputError> {
        ColumnBatch::new(self.schema, self.columns)
    }
}

/// Reads a numeric cell: numbers pass through, text is parsed, empty text and `NA` are missing.
pub fn parse_number(column: &str, row: usize, cell: Cell<'_>) -> Result<f64, InputError> {
    match cell {
        Cell::Missing => Ok(f64::NAN),
        Cell::Number(n) => Ok(n),
        Cell::Text(t) => {
            let t = t.trim();
            if is_missing_text(t) {
                return Ok(f64::NAN);
            }
            t.parse::<f64>().map_err(|_| InputError::NotANumber {
                column: column.to_string(),
                row,
                got: format!("'{t}'"),
            })
        }
    }
}

/// The spellings of a missing value in text files: an empty cell or `NA`.
pub fn is_missing_text(text: &str) -> bool {
    text.is_empty() || text == "NA"
}
