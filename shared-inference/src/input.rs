//! Raw model inputs, column by column, as the transport delivered them. Every front end (HTTP v1
//! records, v2 tensors, CSV and JSON Lines rows, the trainer's data frames) builds a
//! [`ColumnBatch`]; turning raw values into features is the preprocessing's job, not this one's.

use crate::error::InputError;
use crate::schema::{ColumnKind, Schema, same_text};

/// One raw value of a record, borrowed from wherever it was parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// No value (JSON `null`, an absent cell): imputed by the preprocessing.
    Missing,
    /// A number, for a numeric column (NaN is missing too); a categorical column refuses it.
    Number(f64),
    /// Text: a category, or a number written as text for a numeric column (see
    /// [`parse_number`]).
    Text(&'a str),
}

/// The values of one column for every row of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues<'a> {
    /// Numbers; NaN marks a missing value.
    Numeric(Vec<f64>),
    /// Categories; `None`, or text [`is_missing_text`] accepts, marks a missing value.
    Categorical(Vec<Option<&'a str>>),
}

impl ColumnValues<'_> {
    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Numeric(v) => v.len(),
            ColumnValues::Categorical(v) => v.len(),
        }
    }

    /// Whether there are no rows.
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
    /// Checks that `columns` matches the schema's features in order, kind and length: one
    /// [`ColumnValues`] per feature, in schema order, each `[n_rows]`. A batch of no columns, for
    /// a schema of no features, has no rows.
    ///
    /// # Errors
    /// [`InputError::MissingColumn`] for fewer columns than features,
    /// [`InputError::ColumnCount`] for more, [`InputError::NotANumber`] or
    /// [`InputError::NotText`] (with `row` 0) for a column of the wrong kind, and
    /// [`InputError::RowCountMismatch`] for a column whose length differs from the first's.
    pub fn new(schema: &Schema, columns: Vec<ColumnValues<'a>>) -> Result<Self, InputError> {
        let expected = schema.feature_names();
        if let Some(column) = expected.get(columns.len()).cloned() {
            return Err(InputError::MissingColumn { column, expected });
        }
        if columns.len() > expected.len() {
            return Err(InputError::ColumnCount { expected, got: columns.len() });
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
    /// column is an error, because categories are matched as text. Record `i` becomes row `i`.
    ///
    /// # Errors
    /// The first bad record's error, with its zero-based index as the row where the error has
    /// one: [`InputError::UnknownColumn`], [`InputError::DuplicateColumn`],
    /// [`InputError::MissingColumn`], [`InputError::NotANumber`] for text that does not parse,
    /// or [`InputError::NotText`] for a number given for a categorical column.
    pub fn from_records<R>(schema: &Schema, records: &'a [R]) -> Result<Self, InputError>
    where
        R: AsRef<[(&'a str, Cell<'a>)]>,
    {
        /// Records per block: a block's cells stay in the first-level cache while it is read
        /// column by column.
        const BLOCK: usize = 64;
        let mut builder = RowBuilder::new(schema, records.len());
        for (block_index, block) in records.chunks(BLOCK).enumerate() {
            if builder.push_block_in_order(block) {
                continue;
            }
            for (offset, record) in block.iter().enumerate() {
                builder.push_row(block_index * BLOCK + offset, record.as_ref().iter().copied())?;
            }
        }
        builder.finish()
    }

    /// The number of rows, the same in every column.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// One entry per schema feature, in schema order, each [`Self::n_rows`] long.
    pub fn columns(&self) -> &[ColumnValues<'a>] {
        &self.columns
    }
}

/// Fills a [`ColumnBatch`] one record at a time; used by every record-shaped front end.
#[derive(Debug)]
pub struct RowBuilder<'s, 'a> {
    schema: &'s Schema,
    columns: Vec<ColumnValues<'a>>,
    /// For each schema position, the last name that matched that column in that position.
    /// Callers usually name every record's columns with the same strings (a header row, static
    /// names), and the same string at the same position needs no comparison. The names are
    /// borrowed for `'a`, longer than this builder lives, so a string seen here cannot have
    /// changed since.
    recent: Vec<Option<&'a str>>,
}

impl<'s, 'a> RowBuilder<'s, 'a> {
    /// An empty builder for `schema`'s features, with room for `capacity` rows.
    pub fn new(schema: &'s Schema, capacity: usize) -> Self {
        let columns = schema
            .features
            .iter()
            .map(|c| match c.kind {
                ColumnKind::Numeric => ColumnValues::Numeric(Vec::with_capacity(capacity)),
                ColumnKind::Categorical => ColumnValues::Categorical(Vec::with_capacity(capacity)),
            })
            .collect();
        Self { schema, columns, recent: vec![None; schema.features.len()] }
    }

    /// Appends one record: `(column, value)` pairs in any order, one per feature. `row` is only
    /// used in error messages. A column the record does not name is an error; so is a column the
    /// model does not know. On error nothing is appended.
    ///
    /// # Errors
    /// [`InputError::UnknownColumn`], [`InputError::DuplicateColumn`],
    /// [`InputError::MissingColumn`], [`InputError::NotANumber`] for text that does not parse in
    /// a numeric column, [`InputError::NotText`] for a number in a categorical one.
    pub fn push_row<I>(&mut self, row: usize, cells: I) -> Result<(), InputError>
    where
        I: IntoIterator<Item = (&'a str, Cell<'a>)>,
    {
        let n_rows = self.n_rows();
        let result = self.push_named(row, n_rows, cells);
        if result.is_err() {
            self.truncate(n_rows);
        }
        result
    }

    /// Each cell goes straight to its column, in whatever order the record names them; the
    /// caller rolls back a record that fails part-way. A column already holding a value for
    /// this record was named twice; with no column named twice, a record that pushed fewer
    /// values than there are columns left one out.
    fn push_named<I>(&mut self, row: usize, n_rows: usize, cells: I) -> Result<(), InputError>
    where
        I: IntoIterator<Item = (&'a str, Cell<'a>)>,
    {
        let mut pushed = 0;
        for (i, (name, cell)) in cells.into_iter().enumerate() {
            let index = match self.recent.get(i) {
                Some(Some(seen)) if std::ptr::eq(*seen, name) => i,
                _ => match self.schema.position_from(i, name) {
                    Some(index) => {
                        if index == i {
                            self.recent[i] = Some(name);
                        }
                        index
                    }
                    None => {
                        return Err(InputError::UnknownColumn {
                            column: name.to_string(),
                            expected: self.schema.feature_names(),
                        });
                    }
                },
            };
            if self.columns[index].len() > n_rows {
                return Err(InputError::DuplicateColumn { column: name.to_string() });
            }
            self.push_value(index, row, cell)?;
            pushed += 1;
        }
        if pushed < self.columns.len() {
            // Fewer cells than columns were pushed, so at least one column did not grow.
            let index = self.columns.iter().position(|c| c.len() == n_rows).expect("a column without this row's value");
            return Err(InputError::MissingColumn {
                column: self.schema.features[index].name.clone(),
                expected: self.schema.feature_names(),
            });
        }
        Ok(())
    }

    /// Appends a block of records that each name every column once, in schema order, with cells
    /// of the column's kind (numbers or missing for numeric columns, text or missing for
    /// categorical ones): the usual shape, read column by column, so that each column's kind is
    /// decided once per block rather than once per cell. Returns false, having appended nothing,
    /// for a block with any other record; [`Self::push_row`] then takes it record by record,
    /// with the same results, and explains what is wrong with it.
    fn push_block_in_order<R>(&mut self, block: &[R]) -> bool
    where
        R: AsRef<[(&'a str, Cell<'a>)]>,
    {
        let n_columns = self.columns.len();
        for record in block {
            let cells = record.as_ref();
            if cells.len() != n_columns {
                return false;
            }
            for ((&(name, _), recent), spec) in cells.iter().zip(&mut self.recent).zip(&self.schema.features) {
                match recent {
                    Some(seen) if std::ptr::eq(*seen, name) => {}
                    _ if same_text(&spec.name, name) => *recent = Some(name),
                    _ => return false,
                }
            }
        }
        let n_rows = self.n_rows();
        for (index, column) in self.columns.iter_mut().enumerate() {
            let mut usual = true;
            // Every record of the block has a cell per column (checked above).
            let cell = |record: &R| record.as_ref()[index].1;
            match column {
                ColumnValues::Numeric(values) => values.extend(block.iter().map(|record| match cell(record) {
                    Cell::Number(n) => n,
                    Cell::Missing => f64::NAN,
                    Cell::Text(_) => {
                        usual = false;
                        f64::NAN
                    }
                })),
                ColumnValues::Categorical(values) => values.extend(block.iter().map(|record| match cell(record) {
                    Cell::Text(text) => Some(text),
                    Cell::Missing => None,
                    Cell::Number(_) => {
                        usual = false;
                        None
                    }
                })),
            }
            if !usual {
                self.truncate(n_rows);
                return false;
            }
        }
        true
    }

    /// Appends one record whose cells are already in schema order, one per feature. `row` is only
    /// used in error messages. On error nothing is appended.
    ///
    /// # Errors
    /// [`InputError::NotANumber`] for text that does not parse in a numeric column,
    /// [`InputError::NotText`] for a number in a categorical one.
    ///
    /// # Panics
    /// In debug builds, if `cells` does not hold one cell per feature. In release builds extra
    /// cells are ignored, and too few leave the columns uneven, which [`Self::finish`] reports.
    pub fn push_cells(&mut self, row: usize, cells: &[Cell<'a>]) -> Result<(), InputError> {
        debug_assert_eq!(cells.len(), self.columns.len(), "one cell per feature");
        let n_rows = self.n_rows();
        for (index, cell) in cells.iter().enumerate().take(self.columns.len()) {
            if let Err(error) = self.push_value(index, row, *cell) {
                self.truncate(n_rows);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Converts one cell for column `index` and appends it. Text given for a numeric column is
    /// parsed as a number; a number given for a categorical column is an error.
    #[inline]
    fn push_value(&mut self, index: usize, row: usize, cell: Cell<'a>) -> Result<(), InputError> {
        match &mut self.columns[index] {
            ColumnValues::Numeric(values) => values.push(match cell {
                Cell::Number(n) => n,
                Cell::Missing => f64::NAN,
                Cell::Text(_) => parse_number(&self.schema.features[index].name, row, cell)?,
            }),
            ColumnValues::Categorical(values) => values.push(match cell {
                Cell::Text(text) => Some(text),
                Cell::Missing => None,
                Cell::Number(n) => {
                    return Err(InputError::NotText {
                        column: self.schema.features[index].name.clone(),
                        row,
                        got: format!("the number {n}"),
                    });
                }
            }),
        }
        Ok(())
    }

    /// Drops every value past the first `n_rows` rows: undoes a record that failed part-way.
    fn truncate(&mut self, n_rows: usize) {
        for column in &mut self.columns {
            match column {
                ColumnValues::Numeric(values) => values.truncate(n_rows),
                ColumnValues::Categorical(values) => values.truncate(n_rows),
            }
        }
    }

    /// The number of records appended so far.
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, ColumnValues::len)
    }

    /// The batch of every record appended.
    ///
    /// # Errors
    /// [`InputError::RowCountMismatch`] if [`Self::push_cells`] was given too few cells for a
    /// record (possible in release builds only); records appended otherwise always make a batch.
    pub fn finish(self) -> Result<ColumnBatch<'a>, InputError> {
        ColumnBatch::new(self.schema, self.columns)
    }
}

/// Reads a numeric cell: numbers pass through, text is trimmed and parsed as `str::parse::<f64>`
/// parses it, and missing cells, empty text and `NA` become NaN. `column` and `row` only name the
/// cell in the error.
///
/// # Errors
/// [`InputError::NotANumber`] for text that is not a number.
pub fn parse_number(column: &str, row: usize, cell: Cell<'_>) -> Result<f64, InputError> {
    match cell {
        Cell::Missing => Ok(f64::NAN),
        Cell::Number(n) => Ok(n),
        Cell::Text(t) => {
            let t = t.trim();
            if is_missing_text(t) {
                return Ok(f64::NAN);
            }
            plain_decimal(t.as_bytes()).map_or_else(
                || {
                    t.parse::<f64>().map_err(|_| InputError::NotANumber {
                        column: column.to_string(),
                        row,
                        got: format!("'{t}'"),
                    })
                },
                Ok,
            )
        }
    }
}

/// `-?[0-9]+(\.[0-9]+)?` with at most 15 digits, the way most numbers in text files are
/// written, read as `m / 10^k` (`m` the digits as an integer, `k` the fraction's length): one
/// division of two exactly represented numbers, hence correctly rounded, hence the very bits
/// `str::parse` gives, without its general machinery. `None` for any other text.
fn plain_decimal(text: &[u8]) -> Option<f64> {
    const POWERS_OF_TEN: [f64; 16] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // 15 digits and a point at most, which also keeps `mantissa` far from overflowing.
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let (mut mantissa, mut point) = (0u64, None);
    for (at, &byte) in digits.iter().enumerate() {
        match byte {
            b'0'..=b'9' => mantissa = mantissa * 10 + u64::from(byte - b'0'),
            b'.' if point.is_none() && at > 0 && at + 1 < digits.len() => point = Some(at),
            _ => return None,
        }
    }
    let fraction = point.map_or(0, |at| digits.len() - at - 1);
    if digits.len() - usize::from(point.is_some()) > 15 {
        return None;
    }
    let magnitude = mantissa as f64 / POWERS_OF_TEN[fraction];
    Some(if negative { -magnitude } else { magnitude })
}

/// The spellings of a missing value in text, on every path (CSV and JSON Lines cells, KServe v1
/// values, OIP v2 BYTES elements in JSON or binary, the ONNX graph's string inputs): an empty
/// string or `NA`. JSON `null` is missing too, and so is NaN in a numeric column.
pub fn is_missing_text(text: &str) -> bool {
    text.is_empty() || text == "NA"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnSpec, Task};

    fn schema() -> Schema {
        Schema {
            features: vec![
                ColumnSpec { name: "area".into(), kind: ColumnKind::Numeric },
                ColumnSpec { name: "city".into(), kind: ColumnKind::Categorical },
                ColumnSpec { name: "rooms".into(), kind: ColumnKind::Numeric },
            ],
            target: "price".into(),
            task: Task::Regression,
        }
    }

    fn good(area: f64) -> Vec<(&'static str, Cell<'static>)> {
        vec![("area", Cell::Number(area)), ("city", Cell::Text("Oslo")), ("rooms", Cell::Text("3"))]
    }

    #[test]
    fn records_in_any_order_land_in_schema_order() {
        let schema = schema();
        let mut builder = RowBuilder::new(&schema, 2);
        builder.push_row(0, good(50.0)).expect("in order");
        builder
            .push_row(1, [("rooms", Cell::Missing), ("area", Cell::Text("72.5")), ("city", Cell::Missing)])
            .expect("out of order");
        let batch = builder.finish().expect("consistent");
        assert_eq!(batch.n_rows(), 2);
        let ColumnValues::Numeric(area) = &batch.columns()[0] else { panic!("area is numeric") };
        assert_eq!(area, &[50.0, 72.5]);
        assert_eq!(batch.columns()[1], ColumnValues::Categorical(vec![Some("Oslo"), None]));
        let ColumnValues::Numeric(rooms) = &batch.columns()[2] else { panic!("rooms is numeric") };
        assert_eq!(rooms[0], 3.0);
        assert!(rooms[1].is_nan());
    }

    #[test]
    fn records_naming_columns_with_the_same_strings_in_other_orders_land_in_schema_order() {
        // One set of name strings for every record, as a header row gives: the builder
        // remembers them by position, and must not be fooled when they move.
        let names: Vec<String> = ["area", "city", "rooms"].iter().map(|n| n.to_string()).collect();
        let [area, city, rooms] = [names[0].as_str(), names[1].as_str(), names[2].as_str()];
        let schema = schema();
        let mut builder = RowBuilder::new(&schema, 4);
        builder
            .push_row(0, [(area, Cell::Number(1.0)), (city, Cell::Text("Oslo")), (rooms, Cell::Number(2.0))])
            .expect("in order");
        builder
            .push_row(1, [(city, Cell::Text("Rome")), (rooms, Cell::Number(4.0)), (area, Cell::Number(3.0))])
            .expect("rotated");
        let error =
            builder.push_row(2, [(area, Cell::Number(5.0)), (area, Cell::Number(6.0)), (rooms, Cell::Number(7.0))]);
        assert_eq!(error, Err(InputError::DuplicateColumn { column: "area".into() }));
        let error = builder.push_row(3, [(area, Cell::Number(5.0)), (rooms, Cell::Number(7.0))]).expect_err("no city");
        assert!(error.to_string().contains("city"), "{error}");
        builder
            .push_row(4, [(area, Cell::Number(8.0)), (city, Cell::Missing), (rooms, Cell::Number(9.0))])
            .expect("in order");
        let batch = builder.finish().expect("consistent");
        let ColumnValues::Numeric(areas) = &batch.columns()[0] else { panic!("area is numeric") };
        assert_eq!(areas, &[1.0, 3.0, 8.0]);
        assert_eq!(batch.columns()[1], ColumnValues::Categorical(vec![Some("Oslo"), Some("Rome"), None]));
        let ColumnValues::Numeric(rooms) = &batch.columns()[2] else { panic!("rooms is numeric") };
        assert_eq!(rooms, &[2.0, 4.0, 9.0]);
    }

    /// The batch `push_row` builds from the records one at a time: what `from_records`, which
    /// reads blocks of the usual shape column by column, must give too.
    fn record_by_record<'a>(schema: &Schema, records: &[Vec<(&'a str, Cell<'a>)>]) -> ColumnBatch<'a> {
        let mut builder = RowBuilder::new(schema, records.len());
        for (row, record) in records.iter().enumerate() {
            builder.push_row(row, record.iter().copied()).expect("a valid record");
        }
        builder.finish().expect("consistent")
    }

    /// Columns compared bit for bit, so that missing numbers (NaN) compare too.
    fn same_columns(a: &ColumnBatch<'_>, b: &ColumnBatch<'_>) -> bool {
        a.n_rows() == b.n_rows()
            && a.columns().iter().zip(b.columns()).all(|pair| match pair {
                (ColumnValues::Numeric(x), ColumnValues::Numeric(y)) => {
                    x.iter().map(|v| v.to_bits()).eq(y.iter().map(|v| v.to_bits()))
                }
                (x, y) => x == y,
            })
    }

    #[test]
    fn records_read_in_blocks_give_what_record_by_record_gives() {
        let schema = schema();
        // Every record names its columns with its own strings, as a parsed request body does.
        let names: Vec<[String; 3]> = (0..200).map(|_| ["area".into(), "city".into(), "rooms".into()]).collect();
        let cities = ["Oslo", "Rome", "Lima"];
        let mut records: Vec<Vec<(&str, Cell<'_>)>> = names
            .iter()
            .enumerate()
            .map(|(i, [area, city, rooms])| {
                let area_cell = if i % 7 == 0 { Cell::Missing } else { Cell::Number(i as f64) };
                let city_cell = if i % 11 == 0 { Cell::Missing } else { Cell::Text(cities[i % 3]) };
                vec![(area.as_str(), area_cell), (city.as_str(), city_cell), (rooms.as_str(), Cell::Number(2.0))]
            })
            .collect();
        // The first block holds only usual records; the second a number given as text; the
        // third a record naming its columns in another order; the last is short.
        records[70][2].1 = Cell::Text(" 3.5");
        records[140].rotate_left(1);
        let batch = ColumnBatch::from_records(&schema, &records).expect("valid records");
        assert!(same_columns(&batch, &record_by_record(&schema, &records)));
        let ColumnValues::Numeric(rooms) = &batch.columns()[2] else { panic!("rooms is numeric") };
        assert_eq!((rooms[69], rooms[70]), (2.0, 3.5));
        let ColumnValues::Numeric(area) = &batch.columns()[0] else { panic!("area is numeric") };
        assert_eq!(area[141], 141.0);
        assert!(area[140].is_nan());

        // A bad cell in a block otherwise usual: the error names its row, past the first block.
        records[100][1].1 = Cell::Number(4.0);
        let error = ColumnBatch::from_records(&schema, &records).expect_err("a number for a category");
        assert!(matches!(&error, InputError::NotText { column, row: 100, .. } if column == "city"), "{error}");
        records[100][1].1 = Cell::Text("Oslo");
        records[190][0].0 = "garden";
        let error = ColumnBatch::from_records(&schema, &records).expect_err("an unknown column");
        assert!(matches!(&error, InputError::UnknownColumn { column, .. } if column == "garden"), "{error}");
        records[190][0].0 = "area";
        records[10].pop();
        let error = ColumnBatch::from_records(&schema, &records).expect_err("a record without rooms");
        assert!(matches!(&error, InputError::MissingColumn { column, .. } if column == "rooms"), "{error}");
    }

    #[test]
    fn numbers_in_text_read_as_the_standard_parser_reads_them() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "007",
            "1.5",
            "-123.456",
            "999999999999999",
            "-99999999999999.9",
            "0.000000000000001",
            "4.35",
            "0.1",
            "2.675",
            "1.",
            ".5",
            "+1",
            "1e5",
            "-1E-3",
            "1234567890123456",
            "0.1234567890123456",
            "inf",
            "-infinity",
            "NaN",
            "1.2.3",
            "--1",
            "-",
            "1-",
            "0x10",
            " 42 ",
        ]
        .map(String::from)
        .to_vec();
        // Decimals of every length up to 17 digits, the point anywhere, either sign.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let digits = 1 + i % 17;
            let text = format!("{:0digits$}", state % 10u64.pow(digits as u32));
            let point = (state >> 40) as usize % (digits + 1);
            let sign = if state & 1 == 1 { "-" } else { "" };
            let (int, fraction) = text.split_at(point);
            texts.push(if fraction.is_empty() || int.is_empty() {
                format!("{sign}{text}")
            } else {
                format!("{sign}{int}.{fraction}")
            });
        }
        let mut plain = 0;
        for text in &texts {
            plain += usize::from(plain_decimal(text.trim().as_bytes()).is_some());
            let ours = parse_number("x", 0, Cell::Text(text));
            match text.trim().parse::<f64>() {
                Ok(standard) => assert_eq!(ours.map(f64::to_bits), Ok(standard.to_bits()), "{text}"),
                Err(_) => assert!(ours.is_err(), "{text}: {ours:?}"),
            }
        }
        // Most of them took the short route; the rest the standard parser.
        assert!(plain > texts.len() * 3 / 4, "{plain} of {}", texts.len());
        assert!(plain_decimal(b"1234567890123456").is_none() && plain_decimal(b"1.").is_none());
    }

    #[test]
    fn a_record_that_fails_part_way_leaves_every_column_as_it_was() {
        let schema = schema();
        let mut builder = RowBuilder::new(&schema, 4);
        builder.push_row(0, good(50.0)).expect("valid");
        let failures: [(Vec<(&str, Cell<'_>)>, &str); 4] = [
            // Two cells pushed before the bad number.
            (vec![("city", Cell::Text("Rome")), ("area", Cell::Number(1.0)), ("rooms", Cell::Text("many"))], "'many'"),
            (vec![("area", Cell::Number(1.0)), ("city", Cell::Text("Rome")), ("garden", Cell::Missing)], "garden"),
            (vec![("area", Cell::Number(1.0)), ("area", Cell::Number(2.0))], "area"),
            (vec![("area", Cell::Number(1.0)), ("city", Cell::Text("Rome"))], "rooms"),
        ];
        for (row, (record, named)) in failures.into_iter().enumerate() {
            let error = builder.push_row(row + 1, record).expect_err("invalid record");
            assert!(error.to_string().contains(named), "{error}");
            assert_eq!(builder.n_rows(), 1);
        }
        let error =
            builder.push_cells(5, &[Cell::Number(1.0), Cell::Number(2.0), Cell::Number(3.0)]).expect_err("text");
        assert!(error.to_string().contains("city"), "{error}");
        builder.push_row(6, good(60.0)).expect("valid after failures");
        let batch = builder.finish().expect("every column has two rows");
        assert_eq!(batch.n_rows(), 2);
        assert_eq!(batch.columns()[1], ColumnValues::Categorical(vec![Some("Oslo"), Some("Oslo")]));
    }
}
