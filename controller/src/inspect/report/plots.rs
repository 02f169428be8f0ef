//! The report's plots, drawn with plotters once as SVG (for the page) and once as PNG (for slides and notebooks).
//!
//! Each plot is drawn by one function generic over the plotters backend, so the SVG and the PNG are the same
//! drawing. Text is laid out with DejaVu Sans, embedded in the binary and registered with plotters' `ab_glyph`
//! font support: nothing depends on the fonts or font libraries of the machine that makes the report. The SVG
//! names the family `sans-serif`, so a browser draws its text with its own sans-serif font.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::data::{ReportData, with_unit};

/// A drawing error, as text (the backends' error types differ).
type Drawn = Result<(), String>;

/// Width of every plot, in pixels.
const WIDTH: u32 = 960;

/// The colours: Okabe and Ito's palette, which stays distinct for colour-blind readers.
const BLUE: RGBColor = RGBColor(0, 114, 178);
const ORANGE: RGBColor = RGBColor(230, 159, 0);
const GREEN: RGBColor = RGBColor(0, 158, 115);
const VERMILION: RGBColor = RGBColor(213, 94, 0);
const SKY: RGBColor = RGBColor(86, 180, 233);
const PURPLE: RGBColor = RGBColor(204, 121, 167);
const YELLOW: RGBColor = RGBColor(240, 228, 66);
const INK: RGBColor = RGBColor(33, 37, 41);
const GREY: RGBColor = RGBColor(134, 142, 150);
const GRID: RGBColor = RGBColor(233, 236, 239);
const IDLE: RGBColor = RGBColor(241, 243, 245);

/// The plots of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plot {
    /// The objective of each experiment in order, with the best so far.
    Objective,
    /// Each varied parameter against the objective.
    Parameters,
    /// Every instrument's steps over lab time.
    Gantt,
    /// The proposer's predictions against the measured objective.
    Predicted,
}

impl Plot {
    /// Every plot, in the order the page shows them.
    pub const ALL: [Plot; 4] = [Plot::Objective, Plot::Parameters, Plot::Gantt, Plot::Predicted];

    /// The file name, without extension.
    pub fn name(self) -> &'static str {
        match self {
            Plot::Objective => "objective",
            Plot::Parameters => "parameters",
            Plot::Gantt => "instruments",
            Plot::Predicted => "predicted",
        }
    }

    /// The heading the page gives the plot.
    pub fn title(self) -> &'static str {
        match self {
            Plot::Objective => "Objective by experiment",
            Plot::Parameters => "Each parameter against the objective",
            Plot::Gantt => "Instruments over lab time",
            Plot::Predicted => "Predicted against measured",
        }
    }

    /// The size in pixels.
    pub fn size(self, data: &ReportData) -> (u32, u32) {
        match self {
            Plot::Objective => (WIDTH, 440),
            Plot::Parameters => (WIDTH, 340 * data.varied().len().div_ceil(3).max(1) as u32),
            Plot::Gantt => (WIDTH, 110 + 34 * gantt_rows(data).len().max(1) as u32),
            Plot::Predicted => (WIDTH, 520),
        }
    }

    /// Draws the plot as an SVG document.
    pub fn svg(self, data: &ReportData) -> Result<String, String> {
        svg_of(self.size(data), |root| self.draw(data, root))
    }

    /// Draws the Gantt chart of the steps that run after lab time `from` as an SVG document: the recent part of a
    /// long campaign, for the live page.
    pub fn gantt_svg_from(data: &ReportData, from: f64) -> Result<String, String> {
        svg_of(Plot::Gantt.size(data), |root| {
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            gantt(data, root, from)
        })
    }

    /// Draws the plot into a PNG file.
    pub fn png(self, data: &ReportData, path: &Path) -> Drawn {
        register_fonts();
        let root = BitMapBackend::new(path, self.size(data)).into_drawing_area();
        self.draw(data, &root)?;
        root.present().map_err(|e| e.to_string())
    }

    fn draw<DB: DrawingBackend>(self, data: &ReportData, root: &DrawingArea<DB, Shift>) -> Drawn {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        match self {
            Plot::Objective => objective(data, root),
            Plot::Parameters => parameters(data, root),
            Plot::Gantt => gantt(data, root, 0.0),
            Plot::Predicted => predicted(data, root),
        }
    }
}

/// An SVG document of the given size, drawn by `draw`.
fn svg_of(size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Drawn) -> Result<String, String> {
    register_fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Registers DejaVu Sans as plotters' `sans-serif`, once per process.
fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // A font that fails to register leaves text undrawn, which plotters reports as an error per plot.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&INK)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A range around values, padded by a fraction of its width; a single value gets a unit of room either side.
fn padded(values: impl IntoIterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let width = hi - lo;
    if width <= f64::EPSILON * hi.abs().max(1.0) {
        let room = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
        return (lo - room)..(hi + room);
    }
    (lo - width * pad)..(hi + width * pad)
}

/// A colour from light to dark blue as `t` goes from 0 to 1: early experiments pale, late ones dark.
fn by_order(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    RGBColor(mix(170, 8), mix(210, 48), mix(240, 107))
}

/// A message in the middle of an empty plot.
fn empty<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, message: &str) -> Drawn {
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(title.to_owned(), (20, 16), font(18).pos(Pos::new(HPos::Left, VPos::Top)))).map_err(err)?;
    root.draw(&Text::new(
        message.to_owned(),
        (w as i32 / 2, h as i32 / 2),
        font(16).color(&GREY).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(err)
}

fn objective<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Drawn {
    let measured = data.measured();
    let label = data.objective_label();
    if data.experiments.is_empty() {
        return empty(root, Plot::Objective.title(), "No experiment has started yet.");
    }
    let last = data.experiments.iter().map(|e| e.seq).max().unwrap_or(1).max(1);
    let y = padded(measured.iter().map(|m| m.1), 0.08);
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{label} of each experiment, with the best so far"), font(18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0.5..(last as f64 + 0.5), y.clone())
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(GREY)
        .x_desc("experiment")
        .y_desc(label.as_str())
        .x_labels(last.min(24) as usize)
        .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() })
        .label_style(font(13))
        .axis_desc_style(font(14))
        .draw()
        .map_err(err)?;

    let best = data.best_so_far();
    let mut path = Vec::new();
    for (i, (seq, b)) in best.iter().enumerate() {
        if i > 0 {
            path.push((*seq as f64, best[i - 1].1));
        }
        path.push((*seq as f64, *b));
    }
    if let Some((_, b)) = best.last() {
        path.push((last as f64 + 0.5, *b));
    }
    chart
        .draw_series(LineSeries::new(path, ORANGE.stroke_width(3)))
        .map_err(err)?
        .label("best so far")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ORANGE.stroke_width(3)));

    let model: Vec<(f64, f64)> = data
        .experiments
        .iter()
        .filter(|e| e.predicted.is_some())
        .filter_map(|e| e.objective.map(|v| (e.seq as f64, v)))
        .collect();
    let other: Vec<(f64, f64)> = data
        .experiments
        .iter()
        .filter(|e| e.predicted.is_none())
        .filter_map(|e| e.objective.map(|v| (e.seq as f64, v)))
        .collect();
    if !other.is_empty() {
        chart
            .draw_series(other.iter().map(|p| Circle::new(*p, 5, SKY.stroke_width(2))))
            .map_err(err)?
            .label("chosen to explore (space-filling, random)")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, SKY.stroke_width(2)));
    }
    if !model.is_empty() {
        chart
            .draw_series(model.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))
            .map_err(err)?
            .label("chosen by the model")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
    }
    let failed: Vec<f64> = data.experiments.iter().filter(|e| e.status == "failed").map(|e| e.seq as f64).collect();
    if !failed.is_empty() {
        let floor = y.start + (y.end - y.start) * 0.03;
        chart
            .draw_series(failed.iter().map(|x| Cross::new((*x, floor), 6, VERMILION.stroke_width(3))))
            .map_err(err)?
            .label("failed (no result)")
            .legend(|(x, y)| Cross::new((x + 10, y), 6, VERMILION.stroke_width(3)));
    }
    if let Some(b) = data.best()
        && let Some(v) = b.objective
    {
        chart.draw_series([Circle::new((b.seq as f64, v), 10, ORANGE.stroke_width(2))]).map_err(err)?;
        let right = b.seq * 2 > last;
        let label = Text::new(
            format!("best: #{}", b.seq),
            (if right { -14 } else { 14 }, -12),
            font(13).pos(Pos::new(if right { HPos::Right } else { HPos::Left }, VPos::Bottom)),
        );
        chart.draw_series([EmptyElement::at((b.seq as f64, v)) + label]).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(if data.campaign.maximize() {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .background_style(WHITE.mix(0.9))
        .border_style(GRID)
        .label_font(font(13))
        .draw()
        .map_err(err)
}

fn parameters<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Drawn {
    // A parameter held at one value has nothing to show; the experiment table lists it.
    let varied = data.varied();
    if varied.is_empty() || data.measured().is_empty() {
        return empty(root, Plot::Parameters.title(), "No varied parameter has a result yet.");
    }
    let columns = varied.len().min(3);
    let rows = varied.len().div_ceil(3);
    let panels = root.split_evenly((rows, columns));
    let y = padded(data.measured().iter().map(|m| m.1), 0.08);
    let last = data.experiments.iter().map(|e| e.seq).max().unwrap_or(1).max(2);
    let best = data.best().map(|b| b.seq);
    let label = data.objective_label();
    for ((name, unit), panel) in varied.iter().zip(&panels) {
        let points: Vec<(f64, f64, i64)> = data
            .experiments
            .iter()
            .filter_map(|e| Some((*e.values.get(name)?, e.objective.filter(|v| v.is_finite())?, e.seq)))
            .collect();
        let x = padded(points.iter().map(|p| p.0), 0.06);
        let mut chart = ChartBuilder::on(panel)
            .caption(with_unit(name, unit), font(15))
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y.clone())
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_style(GREY)
            .x_labels(5)
            .y_labels(6)
            .y_desc(label.as_str())
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|(px, py, seq)| {
                let t = (*seq - 1) as f64 / (last - 1) as f64;
                Circle::new((*px, *py), 5, by_order(t).filled())
            }))
            .map_err(err)?;
        if let Some(p) = points.iter().find(|p| Some(p.2) == best) {
            chart.draw_series([Circle::new((p.0, p.1), 9, ORANGE.stroke_width(2))]).map_err(err)?;
        }
    }
    // A key for the colours, in the bottom right corner of the whole figure.
    let (w, h) = root.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    root.draw(&Text::new(
        "pale: early experiments, dark: late ones; ring: the best".to_owned(),
        (w - 14, h - 6),
        font(12).color(&GREY).pos(Pos::new(HPos::Right, VPos::Bottom)),
    ))
    .map_err(err)
}

/// The Gantt chart's rows: every instrument of the lab, then any other instrument a step ran on.
fn gantt_rows(data: &ReportData) -> Vec<String> {
    let mut rows: Vec<String> = data.instruments.iter().map(|i| i.name.clone()).collect();
    for s in &data.steps {
        if !rows.contains(&s.instrument) {
            rows.push(s.instrument.clone());
        }
    }
    rows
}

/// The colour of an operation in the Gantt chart.
fn op_colour(op: &str) -> RGBColor {
    match op {
        "Transfer" => RGBColor(160, 170, 180),
        "Dispense" => BLUE,
        "Heat" => VERMILION,
        "Stir" => ORANGE,
        "Measure" => GREEN,
        "Weigh" => PURPLE,
        "Select" => YELLOW,
        "ReadTemperature" => SKY,
        "HoldTemperature" => RGBColor(140, 45, 4),
        _ => GREY,
    }
}

/// Draws every step of `data` that runs after lab time `from` (steps that started before it are cut at it), up to
/// `data.lab_now`; a report draws the whole campaign (`from` = 0), the live page the recent part of a long one.
fn gantt<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>, from: f64) -> Drawn {
    let rows = gantt_rows(data);
    if rows.is_empty() {
        return empty(root, Plot::Gantt.title(), "The record names no instrument for this campaign.");
    }
    let end = data.lab_now.max(from + 1.0);
    let span = end - from;
    let (unit, per) = if end > 3.0 * 3600.0 { ("h", 3600.0) } else { ("min", 60.0) };
    let n = rows.len();
    let row_y = |i: usize| (n - 1 - i) as f64;
    let busy = |name: &str| -> f64 {
        data.steps
            .iter()
            .filter(|s| s.instrument == name)
            .map(|s| (s.finished_at.unwrap_or(data.lab_now) - s.started_at.max(from)).max(0.0))
            // An empty sum of floats is -0.0, which would print as "-0% busy".
            .fold(0.0, |a, b| a + b)
            / span
    };
    let mut chart = ChartBuilder::on(root)
        .caption("Every step on every instrument; pale bands are idle time", font(18))
        .margin(16)
        .margin_left(12)
        .x_label_area_size(44)
        .y_label_area_size(170)
        // The right quarter stays empty for the legend, so it covers no step.
        .build_cartesian_2d(from / per..(from + span * 1.32) / per, 0.0..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(GREY)
        .y_labels(2)
        .y_label_formatter(&|_| String::new())
        .x_desc(format!("lab time ({unit})"))
        .label_style(font(13))
        .axis_desc_style(font(14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            (0..n)
                .map(|i| Rectangle::new([(from / per, row_y(i) + 0.12), (end / per, row_y(i) + 0.88)], IDLE.filled())),
        )
        .map_err(err)?;
    // A step shorter than two pixels would vanish; it is drawn two pixels wide.
    let min_width = span * 1.32 / per / 380.0;
    let mut ops: Vec<&str> = Vec::new();
    for s in &data.steps {
        if !ops.contains(&s.op.as_str()) {
            ops.push(&s.op);
        }
    }
    for op in &ops {
        let colour = op_colour(op);
        chart
            .draw_series(
                data.steps.iter().filter(|s| &s.op == op && s.finished_at.is_none_or(|f| f >= from)).filter_map(|s| {
                    let i = rows.iter().position(|r| *r == s.instrument)?;
                    let (a, b) = (s.started_at.max(from) / per, s.finished_at.unwrap_or(data.lab_now) / per);
                    let b = b.max(a + min_width);
                    let style = if s.finished_at.is_none() { colour.mix(0.5).filled() } else { colour.filled() };
                    Some(Rectangle::new([(a, row_y(i) + 0.18), (b, row_y(i) + 0.82)], style))
                }),
            )
            .map_err(err)?
            .label(*op)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()));
    }
    let stop = if data.campaign.status == "running" { "now" } else { "end" };
    chart
        .draw_series([
            PathElement::new(vec![(end / per, 0.0), (end / per, n as f64)], GREY.stroke_width(1)),
            PathElement::new(vec![(from / per, 0.0), (from / per, n as f64)], GREY.stroke_width(1)),
        ])
        .map_err(err)?;
    chart
        .draw_series([EmptyElement::at((end / per, n as f64))
            + Text::new(stop, (4, 2), font(12).color(&GREY).pos(Pos::new(HPos::Left, VPos::Top)))])
        .map_err(err)?;
    let bad: Vec<_> = data
        .steps
        .iter()
        .filter(|s| matches!(s.status.as_str(), "failed" | "unknown") && s.finished_at.is_none_or(|f| f >= from))
        .collect();
    if !bad.is_empty() {
        chart
            .draw_series(bad.iter().filter_map(|s| {
                let i = rows.iter().position(|r| *r == s.instrument)?;
                let (a, b) = (s.started_at.max(from) / per, s.finished_at.unwrap_or(data.lab_now) / per);
                Some(Rectangle::new([(a, row_y(i) + 0.1), (b, row_y(i) + 0.9)], INK.stroke_width(2)))
            }))
            .map_err(err)?
            .label("failed or unknown (outlined)")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], INK.stroke_width(2)));
    }
    for (i, name) in rows.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(from / per, row_y(i) + 0.5));
        root.draw(&Text::new(
            format!("{name}  {:.0}% busy", 100.0 * busy(name)),
            (px - 10, py),
            font(13).pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.92))
        .border_style(GRID)
        .label_font(font(12))
        .draw()
        .map_err(err)
}

fn predicted<DB: DrawingBackend>(data: &ReportData, root: &DrawingArea<DB, Shift>) -> Drawn {
    let points: Vec<(f64, f64, f64, i64)> = data
        .experiments
        .iter()
        .filter_map(|e| {
            let (mean, sd) = e.predicted?;
            Some((e.objective.filter(|v| v.is_finite())?, mean, sd.abs(), e.seq))
        })
        .collect();
    if points.is_empty() {
        return empty(
            root,
            Plot::Predicted.title(),
            "No model-chosen experiment has a result yet (space-filling and random proposals make no prediction).",
        );
    }
    let range = padded(points.iter().flat_map(|(m, p, sd, _)| [*m, p - sd, p + sd]), 0.06);
    let label = data.objective_label();
    // A square plot area on the left, so the diagonal is at 45 degrees; the numbers that sum it up on the right.
    let (area, side) = root.split_horizontally(600);
    let mut chart = ChartBuilder::on(&area)
        .caption("The model's prediction (mean \u{b1} 1 sd) against the result", font(18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(range.clone(), range.clone())
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(GREY)
        .x_desc(format!("measured {label}"))
        .y_desc(format!("predicted {label}"))
        .label_style(font(13))
        .axis_desc_style(font(14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new([(range.start, range.start), (range.end, range.end)], GREY.stroke_width(1)))
        .map_err(err)?
        .label("prediction = result")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREY.stroke_width(1)));
    let last = points.iter().map(|p| p.3).max().unwrap_or(1);
    let first = points.iter().map(|p| p.3).min().unwrap_or(1);
    let t = |seq: i64| if last > first { (seq - first) as f64 / (last - first) as f64 } else { 1.0 };
    chart
        .draw_series(points.iter().map(|(m, p, sd, seq)| {
            ErrorBar::new_vertical(*m, p - sd, *p, p + sd, by_order(t(*seq)).stroke_width(2), 8)
        }))
        .map_err(err)?
        .label("one experiment (pale: early, dark: late)")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
    chart
        .draw_series(points.iter().map(|(m, p, _, seq)| Circle::new((*m, *p), 4, by_order(t(*seq)).filled())))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(GRID)
        .label_font(font(13))
        .draw()
        .map_err(err)?;
    let within = points.iter().filter(|(m, p, sd, _)| (m - p).abs() <= *sd).count();
    let mae = points.iter().map(|(m, p, _, _)| (m - p).abs()).sum::<f64>() / points.len() as f64;
    let unit = if data.objective_unit.is_empty() { String::new() } else { format!(" {}", data.objective_unit) };
    let lines = [
        (format!("{} experiments chosen by the model", points.len()), font(15)),
        (
            format!("{within} of {} ({:.0}%) within one sd", points.len(), 100.0 * within as f64 / points.len() as f64),
            font(15),
        ),
        ("of their prediction (a well-calibrated".to_owned(), font(13).color(&GREY)),
        ("model gets about 68%)".to_owned(), font(13).color(&GREY)),
        (format!("mean |measured \u{2212} predicted|: {mae:.3}{unit}"), font(15)),
    ];
    let mut y = 90;
    for (text, style) in lines {
        side.draw(&Text::new(text, (10, y), style.pos(Pos::new(HPos::Left, VPos::Top)))).map_err(err)?;
        y += 26;
    }
    Ok(())
}
