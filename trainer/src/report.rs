//! Renders a training run as one self-contained HTML report: the run's facts, its test metrics,
//! the learning curves and plots of the test split, drawn as inline SVG. It does no IO and the page
//! references nothing outside itself (no scripts, fonts, images or links), so it opens the same offline.

use std::collections::BTreeMap;
use std::fmt;

/// One epoch of the learning curves.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochPoint {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_metric: f64,
}

/// What the test split's predictions look like, for the plots.
#[derive(Debug, Clone, PartialEq)]
pub enum TestOutcome {
    /// Actual and predicted values, in the target's units, one per test row.
    Regression { actual: Vec<f64>, predicted: Vec<f64> },
    /// Class names in output order, each row's true class index, and the probabilities
    /// row-major `[n_rows, labels.len()]`.
    Classification { labels: Vec<String>, truth: Vec<usize>, probabilities: Vec<f32> },
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// Heading of the page, e.g. `diamonds v3`.
    pub title: String,
    /// Key/value lines shown under the title: task, data file, rows per split, device, epochs run...
    pub facts: Vec<(String, String)>,
    /// The test metrics exactly as stored in the manifest.
    pub metrics: BTreeMap<String, f64>,
    /// Name of the validation metric in `history`, e.g. `validation accuracy`.
    pub metric_name: String,
    pub history: Vec<EpochPoint>,
    /// 1-based epoch whose weights were kept; 0 when unknown.
    pub best_epoch: usize,
    /// The full recipe as pretty-printed JSON.
    pub recipe: String,
    pub test: TestOutcome,
}

/// Most points a scatter plot draws: beyond this the cloud looks the same and only the file grows.
const MAX_SCATTER_POINTS: usize = 2_000;
/// Equal-width bins of predicted confidence in the reliability diagram.
const CALIBRATION_BINS: usize = 10;
/// Learning curves get a dot per epoch only while there are few enough epochs for dots to help.
const MAX_MARKED_EPOCHS: usize = 30;
/// A range narrower than this share of its magnitude counts as flat, so tick labels stay short.
const FLAT_RELATIVE_SPAN: f64 = 1e-6;
/// Most gaps between ticks on an axis: enough to read values off, few enough for labels to fit.
const MAX_INTERVALS: f64 = 8.0;
/// Upper bound on ticks, in case float rounding in a degenerate range asks for more.
const MAX_TICKS: usize = 12;
/// Share of the data range added either side of it, so marks at the extremes are not cut by the frame.
const AXIS_MARGIN: f64 = 0.04;
/// Most classes a confusion matrix is drawn for: past this the cells are too small to read and the
/// grid alone (classes squared) would dominate the file.
const MAX_MATRIX_CLASSES: usize = 40;
/// Longest class or series name drawn in a plot; confusion-matrix cells keep the full names in their
/// hover titles.
const MAX_NAME_CHARS: usize = 24;

const PLOT_WIDTH: f64 = 560.0;
const PLOT_HEIGHT: f64 = 340.0;
/// Room around the plot area: tick labels and axis titles left and below, the legend above.
const MARGIN_LEFT: f64 = 74.0;
const MARGIN_RIGHT: f64 = 18.0;
const MARGIN_TOP: f64 = 34.0;
const MARGIN_BOTTOM: f64 = 50.0;
/// Average advance of a 12px sans-serif character, for laying out legends and labels.
const CHAR_WIDTH: f64 = 6.8;

const BLUE: &str = "#2563eb";
const ORANGE: &str = "#ea580c";
const GREEN: &str = "#059669";
const PURPLE: &str = "#7c3aed";
const GREY: &str = "#6b7280";
const DARK: &str = "#1f2937";
const GRID: &str = "#e5e7eb";

/// Renders the report as one HTML document with inline SVG plots and no external resources.
pub fn render(input: &ReportInput) -> String {
    let mut cards = learning_curve_cards(input);
    match &input.test {
        TestOutcome::Regression { actual, predicted } => cards.extend(regression_cards(actual, predicted)),
        TestOutcome::Classification { labels, truth, probabilities } => {
            cards.extend(classification_cards(labels, truth, probabilities))
        }
    }
    page(input, &cards)
}

/// One plot with its heading and a caption saying how to read it; all three are HTML, already escaped.
struct Card {
    heading: String,
    svg: String,
    caption: String,
}

fn page(input: &ReportInput, cards: &[Card]) -> String {
    let title = escape(&input.title);
    let mut html = String::with_capacity(64 * 1024);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str(&format!("<title>{title} · training report</title>\n<style>{STYLE}</style>\n</head>\n"));
    html.push_str(&format!("<body>\n<main>\n<header><p class=\"kind\">Training report</p><h1>{title}</h1>\n"));
    html.push_str(&facts_list(&input.facts));
    html.push_str("</header>\n<section>\n<h2>Test metrics</h2>\n");
    html.push_str(&metrics_table(&input.metrics));
    html.push_str("</section>\n<section>\n<h2>Plots</h2>\n<div class=\"plots\">\n");
    for card in cards {
        html.push_str(&format!(
            "<figure>\n<h3>{}</h3>\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            card.heading, card.svg, card.caption
        ));
    }
    html.push_str("</div>\n</section>\n<section>\n<h2>Recipe</h2>\n");
    let recipe = if input.recipe.trim().is_empty() { "no recipe recorded".to_owned() } else { escape(&input.recipe) };
    html.push_str(&format!("<pre>{recipe}</pre>\n</section>\n</main>\n</body>\n</html>\n"));
    html
}

const STYLE: &str = "
:root{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;
color:#1f2937;background:#f3f4f6}
body{margin:0}
main{max-width:1240px;margin:0 auto;padding:24px}
.kind{margin:0;color:#6b7280;font-size:.85rem;text-transform:uppercase;letter-spacing:.06em}
h1{font-size:1.7rem;margin:2px 0 14px}
h2{font-size:1.15rem;margin:28px 0 10px}
h3{font-size:1rem;margin:0 0 6px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0;font-size:.95rem}
.facts dt{color:#6b7280}
.facts dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;background:#fff;border:1px solid #e5e7eb;border-radius:8px}
th,td{padding:6px 16px;border-bottom:1px solid #e5e7eb;text-align:left}
thead th{color:#6b7280;font-weight:600;font-size:.85rem}
td{font-variant-numeric:tabular-nums}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 14px}
figcaption{color:#4b5563;font-size:.85rem;margin-top:6px;line-height:1.4}
svg{display:block;max-width:100%;height:auto;margin:0 auto;font-size:12px}
svg text{fill:#374151}
pre{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px;overflow:auto;font-size:.85rem}
";

fn facts_list(facts: &[(String, String)]) -> String {
    let mut html = String::from("<dl class=\"facts\">\n");
    for (key, value) in facts {
        html.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", escape(key), escape(value)));
    }
    html.push_str("</dl>\n");
    html
}

/// The value cell prints the metric with `{}`, the shortest text that parses back to the same f64,
/// so the report can be checked bit for bit against the manifest; a rounded copy is for reading.
fn metrics_table(metrics: &BTreeMap<String, f64>) -> String {
    if metrics.is_empty() {
        return "<p>No test metrics recorded.</p>\n".to_owned();
    }
    let mut html =
        String::from("<table>\n<thead><tr><th>metric</th><th>rounded</th><th>value</th></tr></thead>\n<tbody>\n");
    for (name, value) in metrics {
        let name = escape(name);
        let rounded = significant(*value, 4);
        html.push_str(&format!("<tr><th>{name}</th><td>{rounded}</td><td data-metric=\"{name}\">{value}</td></tr>\n"));
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

fn learning_curve_cards(input: &ReportInput) -> Vec<Card> {
    let history = &input.history;
    let best_epoch = (input.best_epoch > 0).then_some(input.best_epoch);
    let curve = |value: fn(&EpochPoint) -> f64| history.iter().map(|p| (p.epoch as f64, value(p))).collect();
    let losses = [
        Series { label: "training loss".to_owned(), colour: BLUE, points: curve(|p| p.train_loss) },
        Series { label: "validation loss".to_owned(), colour: ORANGE, points: curve(|p| p.validation_loss) },
    ];
    let metric = [Series { label: input.metric_name.clone(), colour: GREEN, points: curve(|p| p.validation_metric) }];
    let kept = match best_epoch {
        Some(epoch) => format!("the dashed line marks epoch {epoch}, whose weights were kept"),
        None => "the kept epoch is unknown".to_owned(),
    };
    let epochs = match history.len() {
        1 => "1 epoch".to_owned(),
        n => format!("{} epochs", thousands(n)),
    };
    vec![
        Card {
            heading: "Loss".to_owned(),
            svg: line_plot("loss", "epoch", "loss", &losses, best_epoch),
            caption: format!("Training and validation loss over {epochs}; {kept}."),
        },
        Card {
            heading: escape(&capitalised(&input.metric_name)),
            svg: line_plot("validation-metric", "epoch", &input.metric_name, &metric, best_epoch),
            caption: format!("{} over {epochs}; {kept}.", escape(&capitalised(&input.metric_name))),
        },
    ]
}

fn regression_cards(actual: &[f64], predicted: &[f64]) -> Vec<Card> {
    let n_rows = actual.len().min(predicted.len());
    // An even stride keeps the sample deterministic and spread over the whole test split.
    let stride = n_rows.div_ceil(MAX_SCATTER_POINTS).max(1);
    let sample: Vec<(f64, f64)> = actual
        .iter()
        .zip(predicted)
        .step_by(stride)
        .map(|(&actual, &predicted)| (actual, predicted))
        .filter(|(actual, predicted)| actual.is_finite() && predicted.is_finite())
        .collect();
    let residuals: Vec<(f64, f64)> =
        sample.iter().map(|&(actual, predicted)| (predicted, predicted - actual)).collect();
    let every = if stride > 1 { format!(", one in every {stride}") } else { String::new() };
    let shown = format!("Showing {} of {} test rows{every}.", thousands(sample.len()), thousands(n_rows));
    vec![
        Card {
            heading: "Predicted vs actual".to_owned(),
            svg: scatter_plot("predicted-vs-actual", "actual", "predicted", &sample, Reference::Diagonal),
            caption: format!("Each dot is a test row; dots on the dashed y = x line are exact. {shown}"),
        },
        Card {
            heading: "Residuals".to_owned(),
            svg: scatter_plot("residuals", "predicted", "residual (predicted − actual)", &residuals, Reference::Zero),
            caption: format!("Dots above the zero line are over-predictions, below it under-predictions. {shown}"),
        },
    ]
}

fn classification_cards(labels: &[String], truth: &[usize], probabilities: &[f32]) -> Vec<Card> {
    let rows = scored_rows(labels.len(), truth, probabilities);
    let mode = match labels {
        [_, positive] => Confidence::PositiveClass(positive.as_str()),
        _ => Confidence::TopClass,
    };
    let bins = calibration_bins(mode, &rows);
    vec![
        Card {
            heading: "Confusion matrix".to_owned(),
            svg: confusion_plot(labels, &rows),
            caption: format!(
                "Rows are the true class, columns the predicted class (the most probable one); the shade is the \
                 share of the true class's rows, the right column the row total. {} test rows.",
                thousands(rows.len())
            ),
        },
        Card {
            heading: "Calibration".to_owned(),
            svg: calibration_plot(mode, &bins),
            caption: calibration_caption(mode, &bins),
        },
    ]
}

/// A named line of `(x, y)` points; non-finite points are gaps.
struct Series {
    label: String,
    colour: &'static str,
    points: Vec<(f64, f64)>,
}

fn line_plot(name: &str, x_title: &str, y_title: &str, series: &[Series], best_epoch: Option<usize>) -> String {
    let finite =
        || series.iter().flat_map(|s| s.points.iter().copied()).filter(|&(x, y)| x.is_finite() && y.is_finite());
    let xs = finite().map(|(x, _)| x).chain(best_epoch.map(|epoch| epoch as f64));
    let (Some(x), Some(y)) = (Axis::fit(xs, true), Axis::fit(finite().map(|(_, y)| y), false)) else {
        let recorded = series.iter().any(|s| !s.points.is_empty());
        return empty_plot(name, if recorded { "no finite values recorded" } else { "no epochs recorded" });
    };
    let frame = Frame { x, y };
    let mut svg = frame.open(name, x_title, y_title);
    for line in series {
        svg.push_str(&series_path(&frame, line));
    }
    let mut legend: Vec<LegendItem> =
        series.iter().map(|s| LegendItem { label: s.label.clone(), colour: s.colour, swatch: Swatch::Line }).collect();
    if let Some(epoch) = best_epoch {
        let x = frame.px(epoch as f64);
        let marker = format!(r#" data-best-epoch="{epoch}"{DASHED}"#);
        svg.push_str(&line((x, MARGIN_TOP), (x, PLOT_HEIGHT - MARGIN_BOTTOM), GREY, &marker));
        legend.push(LegendItem { label: format!("best epoch {epoch}"), colour: GREY, swatch: Swatch::Dashed });
    }
    svg.push_str(&Frame::close(&legend));
    svg
}

/// The series as one path in which a non-finite value lifts the pen, so a NaN epoch is a gap
/// rather than a line dragged off the plot.
fn series_path(frame: &Frame, series: &Series) -> String {
    let mut d = String::new();
    let mut dots = String::new();
    let mut pen_down = false;
    for &(x, y) in &series.points {
        if !(x.is_finite() && y.is_finite()) {
            pen_down = false;
            continue;
        }
        let (px, py) = (Px(frame.px(x)), Px(frame.py(y)));
        d.push_str(&format!("{}{px} {py}", if pen_down { 'L' } else { 'M' }));
        pen_down = true;
        if series.points.len() <= MAX_MARKED_EPOCHS {
            dots.push_str(&format!(r#"<circle cx="{px}" cy="{py}" r="3"/>"#));
        }
    }
    if d.is_empty() {
        return String::new();
    }
    let colour = series.colour;
    format!(r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"/><g fill="{colour}">{dots}</g>"#)
}

/// The line a scatter plot is read against.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reference {
    /// y = x, with both axes over the same range so the line runs corner to corner.
    Diagonal,
    /// y = 0, with the y axis stretched to include it.
    Zero,
}

fn scatter_plot(name: &str, x_title: &str, y_title: &str, points: &[(f64, f64)], reference: Reference) -> String {
    let axes = match reference {
        Reference::Diagonal => Axis::fit(points.iter().flat_map(|&(x, y)| [x, y]), false).map(|axis| (axis, axis)),
        Reference::Zero => Axis::fit(points.iter().map(|&(x, _)| x), false)
            .zip(Axis::fit(points.iter().map(|&(_, y)| y).chain([0.0]), false)),
    };
    let Some((x, y)) = axes.filter(|_| !points.is_empty()) else {
        return empty_plot(name, "no test rows to plot");
    };
    let frame = Frame { x, y };
    let mut svg = frame.open(name, x_title, y_title);
    svg.push_str(&format!(r#"<g fill="{BLUE}" fill-opacity="0.45">"#));
    for &(x, y) in points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
        svg.push_str(&format!(r#"<circle cx="{}" cy="{}" r="2.2"/>"#, Px(frame.px(x)), Px(frame.py(y))));
    }
    svg.push_str("</g>");
    let (from, to, label) = match reference {
        Reference::Diagonal => ((x.min, x.min), (x.max, x.max), "y = x"),
        Reference::Zero => ((x.min, 0.0), (x.max, 0.0), "zero residual"),
    };
    svg.push_str(&line(frame.point(from), frame.point(to), DARK, DASHED));
    svg.push_str(&Frame::close(&[
        LegendItem { label: "test row".to_owned(), colour: BLUE, swatch: Swatch::Dot },
        LegendItem { label: label.to_owned(), colour: DARK, swatch: Swatch::Dashed },
    ]));
    svg
}

/// One test row of a classification run, reduced to what the plots need.
struct Scored<'a> {
    truth: usize,
    /// The most probable class, the first on ties as in the exported model.
    predicted: usize,
    probabilities: &'a [f32],
}

/// Rows whose true class is out of range, or whose probabilities are missing, are left out
/// rather than guessed at.
fn scored_rows<'a>(n_classes: usize, truth: &[usize], probabilities: &'a [f32]) -> Vec<Scored<'a>> {
    if n_classes == 0 {
        return Vec::new();
    }
    truth
        .iter()
        .zip(probabilities.chunks_exact(n_classes))
        .filter(|&(&truth, _)| truth < n_classes)
        .map(|(&truth, row)| Scored { truth, predicted: argmax(row), probabilities: row })
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    let (index, _) =
        row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &p)| if p > best.1 { (i, p) } else { best });
    index
}

/// Counts `[true class][predicted class]`.
fn confusion_counts(n_classes: usize, rows: &[Scored]) -> Vec<Vec<usize>> {
    let mut counts = vec![vec![0; n_classes]; n_classes];
    for row in rows {
        if let Some(cell) = counts.get_mut(row.truth).and_then(|cells| cells.get_mut(row.predicted)) {
            *cell += 1;
        }
    }
    counts
}

/// The matrix as a grid of shaded cells with the true class's name left of each row, the predicted
/// class's under each column and the row total on the right.
fn confusion_plot(labels: &[String], rows: &[Scored]) -> String {
    const NAME: &str = "confusion-matrix";
    if labels.is_empty() {
        return empty_plot(NAME, "no classes");
    }
    if labels.len() > MAX_MATRIX_CLASSES {
        let message = format!(
            "{} classes are too many to draw; the matrix is drawn for up to {MAX_MATRIX_CLASSES}",
            labels.len()
        );
        return empty_plot(NAME, &message);
    }
    let counts = confusion_counts(labels.len(), rows);
    let names: Vec<String> = labels.iter().map(|label| truncated(label, MAX_NAME_CHARS)).collect();
    let name_width = names.iter().map(|name| text_width(name)).fold(0.0, f64::max);
    let cell = (330.0 / labels.len() as f64).clamp(18.0, 96.0);
    let grid = cell * labels.len() as f64;
    // Column names are tilted when they would not fit across a cell.
    let tilted = name_width + 6.0 > cell;
    let (left, top) = (38.0 + name_width, 22.0);
    let names_height = if tilted { name_width * 0.65 + 18.0 } else { 22.0 };
    let (width, height) = (left + grid + 60.0, top + grid + names_height + 26.0);
    let font_size = format!(r#" font-size="{}""#, Px((cell * 0.34).min(13.0)));
    let mut svg = svg_open(NAME, width, height);
    for (i, row) in counts.iter().enumerate() {
        let total: usize = row.iter().sum();
        let y = top + cell * i as f64;
        let true_name = labels.get(i).map_or(String::new(), |name| escape(name));
        for (j, &count) in row.iter().enumerate() {
            let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
            let x = left + cell * j as f64;
            let predicted_name = labels.get(j).map_or(String::new(), |name| escape(name));
            let (x_px, y_px, size, fill, percent) = (Px(x), Px(y), Px(cell), shade(share), share * 100.0);
            svg.push_str(&format!(r#"<rect data-true="{i}" data-predicted="{j}" data-count="{count}""#));
            svg.push_str(&format!(
                r#" x="{x_px}" y="{y_px}" width="{size}" height="{size}" fill="{fill}" stroke="white">"#
            ));
            svg.push_str(&format!(
                "<title>{true_name} predicted as {predicted_name}: {count} rows, {percent:.1}% of the row</title></rect>"
            ));
            let ink = if share > 0.55 { "white" } else { DARK };
            let extra = format!(r#"{MIDDLE}{CENTRAL}{font_size} style="fill:{ink}""#);
            svg.push_str(&text((x + cell / 2.0, y + cell / 2.0), 0.0, &extra, &count.to_string()));
        }
        let row_name = names.get(i).map_or(String::new(), |name| escape(name));
        svg.push_str(&text((left - 6.0, y + cell / 2.0), 0.0, &format!("{END}{CENTRAL}"), &row_name));
        let muted = format!(r#"{CENTRAL} style="fill:{GREY}""#);
        svg.push_str(&text((left + grid + 8.0, y + cell / 2.0), 0.0, &muted, &thousands(total)));
    }
    // An outline, so that a row of white (empty) cells still reads as part of the grid.
    let (x, y, size) = (Px(left), Px(top), Px(grid));
    svg.push_str(&format!(r#"<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="none" stroke="{GRID}"/>"#));
    for (j, name) in names.iter().enumerate() {
        let at = (left + cell * (j as f64 + 0.5), top + grid + 14.0);
        svg.push_str(&if tilted { text(at, -40.0, END, &escape(name)) } else { text(at, 0.0, MIDDLE, &escape(name)) });
    }
    svg.push_str(&text((left + grid + 8.0, top - 8.0), 0.0, &format!(r#" style="fill:{GREY}""#), "rows"));
    svg.push_str(&text((left + grid / 2.0, height - 8.0), 0.0, AXIS_TITLE, "predicted class"));
    svg.push_str(&text((14.0, top + grid / 2.0), -90.0, AXIS_TITLE, "true class"));
    svg.push_str("</svg>");
    svg
}

/// White through to blue as a cell's share of its row grows.
fn shade(share: f64) -> String {
    let share = share.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * share).round();
    format!("rgb({},{},{})", mix(255.0, 29.0), mix(255.0, 78.0), mix(255.0, 216.0))
}

/// Which probability the reliability diagram bins.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Confidence<'a> {
    /// Two classes: the probability of the second, against how often it is the true class.
    PositiveClass(&'a str),
    /// Otherwise: the probability of the predicted class, against how often the prediction is right.
    TopClass,
}

/// The rows whose confidence fell into one bin.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bin {
    count: usize,
    confidence_sum: f64,
    hits: usize,
}

impl Bin {
    fn mean_confidence(&self) -> f64 {
        self.confidence_sum / self.count.max(1) as f64
    }

    fn frequency(&self) -> f64 {
        self.hits as f64 / self.count.max(1) as f64
    }
}

fn calibration_bins(mode: Confidence, rows: &[Scored]) -> [Bin; CALIBRATION_BINS] {
    let mut bins = [Bin::default(); CALIBRATION_BINS];
    for row in rows {
        let (confidence, hit) = match mode {
            Confidence::PositiveClass(_) => (row.probabilities.get(1), row.truth == 1),
            Confidence::TopClass => (row.probabilities.get(row.predicted), row.truth == row.predicted),
        };
        let Some(confidence) = confidence.copied().filter(|p| p.is_finite()) else { continue };
        let confidence = confidence.clamp(0.0, 1.0);
        // The bin is picked in f32, the probabilities' own precision, so that 0.9f32 (just below 0.9
        // as an f64) lands in the 0.9–1 bin. A confidence of exactly 1 belongs to the last bin.
        let index = ((confidence * CALIBRATION_BINS as f32) as usize).min(CALIBRATION_BINS - 1);
        if let Some(bin) = bins.get_mut(index) {
            bin.count += 1;
            bin.confidence_sum += f64::from(confidence);
            bin.hits += usize::from(hit);
        }
    }
    bins
}

fn calibration_plot(mode: Confidence, bins: &[Bin]) -> String {
    const NAME: &str = "calibration";
    let max_count = bins.iter().map(|bin| bin.count).max().unwrap_or(0);
    if max_count == 0 {
        return empty_plot(NAME, "no test rows to plot");
    }
    let (x_title, y_title) = match mode {
        Confidence::PositiveClass(positive) => {
            let positive = truncated(positive, MAX_NAME_CHARS);
            (format!("predicted probability of {positive}"), format!("observed frequency of {positive}"))
        }
        Confidence::TopClass => ("confidence of the predicted class".to_owned(), "accuracy".to_owned()),
    };
    let (x, y) = (Axis::PROBABILITY, Axis::PROBABILITY);
    let frame = Frame { x, y };
    let mut svg = frame.open(NAME, &x_title, &y_title);
    svg.push_str(&line(frame.point((x.min, x.min)), frame.point((x.max, x.max)), GREY, DASHED));
    let filled = || bins.iter().enumerate().filter(|(_, bin)| bin.count > 0);
    let at = |bin: &Bin| frame.point((bin.mean_confidence(), bin.frequency()));
    let d: Vec<String> = filled().map(|(_, bin)| at(bin)).map(|(x, y)| format!("{} {}", Px(x), Px(y))).collect();
    svg.push_str(&format!(r#"<path d="M{}" fill="none" stroke="{PURPLE}" stroke-width="2"/>"#, d.join("L")));
    svg.push_str(&format!(r#"<g fill="{PURPLE}" fill-opacity="0.75">"#));
    for (index, bin) in filled() {
        let (x, y) = at(bin);
        // The area, not the radius, grows with the count, so four times the rows look four times as big.
        let radius = Px(3.0 + 7.0 * (bin.count as f64 / max_count as f64).sqrt());
        let (count, range) = (bin.count, bin_range(index));
        let (confidence, frequency) = (bin.mean_confidence(), bin.frequency());
        let (x, y) = (Px(x), Px(y));
        svg.push_str(&format!(r#"<circle data-bin="{index}" data-count="{count}" cx="{x}" cy="{y}" r="{radius}">"#));
        svg.push_str(&format!(
            "<title>{range}: {count} rows, mean confidence {confidence:.3}, observed {frequency:.3}</title></circle>"
        ));
    }
    svg.push_str("</g>");
    svg.push_str(&Frame::close(&[
        LegendItem { label: "observed".to_owned(), colour: PURPLE, swatch: Swatch::Line },
        LegendItem { label: "perfectly calibrated".to_owned(), colour: GREY, swatch: Swatch::Dashed },
    ]));
    svg
}

fn calibration_caption(mode: Confidence, bins: &[Bin]) -> String {
    let n_rows: usize = bins.iter().map(|bin| bin.count).sum();
    let what = match mode {
        Confidence::PositiveClass(positive) => {
            format!("the predicted probability of {} against how often it was the true class", escape(positive))
        }
        Confidence::TopClass => "the predicted class's probability against how often it was right".to_owned(),
    };
    let counts: Vec<String> = bins.iter().map(|bin| thousands(bin.count)).collect();
    // Expected calibration error: the row-weighted mean gap between confidence and frequency.
    let gap: f64 = bins.iter().map(|bin| bin.count as f64 * (bin.frequency() - bin.mean_confidence()).abs()).sum();
    let error =
        if n_rows > 0 { format!(" Expected calibration error {:.4}.", gap / n_rows as f64) } else { String::new() };
    format!(
        "{CALIBRATION_BINS} equal-width bins of {what}; a dot's area grows with its rows. Rows per bin, from 0–0.1 to \
         0.9–1: {}.{error}",
        counts.join(", ")
    )
}

fn bin_range(index: usize) -> String {
    let width = 1.0 / CALIBRATION_BINS as f64;
    format!("{:.1}–{:.1}", index as f64 * width, (index + 1) as f64 * width)
}

/// A linear axis: the data range with a margin either side, and a round tick step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    min: f64,
    max: f64,
    step: f64,
}

impl Axis {
    /// Stands in when a range cannot be scaled, e.g. one whose span overflows f64.
    const UNIT: Axis = Axis { min: 0.0, max: 1.0, step: 0.2 };
    /// Probabilities, with a margin wide enough that the largest calibration dot at 0 or 1 is drawn whole.
    const PROBABILITY: Axis = Axis { min: -0.05, max: 1.05, step: 0.2 };

    /// Fits the finite values, skipping NaN and infinities; `None` when there are none. An integer
    /// axis (epochs) never ticks between whole numbers.
    fn fit(values: impl IntoIterator<Item = f64>, integer: bool) -> Option<Axis> {
        let (low, high) = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(None, |range: Option<(f64, f64)>, v| Some(range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v)))))?;
        Some(Self::spanning(low, high, integer))
    }

    fn spanning(low: f64, high: f64, integer: bool) -> Axis {
        let magnitude = low.abs().max(high.abs());
        let (low, high) = if high - low > magnitude * FLAT_RELATIVE_SPAN {
            (low, high)
        } else {
            // A flat range is widened, so its line sits mid-plot rather than dividing by zero.
            let pad = if integer || magnitude == 0.0 { 1.0 } else { magnitude * 0.1 };
            (low - pad, high + pad)
        };
        let margin = (high - low) * AXIS_MARGIN;
        let (min, max) = (low - margin, high + margin);
        let axis = Axis { min, max, step: nice_step(max - min, integer) };
        let usable = [min, max, axis.step].iter().all(|v| v.is_finite()) && max > min && axis.step > 0.0;
        if usable { axis } else { Axis::UNIT }
    }

    /// The multiples of the step that fall on the axis.
    fn ticks(&self) -> Vec<f64> {
        let slack = self.step * 1e-9;
        let first = ((self.min - slack) / self.step).ceil();
        (0..MAX_TICKS).map(|i| (first + i as f64) * self.step).take_while(|&tick| tick <= self.max + slack).collect()
    }

    /// Where `value` sits between `min` (0) and `max` (1).
    fn fraction(&self, value: f64) -> f64 {
        (value - self.min) / (self.max - self.min)
    }

    /// The power of ten that the step is a whole multiple of: -2 for 0.25, 1 for 20.
    fn resolution(&self) -> i32 {
        let mut exponent = self.step.log10().floor() as i32;
        for _ in 0..3 {
            let scaled = self.step / 10f64.powi(exponent);
            if (scaled - scaled.round()).abs() < 1e-6 {
                break;
            }
            exponent -= 1;
        }
        exponent
    }

    /// A tick value with as many decimals as the step needs, in scientific notation when that is shorter.
    fn label(&self, value: f64) -> String {
        let magnitude = self.min.abs().max(self.max.abs());
        if magnitude >= 1e6 || self.step < 1e-4 {
            return scientific(value, self.resolution());
        }
        let decimals = (-self.resolution()).max(0) as usize;
        let text = format!("{value:.decimals$}");
        // Float error can leave "-0.0" for the tick at zero.
        if text.trim_start_matches(['-', '0', '.']).is_empty() { format!("{:.decimals$}", 0.0) } else { text }
    }
}

/// The smallest step of 1, 2, 2.5 or 5 times a power of ten that cuts `span` into at most
/// `MAX_INTERVALS`; whole numbers only on an integer axis.
fn nice_step(span: f64, integer: bool) -> f64 {
    let raw = span / MAX_INTERVALS;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let whole = |step: f64| !integer || (step >= 1.0 && step.fract() == 0.0);
    // The slack keeps float error in `span` from doubling the step.
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&step| whole(step) && span / step <= MAX_INTERVALS * (1.0 + 1e-9))
        .unwrap_or(if integer { (10.0 * power).max(1.0) } else { 10.0 * power })
}

/// `value`, rounded to a multiple of `10^exponent`, as `1.5e6`: built from integer digits, so float
/// error in the division does not show up as `1.4999999e6`.
fn scientific(value: f64, exponent: i32) -> String {
    let mut exponent = exponent;
    let mut mantissa = (value / 10f64.powi(exponent)).round() as i64;
    if mantissa == 0 {
        return "0".to_owned();
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    let sign = if mantissa < 0 { "-" } else { "" };
    let digits = mantissa.unsigned_abs().to_string();
    let (head, tail) = digits.split_at(1);
    let exponent = exponent + tail.len() as i32;
    if tail.is_empty() { format!("{sign}{head}e{exponent}") } else { format!("{sign}{head}.{tail}e{exponent}") }
}

/// The axes of one standard-sized plot, which together map data onto the plot area.
struct Frame {
    x: Axis,
    y: Axis,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        MARGIN_LEFT + self.x.fraction(x) * (PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        PLOT_HEIGHT - MARGIN_BOTTOM - self.y.fraction(y) * (PLOT_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)
    }

    fn point(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.px(x), self.py(y))
    }

    /// The opening tag, grid, ticks and axis titles, then a group clipped to the plot area (through
    /// a clip path named after the plot, so ids stay unique in the page) for the marks that follow.
    fn open(&self, name: &str, x_title: &str, y_title: &str) -> String {
        let (left, right) = (MARGIN_LEFT, PLOT_WIDTH - MARGIN_RIGHT);
        let (top, bottom) = (MARGIN_TOP, PLOT_HEIGHT - MARGIN_BOTTOM);
        let mut svg = svg_open(name, PLOT_WIDTH, PLOT_HEIGHT);
        for tick in self.x.ticks() {
            let x = self.px(tick);
            svg.push_str(&line((x, top), (x, bottom), GRID, ""));
            svg.push_str(&text((x, bottom + 17.0), 0.0, MIDDLE, &self.x.label(tick)));
        }
        for tick in self.y.ticks() {
            let y = self.py(tick);
            svg.push_str(&line((left, y), (right, y), GRID, ""));
            svg.push_str(&text((left - 7.0, y), 0.0, &format!("{END}{CENTRAL}"), &self.y.label(tick)));
        }
        let (x, y, width, height) = (Px(left), Px(top), Px(right - left), Px(bottom - top));
        svg.push_str(&format!(
            r#"<rect x="{x}" y="{y}" width="{width}" height="{height}" fill="none" stroke="{GREY}"/>"#
        ));
        svg.push_str(&text(
            ((left + right) / 2.0, PLOT_HEIGHT - 9.0),
            0.0,
            AXIS_TITLE,
            &escape(&truncated(x_title, 60)),
        ));
        svg.push_str(&text((15.0, (top + bottom) / 2.0), -90.0, AXIS_TITLE, &escape(&truncated(y_title, 36))));
        let clip = format!(r#"<rect x="{x}" y="{y}" width="{width}" height="{height}"/>"#);
        svg.push_str(&format!(
            r#"<defs><clipPath id="clip-{name}">{clip}</clipPath></defs><g clip-path="url(#clip-{name})">"#
        ));
        svg
    }

    /// Ends the clipped group, then draws the legend in a row above the plot area, where it cannot
    /// cover data.
    fn close(legend: &[LegendItem]) -> String {
        let mut svg = String::from("</g>");
        let y = MARGIN_TOP / 2.0;
        let mut x = MARGIN_LEFT;
        for item in legend {
            let colour = item.colour;
            svg.push_str(&match item.swatch {
                Swatch::Line => line((x, y), (x + 20.0, y), colour, r#" stroke-width="2""#),
                Swatch::Dashed => line((x, y), (x + 20.0, y), colour, r#" stroke-width="2" stroke-dasharray="5 3""#),
                Swatch::Dot => format!(
                    r#"<rect x="{}" y="{}" width="7" height="7" rx="3.5" fill="{colour}" fill-opacity="0.7"/>"#,
                    Px(x + 6.5),
                    Px(y - 3.5)
                ),
            });
            let label = truncated(&item.label, MAX_NAME_CHARS);
            svg.push_str(&text((x + 26.0, y), 0.0, CENTRAL, &escape(&label)));
            x += 26.0 + text_width(&label) + 18.0;
        }
        svg.push_str("</svg>");
        svg
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Swatch {
    Line,
    Dashed,
    /// Drawn as a rounded square, so that counting a plot's circles counts its data points only.
    Dot,
}

struct LegendItem {
    label: String,
    colour: &'static str,
    swatch: Swatch,
}

/// Attributes for `line` and `text`, each with its leading space.
const DASHED: &str = r#" stroke-width="1.5" stroke-dasharray="6 4""#;
const MIDDLE: &str = r#" text-anchor="middle""#;
const END: &str = r#" text-anchor="end""#;
const CENTRAL: &str = r#" dominant-baseline="central""#;
const AXIS_TITLE: &str = r#" text-anchor="middle" font-weight="600""#;

fn svg_open(name: &str, width: f64, height: f64) -> String {
    let (width, height) = (Px(width), Px(height));
    let size = format!(r#"viewBox="0 0 {width} {height}" width="{width}" height="{height}""#);
    format!(r#"<svg data-plot="{name}" {size} role="img" aria-label="{name}">"#)
}

/// A `<line>`; `extra` holds further attributes.
fn line((x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, extra: &str) -> String {
    let (x1, y1, x2, y2) = (Px(x1), Px(y1), Px(x2), Px(y2));
    format!(r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{stroke}"{extra}/>"#)
}

/// A `<text>` anchored at a point and turned `angle` degrees about it; `content` is markup, already escaped.
fn text((x, y): (f64, f64), angle: f64, extra: &str, content: &str) -> String {
    let (x, y) = (Px(x), Px(y));
    if angle == 0.0 {
        format!(r#"<text x="{x}" y="{y}"{extra}>{content}</text>"#)
    } else {
        format!(r#"<text transform="translate({x} {y}) rotate({})"{extra}>{content}</text>"#, Px(angle))
    }
}

fn empty_plot(name: &str, message: &str) -> String {
    let mut svg = svg_open(name, PLOT_WIDTH, PLOT_HEIGHT);
    let (width, height) = (Px(PLOT_WIDTH - 1.0), Px(PLOT_HEIGHT - 1.0));
    svg.push_str(&format!(r#"<rect x="0.5" y="0.5" width="{width}" height="{height}" fill="none" stroke="{GRID}"/>"#));
    let muted = format!(r#"{MIDDLE} style="fill:{GREY}""#);
    svg.push_str(&text((PLOT_WIDTH / 2.0, PLOT_HEIGHT / 2.0), 0.0, &muted, &escape(message)));
    svg.push_str("</svg>");
    svg
}

/// An SVG coordinate printed with at most one decimal: finer than a screen pixel, and short.
struct Px(f64);

/// Coordinates are clamped to this many pixels either way: a point that far out is clipped anyway,
/// and a value near `f64::MAX` would otherwise print as hundreds of digits.
const MAX_COORDINATE: f64 = 1e5;

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Adding 0.0 turns -0 into 0; a non-finite coordinate cannot be drawn, so it becomes 0.
        let tenths = ((self.0 * 10.0).round() / 10.0).clamp(-MAX_COORDINATE, MAX_COORDINATE) + 0.0;
        if tenths.is_finite() { write!(f, "{tenths}") } else { f.write_str("0") }
    }
}

/// Escapes text for HTML content and attribute values. `://` also comes out as `:&#47;/`, which reads
/// the same, so a URL in a recipe or fact cannot make the page look as if it linked anywhere.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut previous = '\0';
    for ch in text.chars() {
        match ch {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            '/' if previous == ':' => escaped.push_str("&#47;"),
            _ => escaped.push(ch),
        }
        previous = ch;
    }
    escaped
}

fn truncated(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// `12,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    grouped
}

/// `value` with `digits` significant digits, for reading rather than for checking.
fn significant(value: f64, digits: i32) -> String {
    if !value.is_finite() || value == 0.0 {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if (-4..6).contains(&magnitude) {
        let decimals = (digits - 1 - magnitude).max(0) as usize;
        format!("{value:.decimals$}")
    } else {
        format!("{value:.*e}", (digits - 1) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGRESSION_PLOTS: [&str; 4] = ["loss", "validation-metric", "predicted-vs-actual", "residuals"];
    const CLASSIFICATION_PLOTS: [&str; 4] = ["loss", "validation-metric", "confusion-matrix", "calibration"];
    /// SVG attributes that hold plain numbers or path data.
    const NUMERIC_ATTRIBUTES: [&str; 11] = ["x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "width", "height"];

    fn history(n_epochs: usize) -> Vec<EpochPoint> {
        (1..=n_epochs)
            .map(|epoch| {
                let t = epoch as f64;
                EpochPoint {
                    epoch,
                    train_loss: 1.0 / t + 0.1,
                    validation_loss: 1.2 / t + 0.15 + 0.002 * t,
                    validation_metric: 0.9 - 0.5 / t,
                }
            })
            .collect()
    }

    fn report(test: TestOutcome, n_epochs: usize, best_epoch: usize) -> ReportInput {
        ReportInput {
            title: "diamonds v3".to_owned(),
            facts: vec![("task".to_owned(), "regression".to_owned()), ("device".to_owned(), "cpu".to_owned())],
            metrics: BTreeMap::from([("rmse".to_owned(), 0.1 + 0.2), ("r2".to_owned(), 0.93)]),
            metric_name: "validation RMSE".to_owned(),
            history: history(n_epochs),
            best_epoch,
            recipe: "{\n  \"epochs\": 60\n}".to_owned(),
            test,
        }
    }

    /// A deterministic cloud around the diagonal.
    fn regression(n_rows: usize) -> TestOutcome {
        let actual: Vec<f64> = (0..n_rows).map(|i| 1000.0 + 800.0 * (i as f64 * 0.37).sin()).collect();
        let predicted = actual.iter().enumerate().map(|(i, a)| a + 90.0 * (i as f64 * 1.7).cos()).collect();
        TestOutcome::Regression { actual, predicted }
    }

    /// Rows cycle through the classes; every fifth row puts most weight on the next class instead.
    fn classification(labels: &[&str], n_rows: usize) -> TestOutcome {
        let n_classes = labels.len();
        let truth: Vec<usize> = (0..n_rows).map(|row| row % n_classes).collect();
        let mut probabilities = vec![0.1 / n_classes as f32; n_rows * n_classes];
        for (row, &class) in truth.iter().enumerate() {
            let favoured = if row % 5 == 0 { (class + 1) % n_classes } else { class };
            probabilities[row * n_classes + favoured] += 0.9;
        }
        TestOutcome::Classification { labels: labels.iter().map(|&l| l.to_owned()).collect(), truth, probabilities }
    }

    fn classified(labels: &[&str], rows: &[(usize, &[f32])]) -> TestOutcome {
        TestOutcome::Classification {
            labels: labels.iter().map(|&l| l.to_owned()).collect(),
            truth: rows.iter().map(|&(truth, _)| truth).collect(),
            probabilities: rows.iter().flat_map(|&(_, p)| p.iter().copied()).collect(),
        }
    }

    fn plot_names(html: &str) -> Vec<&str> {
        html.split("data-plot=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect()
    }

    /// The markup of one plot, from its `data-plot` attribute to its closing tag.
    fn plot<'a>(html: &'a str, name: &str) -> &'a str {
        let start = html.find(&format!("data-plot=\"{name}\"")).unwrap_or_else(|| panic!("no plot {name}"));
        let end = html[start..].find("</svg>").map_or(html.len(), |end| start + end);
        &html[start..end]
    }

    /// Every value of ` attribute="..."` in `markup`, in order.
    fn attribute<'a>(markup: &'a str, attribute: &str) -> Vec<&'a str> {
        markup.split(&format!(" {attribute}=\"")).skip(1).filter_map(|rest| rest.split('"').next()).collect()
    }

    /// Every number in the plot's coordinates and path data.
    fn coordinates(svg: &str) -> Vec<&str> {
        let path_numbers = attribute(svg, "d").into_iter().flat_map(|d| d.split(['M', 'L', ' ']));
        NUMERIC_ATTRIBUTES
            .iter()
            .flat_map(|name| attribute(svg, name))
            .chain(path_numbers)
            .filter(|number| !number.is_empty())
            .collect()
    }

    fn assert_plots_drawable(html: &str, expected: &[&str]) {
        assert_eq!(plot_names(html), expected);
        for name in expected {
            for number in coordinates(plot(html, name)) {
                let value: f64 = number.parse().unwrap_or_else(|_| panic!("{name}: {number:?} is not a number"));
                assert!(value.is_finite(), "{name}: {number}");
                let decimals = number.split_once('.').map_or(0, |(_, fraction)| fraction.len());
                assert!(decimals <= 1, "{name}: {number} has {decimals} decimals");
            }
        }
    }

    #[test]
    fn each_task_draws_its_own_plots_only() {
        let check =
            |test: TestOutcome, expected: &[&str]| assert_eq!(plot_names(&render(&report(test, 20, 12))), expected);
        check(regression(300), &REGRESSION_PLOTS);
        check(classification(&["setosa", "versicolor", "virginica"], 300), &CLASSIFICATION_PLOTS);
        check(classification(&["no", "yes"], 300), &CLASSIFICATION_PLOTS);
    }

    #[test]
    fn metric_cells_parse_back_to_the_stored_bits() {
        let values =
            [0.1 + 0.2, 1.0 / 3.0, 1e-20, 123_456_789.123_456_79, f64::MIN_POSITIVE, 5e-324, f64::MAX, -0.0, 2.5];
        let metrics: BTreeMap<String, f64> =
            values.iter().enumerate().map(|(i, &v)| (format!("metric_{i}"), v)).collect();
        let html = render(&ReportInput { metrics: metrics.clone(), ..report(regression(10), 3, 2) });
        let cells: Vec<(&str, &str)> = html
            .split("<td data-metric=\"")
            .skip(1)
            .filter_map(|rest| {
                rest.split_once("\">").and_then(|(name, rest)| Some((name, rest.split_once("</td>")?.0)))
            })
            .collect();
        assert_eq!(cells.len(), metrics.len());
        for (name, text) in cells {
            let parsed: f64 = text.parse().unwrap_or_else(|_| panic!("{name}: {text:?} does not parse"));
            assert_eq!(parsed.to_bits(), metrics[name].to_bits(), "{name}: {text}");
        }
    }

    #[test]
    fn best_epoch_marker_names_the_kept_epoch_where_its_points_are() {
        // With 30 epochs each point has a dot: the loss plot's first 30 are training, the next 30 validation.
        for best_epoch in [1, 7, 30] {
            let html = render(&report(regression(10), 30, best_epoch));
            for name in ["loss", "validation-metric"] {
                let svg = plot(&html, name);
                assert_eq!(attribute(svg, "data-best-epoch"), [best_epoch.to_string()], "{name}");
                let marker_at = svg.find("data-best-epoch").and_then(|end| svg[..end].rfind("<line"));
                let marker = marker_at.map(|start| attribute(&svg[start..], "x1")[0]);
                let dot = attribute(svg, "cx")[best_epoch - 1];
                assert_eq!(marker, Some(dot), "{name}, best epoch {best_epoch}");
            }
        }
        let unknown = render(&report(regression(10), 30, 0));
        assert!(!unknown.contains("data-best-epoch"));
    }

    #[test]
    fn hostile_text_comes_out_inert() {
        let hostile = "<script>alert('x&y')</script>\"";
        let escaped = "&lt;script&gt;alert(&#39;x&amp;y&#39;)&lt;/script&gt;&quot;";
        let html = render(&ReportInput {
            title: hostile.to_owned(),
            facts: vec![(hostile.to_owned(), hostile.to_owned())],
            metrics: BTreeMap::from([(hostile.to_owned(), 1.0)]),
            metric_name: hostile.to_owned(),
            recipe: format!("{{\"note\": \"{hostile}\"}}"),
            ..report(classified(&["<script>", "<b>bold</b>"], &[(0, &[0.9, 0.1]), (1, &[0.2, 0.8])]), 3, 2)
        });
        assert!(!html.to_lowercase().contains("<script"), "raw script tag in the output");
        assert!(!html.contains("<b>"), "raw class name in the output");
        assert!(html.contains(&format!("<h1>{escaped}</h1>")));
        assert!(html.contains(&format!("data-metric=\"{escaped}\"")));
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    }

    #[test]
    fn escaping_covers_markup_quotes_and_urls() {
        let check = |raw: &str, expected: &str| assert_eq!(escape(raw), expected, "{raw}");
        check("a & b", "a &amp; b");
        check("<td>", "&lt;td&gt;");
        check(r#"say "hi", it's"#, "say &quot;hi&quot;, it&#39;s");
        check("https://host/data.csv", "https:&#47;/host/data.csv");
        check("data/diamonds.csv", "data/diamonds.csv");
        check("réseau ✓", "réseau ✓");
    }

    #[test]
    fn output_references_nothing_outside_the_page() {
        for test in [regression(500), classification(&["a", "b", "c"], 500)] {
            let html = render(&report(test, 40, 30));
            for banned in ["http", "<script", "src=", "href=", "@import", "<link", "<img", "url(", "xlink"] {
                let allowed = banned == "url(" && html.matches("url(").count() == html.matches("url(#clip-").count();
                assert!(allowed || !html.contains(banned), "output contains {banned:?}");
            }
        }
        let mut with_url = report(regression(10), 3, 2);
        with_url.facts.push(("data file".to_owned(), "https://example.org/diamonds.csv".to_owned()));
        assert!(!render(&with_url).contains("://"));
    }

    #[test]
    fn degenerate_inputs_render_every_plot_with_finite_short_coordinates() {
        let with_history = |history: Vec<EpochPoint>, best_epoch: usize| ReportInput {
            history,
            best_epoch,
            ..report(regression(50), 0, 0)
        };
        let mut broken = history(20);
        broken[3].train_loss = f64::NAN;
        broken[4].validation_loss = f64::INFINITY;
        broken[5].validation_metric = f64::NEG_INFINITY;
        broken[0].validation_loss = f64::NAN;
        let all_nan: Vec<EpochPoint> = history(5)
            .into_iter()
            .map(|p| EpochPoint { train_loss: f64::NAN, validation_loss: f64::NAN, validation_metric: f64::NAN, ..p })
            .collect();
        let flat: Vec<EpochPoint> = history(8)
            .into_iter()
            .map(|p| EpochPoint { train_loss: 0.5, validation_loss: 0.5, validation_metric: 0.0, ..p })
            .collect();
        let histories = [
            with_history(Vec::new(), 0),
            with_history(Vec::new(), 5),
            with_history(history(1), 1),
            with_history(broken, 4),
            with_history(all_nan, 2),
            with_history(flat, 3),
            with_history(history(10), 50),
        ];
        for input in histories {
            assert_plots_drawable(&render(&input), &REGRESSION_PLOTS);
        }

        let regressions = [
            (Vec::new(), Vec::new()),
            (vec![3.0], vec![2.5]),
            (vec![7.0; 40], vec![7.0; 40]),
            (vec![1.0, f64::NAN, 3.0, f64::INFINITY, 5.0], vec![1.5, 2.0, f64::NEG_INFINITY, 4.0, 5.5]),
            (vec![1.0, 2.0, 3.0], vec![1.0]),
            (vec![1e300, -1e300, f64::MAX], vec![-1e300, 1e300, -f64::MAX]),
        ];
        for (actual, predicted) in regressions {
            let html = render(&report(TestOutcome::Regression { actual, predicted }, 10, 5));
            assert_plots_drawable(&html, &REGRESSION_PLOTS);
        }

        let nan = f32::NAN;
        let classifications = [
            classified(&["a", "b", "c"], &[]),
            classified(&["a", "b", "c"], &[(0, &[0.8, 0.1, 0.1]), (0, &[0.3, 0.6, 0.1])]),
            classified(&["only"], &[(0, &[1.0]), (0, &[1.0])]),
            classified(&[], &[]),
            classified(&["a", "b"], &[(0, &[nan, nan]), (1, &[0.2, nan]), (7, &[0.5, 0.5])]),
            TestOutcome::Classification {
                labels: vec!["a".into(), "b".into()],
                truth: vec![0, 1, 1],
                probabilities: vec![0.5],
            },
        ];
        for test in classifications {
            assert_plots_drawable(&render(&report(test, 10, 5)), &CLASSIFICATION_PLOTS);
        }
        let many: Vec<String> = (0..100).map(|class| format!("class {class}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let html = render(&report(classification(&many, 1_000), 10, 5));
        assert_plots_drawable(&html, &CLASSIFICATION_PLOTS);
        assert!(html.len() < 100_000, "{} bytes for 100 classes", html.len());
    }

    #[test]
    fn scatter_plots_cap_their_points_and_say_so() {
        let check = |n_rows: usize, expected_points: usize, expected_caption: &str| {
            let html = render(&report(regression(n_rows), 10, 5));
            for name in ["predicted-vs-actual", "residuals"] {
                assert_eq!(plot(&html, name).matches("<circle").count(), expected_points, "{name}, {n_rows} rows");
            }
            assert!(html.contains(expected_caption), "{n_rows} rows");
        };
        check(500, 500, "Showing 500 of 500 test rows.");
        check(2_000, 2_000, "Showing 2,000 of 2,000 test rows.");
        check(2_001, 1_001, "Showing 1,001 of 2,001 test rows, one in every 2.");
        check(99_999, 2_000, "Showing 2,000 of 99,999 test rows, one in every 50.");
        check(100_000, 2_000, "Showing 2,000 of 100,000 test rows, one in every 50.");
    }

    #[test]
    fn a_large_regression_report_stays_small() {
        let html = render(&report(regression(100_000), 300, 240));
        assert!(html.len() < 400_000, "{} bytes", html.len());
        assert_plots_drawable(&html, &REGRESSION_PLOTS);
    }

    #[test]
    fn confusion_matrix_counts_the_most_probable_class_per_true_class() {
        let test = classified(
            &["cat", "dog", "eel"],
            &[
                (0, &[0.7, 0.2, 0.1]),
                (0, &[0.2, 0.5, 0.3]),
                (1, &[0.1, 0.8, 0.1]),
                (1, &[0.1, 0.6, 0.3]),
                (2, &[0.3, 0.3, 0.4]),
                // A tie goes to the first class, as in the exported model.
                (2, &[0.5, 0.5, 0.0]),
            ],
        );
        let html = render(&report(test, 5, 3));
        let svg = plot(&html, "confusion-matrix");
        let cells: Vec<(&str, &str, &str)> = attribute(svg, "data-true")
            .into_iter()
            .zip(attribute(svg, "data-predicted"))
            .zip(attribute(svg, "data-count"))
            .map(|((t, p), c)| (t, p, c))
            .collect();
        let mut counts = [[0; 3]; 3];
        for (t, p, c) in cells {
            counts[t.parse::<usize>().expect("index")][p.parse::<usize>().expect("index")] = c.parse().expect("count");
        }
        assert_eq!(counts, [[1, 1, 0], [0, 2, 0], [1, 0, 1]]);
    }

    #[test]
    fn calibration_bins_the_second_class_for_two_classes_and_the_top_class_otherwise() {
        let check = |test: TestOutcome, expected: &[(&str, &str)]| {
            let html = render(&report(test, 5, 3));
            let svg = plot(&html, "calibration");
            let bins: Vec<(&str, &str)> =
                attribute(svg, "data-bin").into_iter().zip(attribute(svg, "data-count")).collect();
            assert_eq!(bins, expected);
        };
        let binary = [(0, [0.95, 0.05]), (1, [0.85, 0.15]), (1, [0.05, 0.95]), (0, [0.0, 1.0])];
        let binary: Vec<(usize, &[f32])> = binary.iter().map(|(t, p)| (*t, p.as_slice())).collect();
        check(classified(&["no", "yes"], &binary), &[("0", "1"), ("1", "1"), ("9", "2")]);
        let three = [(0, [0.5, 0.3, 0.2]), (2, [0.34, 0.33, 0.33]), (1, [0.05, 0.9, 0.05]), (1, [0.05, 0.05, 0.9])];
        let three: Vec<(usize, &[f32])> = three.iter().map(|(t, p)| (*t, p.as_slice())).collect();
        check(classified(&["a", "b", "c"], &three), &[("3", "1"), ("5", "1"), ("9", "2")]);

        let TestOutcome::Classification { truth, probabilities, .. } = classified(&["a", "b", "c"], &three) else {
            unreachable!("classified builds a classification")
        };
        let bins = calibration_bins(Confidence::TopClass, &scored_rows(3, &truth, &probabilities));
        assert_eq!((bins[9].count, bins[9].hits), (2, 1));
        assert_eq!((bins[3].hits, bins[5].hits), (0, 1));
    }

    #[test]
    fn axes_tick_at_round_values_that_cover_the_data() {
        let check = |values: &[f64], integer: bool, expected: &[&str]| {
            let axis = Axis::fit(values.iter().copied(), integer).expect("finite values");
            let labels: Vec<String> = axis.ticks().iter().map(|&tick| axis.label(tick)).collect();
            assert_eq!(labels, expected, "{values:?}");
            let finite = values.iter().filter(|v| v.is_finite());
            assert!(finite.clone().all(|&v| axis.min <= v && v <= axis.max), "{values:?} outside {axis:?}");
            assert!(axis.ticks().iter().all(|&t| axis.min <= t && t <= axis.max), "ticks outside {axis:?}");
        };
        check(&[0.13, 0.87], false, &["0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8"]);
        check(&[-0.3, 0.3], false, &["-0.3", "-0.2", "-0.1", "0.0", "0.1", "0.2", "0.3"]);
        check(&[0.25, 1.85], false, &["0.25", "0.50", "0.75", "1.00", "1.25", "1.50", "1.75"]);
        check(&[1.0, 60.0], true, &["0", "10", "20", "30", "40", "50", "60"]);
        check(&[1.0, 17.0], true, &["5", "10", "15"]);
        check(&[1.0], true, &["0", "1", "2"]);
        check(&[0.0, 0.0], false, &["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
        check(&[0.5, 0.5], false, &["0.46", "0.48", "0.50", "0.52", "0.54"]);
        check(&[f64::NAN, 3.0, f64::INFINITY, 7.0], false, &["3", "4", "5", "6", "7"]);
        check(&[0.0, 2.5e6], false, &["0", "5e5", "1e6", "1.5e6", "2e6", "2.5e6"]);
        check(&[2e-5, 9e-5], false, &["2e-5", "3e-5", "4e-5", "5e-5", "6e-5", "7e-5", "8e-5", "9e-5"]);
        check(&[1e-5, 3.5e-5], false, &["1e-5", "1.5e-5", "2e-5", "2.5e-5", "3e-5", "3.5e-5"]);
        assert_eq!(Axis::fit([f64::NAN, f64::INFINITY], false), None);
    }

    #[test]
    fn numbers_print_short() {
        let check = |printed: String, expected: &str| assert_eq!(printed, expected);
        check(thousands(0), "0");
        check(thousands(999), "999");
        check(thousands(1_000), "1,000");
        check(thousands(1_234_567), "1,234,567");
        check(Px(12.34).to_string(), "12.3");
        check(Px(12.0).to_string(), "12");
        check(Px(-0.04).to_string(), "0");
        check(Px(f64::NAN).to_string(), "0");
        check(Px(1e300).to_string(), "100000");
        check(significant(0.123_456, 4), "0.1235");
        check(significant(1_234.56, 4), "1235");
        check(significant(1e-7, 4), "1.000e-7");
        check(significant(0.0, 4), "0");
    }
}
