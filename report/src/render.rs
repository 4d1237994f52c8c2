//! The report as one self-contained HTML5 page: inline CSS, SVG pictures drawn by our own
//! code (no dependency), no scripts and no URL of any kind, so the file works offline and can
//! be attached to a ticket.
//!
//! Three promises hold for any [`Report`]:
//!
//! - every string from the data (names, categories, cells, warnings) is escaped for HTML text
//!   and attributes;
//! - the same report gives the same bytes: nothing reads a clock, iterates a hash map or
//!   depends on the locale; times are formatted here as UTC ISO-8601;
//! - the page stays under 1 MB however many features and windows the report holds: each
//!   section has a row or point limit and a byte budget (the budgets add up to about 0.9 MB),
//!   and the page says what it left out.

use std::collections::BTreeMap;

use crate::data::{Distribution, Report, Shape, Table};

/// `write!` into a `String`, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = ::std::fmt::Write::write_fmt($out, format_args!($($arg)*));
    }};
}

mod charts;
mod format;
mod svg;
#[cfg(test)]
mod tests;

use format::{DASH, Esc, count, duration, num, opt, signed, utc};

/// Most distribution panels drawn (`$score`'s included).
const MAX_PANELS: usize = 60;
/// Bytes the distribution panels may take together.
const PANEL_BYTES: usize = 440_000;
/// Most rows of the drift table.
const MAX_DRIFT_ROWS: usize = 500;
/// Bytes the drift table's rows may take.
const DRIFT_BYTES: usize = 100_000;
/// Most rows of the explain, segment and performance summary tables.
const MAX_TABLE_ROWS: usize = 200;
/// Bytes one of those tables' rows may take.
const TABLE_BYTES: usize = 30_000;
/// Most columns of a result table.
const MAX_TABLE_COLUMNS: usize = 30;
/// Most characters of one table cell, warning or prediction-shift name.
const MAX_CELL_CHARS: usize = 500;
/// Most prediction-shift values listed.
const MAX_NAMED_VALUES: usize = 50;
/// Most warnings listed.
const MAX_WARNINGS: usize = 100;
/// Bytes the warnings may take.
const WARNING_BYTES: usize = 20_000;

/// The distribution of the prediction score.
const SCORE: &str = "$score";

/// The page's style sheet: a light theme, tabular numbers, and the two series colours every
/// picture and legend shares (reference grey-blue, current orange).
const CSS: &str = "\
:root{--ref:#6b8cae;--cur:#f28e2b;--est:#8e5ea2;--ink:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;\
--bad:#c62828;--bad-bg:#fdecea;--good:#2e7d32;--good-bg:#e8f5e9}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1240px;padding:24px 32px 40px;color:var(--ink);background:#fff;\
font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\",Arial,sans-serif}
h1{font-size:22px;margin:0 0 6px}
h2{font-size:17px;margin:36px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:0 0 2px;overflow-wrap:anywhere}
a{color:#0b61c4;text-decoration:none}
a:hover{text-decoration:underline}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0 14px;color:var(--muted)}
.meta dt{font-weight:600}
.meta dd{margin:0;overflow-wrap:anywhere}
nav{margin:0 0 14px;font-size:13px}
nav a{margin-right:14px}
.banner{padding:12px 16px;border-radius:6px;border-left:6px solid}
.banner strong{font-size:17px;display:block}
.banner.drift{background:var(--bad-bg);border-color:var(--bad)}
.banner.drift strong{color:var(--bad)}
.banner.ok{background:var(--good-bg);border-color:var(--good)}
.banner.ok strong{color:var(--good)}
.banner span{color:var(--muted)}
table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:var(--soft);font-weight:600;font-size:13px}
.n{text-align:right;white-space:nowrap}
tr.drifted td{background:var(--bad-bg)}
tr.drifted td:last-child{color:var(--bad);font-weight:600}
.note,.empty{color:var(--muted);font-size:13px}
.legend{font-size:13px;color:var(--muted)}
.key{margin-right:14px;white-space:nowrap}
.key::before{content:\"\";display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
.key.ref::before{background:var(--ref)}
.key.cur::before{background:var(--cur)}
.key.dash::before{height:0;border-top:2px dashed var(--ref);border-radius:0;vertical-align:3px}
.key.est::before{height:0;border-top:2px dotted var(--est);border-radius:0;vertical-align:3px}
.feature{margin:18px 0;padding:12px 14px;border:1px solid var(--line);border-radius:6px}
.feature .stats{margin:0 0 8px;color:var(--muted);font-size:13px;font-variant-numeric:tabular-nums}
.tag{font-size:12px;font-weight:600;padding:1px 7px;border-radius:9px;vertical-align:2px;margin-left:6px}
.tag.drifted{background:var(--bad-bg);color:var(--bad)}
.tag.ok{background:var(--good-bg);color:var(--good)}
.charts{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:8px 0}
figcaption{color:var(--muted);font-size:13px}
.scroll{overflow-x:auto}
svg{font-size:11px;font-variant-numeric:tabular-nums;overflow:visible;display:block}
svg text{fill:var(--muted)}
svg .e{text-anchor:end}
svg .m{text-anchor:middle}
svg .t{fill:var(--ink)}
svg a text{fill:#0b61c4}
.grid,.axis,.tick{fill:none}
.grid{stroke:#eaeef2}
.axis,.tick{stroke:#8c959f}
.frame{fill:none;stroke:#d0d7de}
.swatch{stroke:#afb8c1}
.cell{stroke:#fff;stroke-width:.5}
.bar.ref{fill:var(--ref)}
.bar.cur{fill:var(--cur)}
.line{fill:none;stroke-width:2}
.line.ref{stroke:var(--ref)}
.line.cur{stroke:var(--cur)}
.pt.cur{fill:var(--cur);fill-opacity:.8;stroke:#fff}
.line.est{stroke:var(--est);stroke-dasharray:2 3}
.pt.est{fill:var(--est);fill-opacity:.8;stroke:#fff}
.refline,.diag{stroke:var(--ref);stroke-width:1.5;stroke-dasharray:6 4}
.diag{stroke:#8c959f}
footer{margin-top:40px;padding-top:8px;border-top:1px solid var(--line);color:var(--muted);font-size:12px}
";

/// The report as one self-contained HTML page: header and verdict banner, drift table,
/// prediction shift, heatmap, distribution panels, performance, calibration, explain,
/// segments and warnings, in that order (optional parts only when the report has them).
pub fn html(report: &Report) -> String {
    let panels = Panels::draw(report);
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, report);
    header(&mut out, report);
    verdict(&mut out, report);
    drift_table(&mut out, report, &panels);
    prediction_shift(&mut out, report);
    heatmap(&mut out, report, &panels);
    distributions(&mut out, report, &panels);
    performance(&mut out, report);
    calibration(&mut out, report);
    explain(&mut out, report);
    segments(&mut out, report);
    warnings(&mut out, report);
    w!(
        &mut out,
        "<footer>driftdb {} · schema <code>{}</code></footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        Esc(&report.schema)
    );
    out
}

/// The distribution panels, drawn before the rest of the page so the drift table and the
/// heatmap know which features have a panel to link to.
struct Panels<'a> {
    /// The panels' markup, in report order.
    html: String,
    /// How many panels were drawn.
    drawn: usize,
    /// Feature name → index (in [`Report::distributions`]) of its panel; the first panel
    /// when a name repeats.
    anchors: BTreeMap<&'a str, usize>,
}

impl<'a> Panels<'a> {
    /// Draws `$score`'s panel, then the others in report order (the largest effects first),
    /// until [`MAX_PANELS`] panels or [`PANEL_BYTES`] bytes.
    fn draw(report: &'a Report) -> Self {
        let all = &report.distributions;
        let score = all.iter().position(|d| d.feature == SCORE);
        let order = score
            .into_iter()
            .chain((0..all.len()).filter(|&i| Some(i) != score));
        let mut drawn: Vec<(usize, String)> = Vec::new();
        let mut bytes = 0;
        for i in order.take(MAX_PANELS) {
            let Some(d) = all.get(i) else { continue };
            let mut html = String::new();
            panel(&mut html, report, i, d);
            bytes += html.len();
            if bytes > PANEL_BYTES {
                break;
            }
            drawn.push((i, html));
        }
        drawn.sort_by_key(|&(i, _)| i);
        let mut anchors = BTreeMap::new();
        for (i, _) in &drawn {
            if let Some(d) = all.get(*i) {
                anchors.entry(d.feature.as_str()).or_insert(*i);
            }
        }
        Self {
            drawn: drawn.len(),
            html: drawn.into_iter().map(|(_, html)| html).collect(),
            anchors,
        }
    }
}

/// The document head with the style sheet.
fn head(out: &mut String, report: &Report) {
    w!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>driftdb report — {}@{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        Esc(&report.model),
        Esc(&report.version)
    );
}

/// The title, the range and where the data came from, and a table of contents.
fn header(out: &mut String, report: &Report) {
    w!(
        out,
        "<header>\n<h1>driftdb report — {}@{}</h1>\n<dl class=\"meta\">\n\
         <dt>Range</dt><dd>{} → {} (UTC)</dd>\n<dt>Step</dt><dd>{}</dd>\n\
         <dt>Source</dt><dd>{}</dd>\n<dt>Task</dt><dd>{}</dd>\n",
        Esc(&report.model),
        Esc(&report.version),
        utc(report.from_ms),
        utc(report.to_ms),
        duration(report.step_ms),
        Esc(&report.source),
        Esc(&report.task),
    );
    if let Some(by) = &report.by {
        w!(out, "<dt>Segments by</dt><dd>{}</dd>\n", Esc(by));
    }
    w!(
        out,
        "<dt>Generated</dt><dd>{}</dd>\n</dl>\n</header>\n",
        utc(report.generated_at_ms)
    );

    let mut links = vec![("drift", "Drift"), ("prediction-shift", "Prediction")];
    if report.heatmap.is_some() {
        links.push(("heatmap", "Heatmap"));
    }
    links.push(("distributions", "Distributions"));
    if report.performance.is_some() {
        links.push(("performance", "Performance"));
    }
    if report.calibration.is_some() {
        links.push(("calibration", "Calibration"));
    }
    links.push(("explain", "Explain"));
    if report.segments.is_some() {
        links.push(("segments", "Segments"));
    }
    if !report.warnings.is_empty() {
        links.push(("warnings", "Warnings"));
    }
    out.push_str("<nav>");
    for (id, text) in links {
        w!(out, "<a href=\"#{id}\">{text}</a>");
    }
    out.push_str("</nav>\n");
}

/// The banner: how many features drifted, by which test.
fn verdict(out: &mut String, report: &Report) {
    let v = &report.verdict;
    w!(
        out,
        "<div id=\"verdict\" class=\"banner {}\" data-drift=\"{}\" data-drifted=\"{}\" \
         data-features=\"{}\">\n<strong>{} of {} features drifted</strong>\n\
         <span>{} · α = {} · min effect = {}</span>\n</div>\n",
        if v.drift { "drift" } else { "ok" },
        v.drift,
        v.drifted,
        v.features,
        count(v.drifted as u64),
        count(v.features as u64),
        Esc(&v.test),
        num(v.alpha),
        num(v.min_effect),
    );
}

/// The drift table: one row per input feature, in report order, drifted rows highlighted,
/// names linking to their panels.
fn drift_table(out: &mut String, report: &Report, panels: &Panels<'_>) {
    out.push_str("<section id=\"drift\">\n<h2>Feature drift</h2>\n");
    if report.features.is_empty() {
        out.push_str("<p class=\"empty\">No input features.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table id=\"drift-table\">\n<thead><tr><th>feature</th>\
         <th>kind</th><th class=\"n\">psi</th><th class=\"n\">statistic</th>\
         <th class=\"n\">p_adj</th><th class=\"n\">missing change</th><th class=\"n\">n</th>\
         <th class=\"n\">baseline n</th><th>drifted</th></tr></thead>\n<tbody>\n",
    );
    let start = out.len();
    let mut shown = 0;
    for f in report.features.iter().take(MAX_DRIFT_ROWS) {
        if out.len() - start > DRIFT_BYTES {
            break;
        }
        shown += 1;
        w!(out, "<tr data-feature=\"{}\"", Esc(&f.feature));
        if f.drifted {
            out.push_str(" class=\"drifted\"");
        }
        out.push_str("><td>");
        feature_link(out, &f.feature, panels);
        w!(
            out,
            "</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td></tr>\n",
            Esc(&f.kind),
            opt(f.psi),
            opt(f.statistic),
            opt(f.p_adj),
            signed(f.missing_change),
            count(f.n),
            count(f.baseline_n),
            if f.drifted { "yes" } else { "no" },
        );
    }
    out.push_str("</tbody>\n</table></div>\n");
    left_out(
        out,
        report.features.len() - shown,
        "features with the smallest effects",
    );
    out.push_str("</section>\n");
}

/// A feature's name, linked to its panel when it has one.
fn feature_link(out: &mut String, feature: &str, panels: &Panels<'_>) {
    match panels.anchors.get(feature) {
        Some(index) => w!(out, "<a href=\"#f-{index}\">{}</a>", Esc(feature)),
        None => w!(out, "{}", Esc(feature)),
    }
}

/// A note that `n` items were left out (nothing when `n` is zero).
fn left_out(out: &mut String, n: usize, what: &str) {
    if n > 0 {
        w!(
            out,
            "<p class=\"note\">{} more {what} not shown (see <code>--format json</code>).</p>\n",
            count(n as u64)
        );
    }
}

/// The prediction score against the reference, as a one-row table.
fn prediction_shift(out: &mut String, report: &Report) {
    out.push_str("<section id=\"prediction-shift\">\n<h2>Prediction shift</h2>\n");
    if report.prediction_shift.is_empty() {
        out.push_str("<p class=\"empty\">No prediction score to compare.</p>\n</section>\n");
        return;
    }
    let values = &report.prediction_shift[..report.prediction_shift.len().min(MAX_NAMED_VALUES)];
    out.push_str("<table>\n<thead><tr>");
    for v in values {
        w!(
            out,
            "<th class=\"n\">{}</th>",
            Esc(&format::clip(&v.name, MAX_CELL_CHARS))
        );
    }
    out.push_str("</tr></thead>\n<tbody><tr>");
    for v in values {
        w!(
            out,
            "<td class=\"n\" data-name=\"{}\">{}</td>",
            Esc(&format::clip(&v.name, MAX_CELL_CHARS)),
            opt(v.value)
        );
    }
    out.push_str("</tr></tbody>\n</table>\n");
    left_out(out, report.prediction_shift.len() - values.len(), "values");
    out.push_str("</section>\n");
}

/// The drift heatmap, when the range has more than one window.
fn heatmap(out: &mut String, report: &Report, panels: &Panels<'_>) {
    let Some(hm) = &report.heatmap else { return };
    w!(
        out,
        "<section id=\"heatmap\">\n<h2>Drift over time ({})</h2>\n",
        Esc(&hm.metric)
    );
    if hm.features.is_empty() || hm.windows.is_empty() {
        out.push_str("<p class=\"empty\">No windows to show.</p>\n</section>\n");
        return;
    }
    let (rows, cols) = charts::heatmap_shape(&hm.features, hm.windows.len());
    if rows < hm.features.len() || cols < hm.windows.len() {
        w!(
            out,
            "<p class=\"note\">Showing the first {} of {} features (the largest effects) over \
             the last {} of {} windows.</p>\n",
            count(rows as u64),
            count(hm.features.len() as u64),
            count(cols as u64),
            count(hm.windows.len() as u64),
        );
    }
    out.push_str("<div class=\"scroll\">\n");
    out.push_str(&charts::heatmap(hm, &panels.anchors, rows, cols));
    out.push_str("</div>\n</section>\n");
}

/// The distribution panels, with a legend up front.
fn distributions(out: &mut String, report: &Report, panels: &Panels<'_>) {
    out.push_str(
        "<section id=\"distributions\">\n<h2>Distributions</h2>\n<p class=\"legend\">\
         <span class=\"key ref\">reference</span><span class=\"key cur\">current</span></p>\n",
    );
    if report.distributions.is_empty() {
        out.push_str("<p class=\"empty\">No distributions.</p>\n");
    }
    out.push_str(&panels.html);
    left_out(
        out,
        report.distributions.len() - panels.drawn,
        "distributions (the smallest effects)",
    );
    out.push_str("</section>\n");
}

/// One feature's panel: its drift numbers, then its pictures.
fn panel(out: &mut String, report: &Report, index: usize, d: &Distribution) {
    let drift = report.features.iter().find(|f| f.feature == d.feature);
    w!(
        out,
        "<section class=\"feature\" id=\"f-{index}\" data-feature=\"{}\">\n<h3>{}",
        Esc(&d.feature),
        Esc(&d.feature)
    );
    match drift {
        Some(f) if f.drifted => out.push_str("<span class=\"tag drifted\">drifted</span>"),
        Some(_) => out.push_str("<span class=\"tag ok\">no drift</span>"),
        None => {}
    }
    out.push_str("</h3>\n<p class=\"stats\">");
    let (kind, n, baseline_n) = match &d.shape {
        Shape::Numeric { n, baseline_n, .. } => ("numeric", *n, *baseline_n),
        Shape::Categorical { n, baseline_n, .. } => ("categorical", *n, *baseline_n),
    };
    w!(out, "{kind}");
    if let Some(f) = drift {
        w!(
            out,
            " · psi {} · p_adj {} · missing change {}",
            opt(f.psi),
            opt(f.p_adj),
            signed(f.missing_change)
        );
    } else if d.feature == SCORE {
        for v in report.prediction_shift.iter().take(MAX_NAMED_VALUES) {
            w!(
                out,
                " · {} {}",
                Esc(&format::clip(&v.name, MAX_CELL_CHARS)),
                opt(v.value)
            );
        }
    }
    w!(
        out,
        " · n {} (reference {})</p>\n<div class=\"charts\">\n",
        count(n),
        count(baseline_n)
    );
    match &d.shape {
        Shape::Numeric {
            edges,
            reference,
            current,
            reference_cdf,
            current_cdf,
            ..
        } => {
            out.push_str(&charts::numeric_bars(edges, reference, current));
            out.push_str(&charts::cdf_chart(reference_cdf, current_cdf));
            out.push_str("</div>\n");
        }
        Shape::Categorical {
            categories,
            other_reference,
            other_current,
            unseen_current,
            ..
        } => {
            let (svg, hidden) = charts::categorical_bars(
                categories,
                *other_reference,
                *other_current,
                *unseen_current,
            );
            out.push_str(&svg);
            out.push_str("</div>\n");
            left_out(out, hidden, "categories");
        }
    }
    out.push_str("</section>\n");
}

/// Labelled performance: the summary table and the metric over time.
fn performance(out: &mut String, report: &Report) {
    let Some(perf) = &report.performance else {
        return;
    };
    out.push_str("<section id=\"performance\">\n<h2>Performance</h2>\n");
    table(out, &perf.summary, "No labelled rows.");
    w!(
        out,
        "<figure>\n<p class=\"legend\"><span class=\"key cur\">{} per window</span>\
         <span class=\"key dash\">reference ({})</span>",
        Esc(&perf.metric),
        opt(perf.reference)
    );
    if !perf.estimated.is_empty() {
        out.push_str(
            "<span class=\"key est\">estimated_auc: expected from the scores, no labels needed</span>",
        );
    }
    out.push_str("</p>\n");
    out.push_str("<div class=\"scroll\">\n");
    out.push_str(&charts::performance_chart(perf));
    out.push_str("</div>\n</figure>\n");
    left_out(
        out,
        perf.windows
            .len()
            .saturating_sub(charts::MAX_PERFORMANCE_POINTS),
        "earlier windows",
    );
    out.push_str("</section>\n");
}

/// The reliability diagram.
fn calibration(out: &mut String, report: &Report) {
    let Some(cal) = &report.calibration else {
        return;
    };
    out.push_str("<section id=\"calibration\">\n<h2>Calibration</h2>\n<figure>\n");
    out.push_str(&charts::calibration_chart(cal));
    w!(
        out,
        "<figcaption>Reliability diagram: observed positive rate against mean predicted \
         score per score bin, points sized by labelled rows; the dashed diagonal is perfect \
         calibration. ECE {}.</figcaption>\n</figure>\n</section>\n",
        opt(cal.ece)
    );
}

/// What `explain(model)` found.
fn explain(out: &mut String, report: &Report) {
    out.push_str("<section id=\"explain\">\n<h2>Explain</h2>\n");
    table(
        out,
        &report.explain,
        "Nothing found: no drift, breakage or performance drop to explain over this range.",
    );
    out.push_str("</section>\n");
}

/// Drift per segment.
fn segments(out: &mut String, report: &Report) {
    let Some(t) = &report.segments else { return };
    out.push_str("<section id=\"segments\">\n<h2>Segments");
    if let Some(by) = &report.by {
        w!(out, " by {}", Esc(by));
    }
    out.push_str("</h2>\n");
    table(out, t, "No segments.");
    out.push_str("</section>\n");
}

/// The warnings, when there are any.
fn warnings(out: &mut String, report: &Report) {
    if report.warnings.is_empty() {
        return;
    }
    out.push_str("<section id=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n");
    let start = out.len();
    let mut shown = 0;
    for text in report.warnings.iter().take(MAX_WARNINGS) {
        if out.len() - start > WARNING_BYTES {
            break;
        }
        shown += 1;
        w!(
            out,
            "<li>{}</li>\n",
            Esc(&format::clip(text, MAX_CELL_CHARS))
        );
    }
    out.push_str("</ul>\n");
    left_out(out, report.warnings.len() - shown, "warnings");
    out.push_str("</section>\n");
}

/// A result table (numbers right-aligned and formatted, strings as they are, null as `—`),
/// or `empty` as a line when it has no rows.
fn table(out: &mut String, t: &Table, empty: &str) {
    if t.rows.is_empty() {
        w!(out, "<p class=\"empty\">{}</p>\n", Esc(empty));
        return;
    }
    let columns = t
        .columns
        .len()
        .max(t.rows.iter().map(Vec::len).max().unwrap_or(0))
        .min(MAX_TABLE_COLUMNS);
    out.push_str("<div class=\"scroll\"><table>\n");
    if !t.columns.is_empty() {
        out.push_str("<thead><tr>");
        for name in t.columns.iter().take(columns) {
            w!(out, "<th>{}</th>", Esc(&format::clip(name, MAX_CELL_CHARS)));
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    let start = out.len();
    let mut shown = 0;
    for row in t.rows.iter().take(MAX_TABLE_ROWS) {
        if out.len() - start > TABLE_BYTES {
            break;
        }
        shown += 1;
        out.push_str("<tr>");
        for k in 0..columns {
            match row.get(k) {
                Some(cell) => table_cell(out, cell),
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table></div>\n");
    left_out(out, t.rows.len() - shown, "rows");
}

/// One cell of a result table.
fn table_cell(out: &mut String, cell: &serde_json::Value) {
    use serde_json::Value;
    match cell {
        Value::Null => w!(out, "<td class=\"n\">{DASH}</td>"),
        Value::Number(n) => {
            let text = if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                n.as_f64().map_or_else(|| n.to_string(), num)
            };
            w!(out, "<td class=\"n\">{}</td>", Esc(&text));
        }
        Value::String(s) => w!(out, "<td>{}</td>", Esc(&format::clip(s, MAX_CELL_CHARS))),
        Value::Bool(b) => w!(out, "<td>{b}</td>"),
        other => w!(
            out,
            "<td><code>{}</code></td>",
            Esc(&format::clip(&other.to_string(), MAX_CELL_CHARS))
        ),
    }
}
