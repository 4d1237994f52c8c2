//! The report's pictures, each one SVG: the drift heatmap, a numeric feature's bars and CDFs,
//! a categorical feature's bars, performance over time and the reliability diagram.
//!
//! Reference series use the `ref` class (grey-blue) and current ones `cur` (orange); the page's
//! CSS gives both their colours, so every picture agrees with the legends.

use std::collections::BTreeMap;

use super::format::{
    Esc, clip, count, is_midnight, nice_ceil, nice_step, num, pct, short, ticks, utc, utc_short,
};
use super::svg::{P, Svg, points, psi_colour};
use crate::data::{Calibration, CategoryMass, Heatmap, Performance};

/// Most heatmap rows (features) drawn.
pub(super) const HEATMAP_MAX_ROWS: usize = 500;
/// Most heatmap columns (windows) drawn; the latest are kept.
pub(super) const HEATMAP_MAX_COLS: usize = 200;
/// Bytes the heatmap's cells may take. Each cell carries its data and a tooltip (about 200
/// bytes plus twice the feature's name), so this, not the row and column limits, is what
/// keeps a large heatmap inside the page budget: about 900 cells with short names.
const HEATMAP_BYTES: usize = 200_000;
/// Rows kept before columns are given up when the cell budget binds.
const HEATMAP_MIN_ROWS: usize = 25;
/// Most categories drawn in one categorical panel.
pub(super) const MAX_CATEGORIES: usize = 40;
/// Most points drawn per CDF line.
const MAX_CDF_POINTS: usize = 80;
/// Most windows drawn in the performance chart; the latest are kept.
pub(super) const MAX_PERFORMANCE_POINTS: usize = 250;
/// Most reliability bins drawn.
const MAX_CALIBRATION_BINS: usize = 100;

/// Characters of a row label kept before it is clipped.
const LABEL_CHARS: usize = 28;
/// Rough width of one label character at the pictures' 11px font.
const CHAR_W: f64 = 6.3;

/// How much of a heatmap is drawn, `(rows, cols)`: the first `rows` features and the last
/// `cols` windows. Within [`HEATMAP_BYTES`], rows are kept before columns down to
/// [`HEATMAP_MIN_ROWS`] rows, then columns are given up.
pub(super) fn heatmap_shape(features: &[String], windows: usize) -> (usize, usize) {
    let mut rows = features.len().min(HEATMAP_MAX_ROWS);
    let mut cols = windows.min(HEATMAP_MAX_COLS);
    let names = &features[..rows];
    let name_bytes = names
        .iter()
        .map(|n| Esc(n).to_string().len())
        .sum::<usize>()
        / rows.max(1);
    let max_cells = (HEATMAP_BYTES / (200 + 2 * name_bytes)).max(1);
    if rows * cols > max_cells {
        rows = (max_cells / cols.max(1)).max(rows.min(HEATMAP_MIN_ROWS));
        if rows * cols > max_cells {
            cols = (max_cells / rows.max(1)).max(1);
        }
    }
    (rows, cols)
}

/// Width of a label column holding `labels`, between `min` and `max`.
fn label_width<'a>(labels: impl Iterator<Item = &'a String>, min: f64, max: f64) -> f64 {
    let longest = labels.map(|l| l.chars().count()).max().unwrap_or(0);
    (longest as f64 * CHAR_W + 12.0).clamp(min, max)
}

/// The heatmap of `rows` features × the last `cols` windows (see [`heatmap_shape`]): one
/// coloured cell per feature and window, feature labels linking to their panels, time labels
/// and a legend.
pub(super) fn heatmap(
    hm: &Heatmap,
    anchors: &BTreeMap<&str, usize>,
    rows: usize,
    cols: usize,
) -> String {
    let rows = rows.min(hm.features.len());
    let cols = cols.min(hm.windows.len());
    let first_col = hm.windows.len() - cols;
    let windows = &hm.windows[first_col..];
    let names = &hm.features[..rows];
    let labels: Vec<String> = names.iter().map(|n| clip(n, LABEL_CHARS)).collect();

    let label_w = label_width(labels.iter(), 60.0, 190.0);
    let cell_w = (720.0 / cols.max(1) as f64).clamp(4.0, 72.0);
    let cell_h = 16.0;
    let top = 6.0;
    let plot_w = cols as f64 * cell_w;
    let plot_h = rows as f64 * cell_h;
    let axis_y = top + plot_h;
    let legend_y = axis_y + 44.0;
    let width = (label_w + plot_w + 40.0).max(label_w + 470.0);
    let height = legend_y + 22.0;

    let mut svg = Svg::new(
        width,
        height,
        "heatmap",
        &format!("{} per feature and window", hm.metric),
    );
    for (i, (name, label)) in names.iter().zip(&labels).enumerate() {
        let y = top + i as f64 * cell_h;
        let at = (label_w - 6.0, y + cell_h / 2.0 + 4.0);
        if let Some(index) = anchors.get(name.as_str()) {
            svg.el("a").raw("href", format_args!("#f-{index}")).open();
            svg.text_titled(at, "e", label, name);
            svg.close("a");
        } else {
            svg.text_titled(at, "e", label, name);
        }
        let row = hm.values.get(i);
        for (j, &window) in windows.iter().enumerate() {
            let value = row.and_then(|r| r.get(first_col + j)).copied().flatten();
            let data_value = value.map(|v| v.to_string()).unwrap_or_default();
            let shown = match value {
                Some(v) => format!("{} {}", hm.metric, num(v)),
                None => "no data".to_owned(),
            };
            svg.el("rect")
                .attr("class", "cell")
                .at("x", label_w + j as f64 * cell_w)
                .at("y", y)
                .at("width", cell_w)
                .at("height", cell_h)
                .raw("fill", psi_colour(value))
                .attr("data-feature", name)
                .raw("data-window", window)
                .attr("data-value", &data_value)
                .title(&format!("{name} · {} · {shown}", utc(window)));
        }
    }
    svg.el("rect")
        .attr("class", "frame")
        .at("x", label_w)
        .at("y", top)
        .at("width", plot_w)
        .at("height", plot_h)
        .end();

    // Time labels under the grid, at least 70 px apart.
    let date_only = windows.iter().all(|&w| is_midnight(w));
    let every = ((70.0 / cell_w).ceil() as usize).max(1);
    let mut tick_marks = Vec::new();
    for (j, &window) in windows.iter().enumerate().step_by(every) {
        let x = label_w + (j as f64 + 0.5) * cell_w;
        tick_marks.push(((x, axis_y), (x, axis_y + 4.0)));
        svg.text((x, axis_y + 16.0), "m", &utc_short(window, date_only));
    }
    svg.lines("tick", &tick_marks);
    svg.text(
        (label_w + plot_w / 2.0, axis_y + 32.0),
        "m t",
        "window start (UTC)",
    );

    // Legend: a swatch per colour stop.
    svg.text((label_w - 6.0, legend_y + 9.0), "e", &hm.metric);
    let stops = [
        (Some(0.0), "0"),
        (Some(0.05), "0.05"),
        (Some(0.1), "0.1"),
        (Some(0.175), "0.175"),
        (Some(0.25), "≥ 0.25"),
        (None, "no data"),
    ];
    for (k, (value, text)) in stops.iter().enumerate() {
        let x = label_w + k as f64 * 74.0;
        svg.el("rect")
            .attr("class", "swatch")
            .at("x", x)
            .at("y", legend_y)
            .at("width", 16.0)
            .at("height", 11.0)
            .raw("fill", psi_colour(*value))
            .end();
        svg.text((x + 21.0, legend_y + 9.5), "s", text);
    }
    svg.finish()
}

/// The bounds of one reference bin, in words (`(-∞, 1.5)`, `[1.5, 3)`, `[3, ∞)`).
fn bin_bounds(edges: &[f64], bin: usize) -> String {
    let lower = bin.checked_sub(1).and_then(|k| edges.get(k));
    let upper = edges.get(bin);
    match (lower, upper) {
        (None, Some(u)) => format!("(-∞, {})", num(*u)),
        (Some(l), Some(u)) => format!("[{}, {})", num(*l), num(*u)),
        (Some(l), None) => format!("[{}, ∞)", num(*l)),
        (None, None) => "all values".to_owned(),
    }
}

/// A numeric feature's masses over the reference's bins: a reference and a current bar per
/// bin, the x-axis labelled with the bin edges.
pub(super) fn numeric_bars(edges: &[f64], reference: &[f64], current: &[f64]) -> String {
    let (width, height) = (460.0, 232.0);
    let (left, right, top, bottom) = (46.0, 10.0, 10.0, 46.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let base = top + plot_h;
    let bins = reference.len().max(current.len()).max(edges.len() + 1);
    let max = reference
        .iter()
        .chain(current)
        .copied()
        .filter(|m| m.is_finite())
        .fold(0.0, f64::max);
    let y_max = nice_ceil(max, 4);
    let height_of = |m: f64| {
        if m.is_finite() {
            m.clamp(0.0, y_max) / y_max * plot_h
        } else {
            0.0
        }
    };

    let mut svg = Svg::new(width, height, "bars", "mass per reference bin");
    let mut grid = Vec::new();
    for tick in ticks(0.0, y_max, 4) {
        let y = base - height_of(tick);
        grid.push(((left, y), (left + plot_w, y)));
        svg.text((left - 6.0, y + 4.0), "e", &pct(tick));
    }
    svg.lines("grid", &grid);
    let group_w = plot_w / bins as f64;
    let bar_w = group_w * 0.4;
    for bin in 0..bins {
        let x = left + bin as f64 * group_w;
        let bounds = bin_bounds(edges, bin);
        for (class, side, masses, offset) in [
            ("bar ref", "reference", reference, 0.1),
            ("bar cur", "current", current, 0.5),
        ] {
            let Some(&mass) = masses.get(bin) else {
                continue;
            };
            let h = height_of(mass);
            svg.el("rect")
                .attr("class", class)
                .at("x", x + group_w * offset)
                .at("y", base - h)
                .at("width", bar_w)
                .at("height", h)
                .raw("data-bin", bin)
                .raw("data-mass", mass)
                .title(&format!("{bounds}: {side} {}", pct(mass)));
        }
    }
    svg.line((left, base), (left + plot_w, base), "axis");
    // Edge labels at the bin boundaries; every other one when they would crowd.
    let every = edges.len().div_ceil(11).max(1);
    let mut tick_marks = Vec::new();
    for (k, edge) in edges.iter().enumerate() {
        let x = left + (k + 1) as f64 * group_w;
        tick_marks.push(((x, base), (x, base + 4.0)));
        if k % every == 0 {
            svg.text((x, base + 16.0), "m", &short(*edge));
        }
    }
    svg.lines("tick", &tick_marks);
    svg.text(
        (left + plot_w / 2.0, height - 8.0),
        "m t",
        "reference quantile bins (edges)",
    );
    svg.finish()
}

/// At most `max` points of `pts`, evenly spaced, the first and last always kept.
fn thin(pts: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    if pts.len() <= max || max < 2 {
        return pts.iter().copied().filter(finite).collect();
    }
    let last = pts.len() - 1;
    (0..max)
        .filter_map(|k| pts.get(k * last / (max - 1)).copied())
        .filter(finite)
        .collect()
}

/// Both CDFs of a numeric feature on one picture (x = value, y = 0..1).
pub(super) fn cdf_chart(reference: &[(f64, f64)], current: &[(f64, f64)]) -> String {
    let (width, height) = (340.0, 232.0);
    let (left, right, top, bottom) = (40.0, 14.0, 10.0, 46.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let base = top + plot_h;
    let reference = thin(reference, MAX_CDF_POINTS);
    let current = thin(current, MAX_CDF_POINTS);

    let mut svg = Svg::new(width, height, "cdf", "reference and current CDF");
    let (mut lo, mut hi) = reference
        .iter()
        .chain(&current)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(x, _)| {
            (lo.min(x), hi.max(x))
        });
    if lo > hi {
        svg.text((left + plot_w / 2.0, top + plot_h / 2.0), "m", "no values");
        return svg.finish();
    }
    if lo == hi {
        let pad = lo.abs() * 0.1 + 0.5;
        lo -= pad;
        hi += pad;
    }
    let x_of = |v: f64| left + (v - lo) / (hi - lo) * plot_w;
    let y_of = |p: f64| base - p.clamp(0.0, 1.0) * plot_h;
    let mut grid = Vec::new();
    for p in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = y_of(p);
        grid.push(((left, y), (left + plot_w, y)));
        svg.text((left - 6.0, y + 4.0), "e", &num(p));
    }
    svg.lines("grid", &grid);
    let mut tick_marks = Vec::new();
    for tick in ticks(lo, hi, 4) {
        let x = x_of(tick);
        tick_marks.push(((x, base), (x, base + 4.0)));
        svg.text((x, base + 16.0), "m", &short(tick));
    }
    svg.lines("tick", &tick_marks);
    svg.line((left, base), (left + plot_w, base), "axis");
    for (class, pts) in [("line ref", &reference), ("line cur", &current)] {
        if pts.is_empty() {
            continue;
        }
        // Points less than a pixel from the last one kept add nothing to the picture.
        let mut kept: Vec<(f64, f64)> = Vec::with_capacity(pts.len());
        for (k, &(x, p)) in pts.iter().enumerate() {
            let at = (x_of(x), y_of(p));
            let near = kept
                .last()
                .is_some_and(|&(kx, ky)| (at.0 - kx).abs() < 1.0 && (at.1 - ky).abs() < 1.0);
            if !near || k + 1 == pts.len() {
                kept.push(at);
            }
        }
        svg.el("polyline")
            .attr("class", class)
            .attr("points", &points(kept))
            .end();
    }
    svg.text((left + plot_w / 2.0, height - 8.0), "m t", "value");
    svg.text((left + 4.0, top + 12.0), "s t", "F(x)");
    svg.finish()
}

/// One row of a categorical panel.
struct CategoryRow<'a> {
    /// What the row's label shows.
    label: &'a str,
    /// What its bars' `data-category` holds.
    key: &'a str,
    /// Reference mass (none for categories the reference never saw).
    reference: Option<f64>,
    /// Current mass.
    current: f64,
}

/// A categorical feature: a reference and a current bar per category, then `__other__` and
/// the unseen categories' mass when they are not zero. Returns the picture and how many
/// categories were left out.
pub(super) fn categorical_bars(
    categories: &[CategoryMass],
    other_reference: f64,
    other_current: f64,
    unseen_current: f64,
) -> (String, usize) {
    let shown = categories.len().min(MAX_CATEGORIES);
    let mut rows: Vec<CategoryRow<'_>> = categories[..shown]
        .iter()
        .map(|c| CategoryRow {
            label: &c.name,
            key: &c.name,
            reference: Some(c.reference),
            current: c.current,
        })
        .collect();
    if other_reference != 0.0 || other_current != 0.0 {
        rows.push(CategoryRow {
            label: "__other__",
            key: "__other__",
            reference: Some(other_reference),
            current: other_current,
        });
    }
    if unseen_current != 0.0 {
        rows.push(CategoryRow {
            label: "unseen (not in reference)",
            key: "__unseen__",
            reference: None,
            current: unseen_current,
        });
    }
    let labels: Vec<String> = rows.iter().map(|r| clip(r.label, 26)).collect();
    let label_w = label_width(labels.iter(), 70.0, 180.0);
    let (width, row_h, top, bottom) = (580.0, 24.0, 6.0, 38.0);
    let plot_w = width - label_w - 24.0;
    let plot_h = rows.len() as f64 * row_h;
    let base = top + plot_h;
    let height = base + bottom;
    let max = rows
        .iter()
        .flat_map(|r| [r.reference.unwrap_or(0.0), r.current])
        .filter(|m| m.is_finite())
        .fold(0.0, f64::max);
    let x_max = nice_ceil(max, 4);
    let w_of = |m: f64| {
        if m.is_finite() {
            m.clamp(0.0, x_max) / x_max * plot_w
        } else {
            0.0
        }
    };

    let mut svg = Svg::new(width, height, "cats", "mass per category");
    let mut grid = Vec::new();
    for tick in ticks(0.0, x_max, 4) {
        let x = label_w + w_of(tick);
        grid.push(((x, top), (x, base)));
        svg.text((x, base + 16.0), "m", &pct(tick));
    }
    svg.lines("grid", &grid);
    for (i, (row, label)) in rows.iter().zip(&labels).enumerate() {
        let y = top + i as f64 * row_h;
        svg.text_titled(
            (label_w - 6.0, y + row_h / 2.0 + 4.0),
            "e",
            label,
            row.label,
        );
        let bars = [
            ("bar ref", "reference", row.reference, 3.0),
            ("bar cur", "current", Some(row.current), 12.5),
        ];
        for (class, side, mass, offset) in bars {
            let Some(mass) = mass else { continue };
            svg.el("rect")
                .attr("class", class)
                .at("x", label_w)
                .at("y", y + offset)
                .at("width", w_of(mass))
                .at("height", 8.5)
                .attr("data-category", row.key)
                .raw("data-mass", mass)
                .title(&format!("{}: {side} {}", row.label, pct(mass)));
        }
    }
    svg.line((label_w, top), (label_w, base), "axis");
    svg.text(
        (label_w + plot_w / 2.0, height - 6.0),
        "m t",
        "share of non-null values",
    );
    (svg.finish(), categories.len() - shown)
}

/// Round axis bounds around `[lo, hi]` (widened when they meet).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let step = nice_step(hi - lo, 4);
    let (mut lo, mut hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    (lo, hi)
}

/// Time labels along an x-axis: about `wanted` of `windows`, each at `x_of(window)`.
fn time_axis(svg: &mut Svg, windows: &[i64], x_of: &dyn Fn(i64) -> f64, base: f64, wanted: usize) {
    let date_only = windows.iter().all(|&w| is_midnight(w));
    let every = windows.len().div_ceil(wanted.max(1)).max(1);
    let mut tick_marks = Vec::new();
    for &window in windows.iter().step_by(every) {
        let x = x_of(window);
        tick_marks.push(((x, base), (x, base + 4.0)));
        svg.text((x, base + 16.0), "m", &utc_short(window, date_only));
    }
    svg.lines("tick", &tick_marks);
}

/// The performance metric over the last [`MAX_PERFORMANCE_POINTS`] windows, with the
/// reference's value as a dashed line and, for binary models, the AUC estimated from the
/// scores as a dotted one.
pub(super) fn performance_chart(perf: &Performance) -> String {
    let (width, height) = (760.0, 260.0);
    let (left, right, top, bottom) = (56.0, 40.0, 12.0, 46.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let base = top + plot_h;
    let first = perf.windows.len().saturating_sub(MAX_PERFORMANCE_POINTS);
    let windows = &perf.windows[first..];
    // The finite value of a per-window series at the `i`-th drawn window.
    let finite_at = |series: &[Option<f64>], i: usize| {
        series
            .get(first + i)
            .copied()
            .flatten()
            .filter(|v| v.is_finite())
    };
    let value_at = |i: usize| finite_at(&perf.values, i);

    let mut svg = Svg::new(
        width,
        height,
        "perf",
        &format!("{} per window against the reference", perf.metric),
    );
    let estimate_at = |i: usize| finite_at(&perf.estimated, i);
    let known = (0..windows.len())
        .filter_map(value_at)
        .chain((0..windows.len()).filter_map(estimate_at))
        .chain(perf.reference.filter(|v| v.is_finite()));
    let (lo, hi) = known.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi || windows.is_empty() {
        svg.text(
            (left + plot_w / 2.0, top + plot_h / 2.0),
            "m",
            "no labelled windows",
        );
        return svg.finish();
    }
    let (lo, hi) = padded(lo, hi);
    let (t0, t1) = (
        windows.first().copied().unwrap_or(0),
        windows.last().copied().unwrap_or(0),
    );
    let x_of = |t: i64| {
        if t1 > t0 {
            left + (t as f64 - t0 as f64) / (t1 as f64 - t0 as f64) * plot_w
        } else {
            left + plot_w / 2.0
        }
    };
    let y_of = |v: f64| base - (v - lo) / (hi - lo) * plot_h;

    let mut grid = Vec::new();
    for tick in ticks(lo, hi, 5) {
        let y = y_of(tick);
        grid.push(((left, y), (left + plot_w, y)));
        svg.text((left - 6.0, y + 4.0), "e", &num(tick));
    }
    svg.lines("grid", &grid);
    svg.line((left, base), (left + plot_w, base), "axis");
    time_axis(&mut svg, windows, &x_of, base, 7);
    svg.text(
        (left + plot_w / 2.0, height - 8.0),
        "m t",
        "window start (UTC)",
    );
    svg.text((left + 4.0, top + 12.0), "s t", &perf.metric);

    if let Some(reference) = perf.reference.filter(|v| v.is_finite()) {
        let y = y_of(reference);
        svg.el("line")
            .attr("class", "refline")
            .at("x1", left)
            .at("y1", y)
            .at("x2", left + plot_w)
            .at("y2", y)
            .title(&format!("reference {} {}", perf.metric, num(reference)));
    }
    // The estimate first, so the realised line is drawn over it.
    type ValueAt<'a> = &'a dyn Fn(usize) -> Option<f64>;
    let series: [(&str, &str, ValueAt<'_>); 2] = [
        ("est", "estimated_auc", &estimate_at),
        ("cur", perf.metric.as_str(), &value_at),
    ];
    for (class, name, at) in series {
        // The line breaks where a window has no value.
        let mut run: Vec<(f64, f64)> = Vec::new();
        for i in 0..=windows.len() {
            match (windows.get(i), at(i)) {
                (Some(&t), Some(v)) => run.push((x_of(t), y_of(v))),
                _ => {
                    if run.len() > 1 {
                        svg.el("polyline")
                            .attr("class", &format!("line {class}"))
                            .attr("points", &points(run.iter().copied()))
                            .end();
                    }
                    run.clear();
                }
            }
        }
        for (i, &window) in windows.iter().enumerate() {
            let Some(v) = at(i) else { continue };
            svg.el("circle")
                .attr("class", &format!("pt {class}"))
                .at("cx", x_of(window))
                .at("cy", y_of(v))
                .at("r", 3.0)
                .raw("data-window", window)
                .raw("data-value", v)
                .title(&format!("{}: {name} {}", utc(window), num(v)));
        }
    }
    svg.finish()
}

/// The reliability diagram: observed positive rate against mean predicted score per bin,
/// points sized by their labelled rows, the diagonal of perfect calibration dashed.
pub(super) fn calibration_chart(cal: &Calibration) -> String {
    let size = 340.0;
    // The bottom margin (for the x-axis labels) is what is left under the square plot.
    let (left, right, top) = (50.0, 14.0, 14.0);
    let plot = size - left - right;
    let base = top + plot;
    let x_of = |v: f64| left + v.clamp(0.0, 1.0) * plot;
    let y_of = |v: f64| base - v.clamp(0.0, 1.0) * plot;
    let bins = &cal.bins[..cal.bins.len().min(MAX_CALIBRATION_BINS)];

    let mut svg = Svg::new(size, size, "calib", "reliability diagram");
    let mut grid = Vec::new();
    for k in 0..=5 {
        let v = f64::from(k) * 0.2;
        grid.push(((left, y_of(v)), (left + plot, y_of(v))));
        grid.push(((x_of(v), top), (x_of(v), base)));
        svg.text((left - 6.0, y_of(v) + 4.0), "e", &num(v));
        svg.text((x_of(v), base + 16.0), "m", &num(v));
    }
    svg.lines("grid", &grid);
    svg.lines(
        "axis",
        &[
            ((left, top), (left, base)),
            ((left, base), (left + plot, base)),
        ],
    );
    svg.el("line")
        .attr("class", "diag")
        .at("x1", x_of(0.0))
        .at("y1", y_of(0.0))
        .at("x2", x_of(1.0))
        .at("y2", y_of(1.0))
        .title("perfect calibration");
    svg.text(
        (left + plot / 2.0, size - 10.0),
        "m t",
        "mean predicted score",
    );
    svg.el("text")
        .attr("class", "m t")
        .raw(
            "transform",
            format_args!("rotate(-90 14 {})", P(top + plot / 2.0)),
        )
        .at("x", 14.0)
        .at("y", top + plot / 2.0)
        .text("observed positive rate");

    let usable: Vec<_> = bins
        .iter()
        .filter(|b| b.predicted.is_finite() && b.observed.is_finite())
        .collect();
    if usable.len() > 1 {
        svg.el("polyline")
            .attr("class", "line cur")
            .attr(
                "points",
                &points(usable.iter().map(|b| (x_of(b.predicted), y_of(b.observed)))),
            )
            .end();
    }
    let most = usable.iter().map(|b| b.n).max().unwrap_or(0).max(1);
    for b in usable {
        let r = 3.0 + 8.0 * (b.n as f64 / most as f64).sqrt();
        svg.el("circle")
            .attr("class", "pt cur")
            .at("cx", x_of(b.predicted))
            .at("cy", y_of(b.observed))
            .at("r", r)
            .raw("data-n", b.n)
            .raw("data-predicted", b.predicted)
            .raw("data-observed", b.observed)
            .title(&format!(
                "scores from {}: mean predicted {}, observed {}, n {}",
                num(b.lower),
                num(b.predicted),
                num(b.observed),
                count(b.n)
            ));
    }
    svg.finish()
}
