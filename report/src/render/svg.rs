//! A small SVG writer: elements pushed into a `String` with their attributes escaped, and
//! coordinates rounded to a tenth of a pixel so the markup stays short. The `<svg>` element
//! carries no `xmlns`: an inline SVG in an HTML5 page needs none, and the page holds no URL.

use std::fmt::{self, Display, Write as _};

use super::format::Esc;

/// A coordinate or length, written with at most one decimal (`12`, `12.5`, `-3.1`).
#[derive(Debug, Clone, Copy)]
pub(super) struct P(pub(super) f64);

impl Display for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = (self.0 * 10.0).round() / 10.0;
        if !r.is_finite() {
            f.write_str("0")
        } else if r.fract() == 0.0 {
            write!(f, "{}", r as i64)
        } else {
            write!(f, "{r:.1}")
        }
    }
}

/// A straight segment from one point to another.
pub(super) type Segment = ((f64, f64), (f64, f64));

/// The `points` attribute of a polyline.
pub(super) fn points(pts: impl IntoIterator<Item = (f64, f64)>) -> String {
    let mut out = String::new();
    for (i, (x, y)) in pts.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{},{}", P(x), P(y));
    }
    out
}

/// One SVG picture being written.
#[derive(Debug)]
pub(super) struct Svg {
    out: String,
}

impl Svg {
    /// Opens a `width` × `height` picture with a CSS class and an accessible label.
    pub(super) fn new(width: f64, height: f64, class: &str, label: &str) -> Self {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "<svg class=\"{}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
            Esc(class),
            Esc(label),
            w = P(width),
            h = P(height),
        );
        Self { out }
    }

    /// Starts an element; finish it with one of [`El`]'s closing methods.
    pub(super) fn el(&mut self, name: &'static str) -> El<'_> {
        self.out.push('<');
        self.out.push_str(name);
        El {
            out: &mut self.out,
            name,
        }
    }

    /// Closes an element left open by [`El::open`].
    pub(super) fn close(&mut self, name: &str) {
        let _ = writeln!(self.out, "</{name}>");
    }

    /// A line segment with a class.
    pub(super) fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), class: &str) {
        self.el("line")
            .at("x1", x1)
            .at("y1", y1)
            .at("x2", x2)
            .at("y2", y2)
            .attr("class", class)
            .end();
    }

    /// Straight segments sharing a class, as one `<path>` (grid lines, ticks).
    pub(super) fn lines(&mut self, class: &str, segments: &[Segment]) {
        if segments.is_empty() {
            return;
        }
        let _ = write!(self.out, "<path class=\"{}\" d=\"", Esc(class));
        for ((x1, y1), (x2, y2)) in segments {
            let _ = write!(self.out, "M{},{}L{},{}", P(*x1), P(*y1), P(*x2), P(*y2));
        }
        self.out.push_str("\"/>\n");
    }

    /// A text label anchored at `(x, y)`; `class` sets its alignment and style.
    pub(super) fn text(&mut self, (x, y): (f64, f64), class: &str, text: &str) {
        self.el("text")
            .at("x", x)
            .at("y", y)
            .attr("class", class)
            .text(text);
    }

    /// A text label that shows `full` as its tooltip (for labels that were clipped).
    pub(super) fn text_titled(&mut self, (x, y): (f64, f64), class: &str, text: &str, full: &str) {
        if text == full {
            self.text((x, y), class, text);
            return;
        }
        self.el("text")
            .at("x", x)
            .at("y", y)
            .attr("class", class)
            .open();
        let _ = writeln!(self.out, "<title>{}</title>{}</text>", Esc(full), Esc(text));
    }

    /// Closes the picture and returns its markup.
    pub(super) fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// An element whose attributes are being written.
#[derive(Debug)]
#[must_use = "an element must be closed with end, text, title or open"]
pub(super) struct El<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl El<'_> {
    /// A coordinate or length attribute.
    pub(super) fn at(self, key: &str, v: f64) -> Self {
        let _ = write!(self.out, " {key}=\"{}\"", P(v));
        self
    }

    /// An attribute whose value is escaped.
    pub(super) fn attr(self, key: &str, value: &str) -> Self {
        let _ = write!(self.out, " {key}=\"{}\"", Esc(value));
        self
    }

    /// An attribute whose value is written as it formats; only for numbers and fixed words.
    pub(super) fn raw(self, key: &str, value: impl Display) -> Self {
        let _ = write!(self.out, " {key}=\"{value}\"");
        self
    }

    /// Closes an empty element.
    pub(super) fn end(self) {
        self.out.push_str("/>\n");
    }

    /// Writes the escaped text content and closes the element.
    pub(super) fn text(self, text: &str) {
        let _ = writeln!(self.out, ">{}</{}>", Esc(text), self.name);
    }

    /// Gives the element a tooltip (`<title>`) and closes it.
    pub(super) fn title(self, title: &str) {
        let _ = writeln!(self.out, "><title>{}</title></{}>", Esc(title), self.name);
    }

    /// Leaves the element open for children; close it with [`Svg::close`].
    pub(super) fn open(self) {
        self.out.push('>');
    }
}

/// The fill of a heatmap cell: white at 0, yellow at 0.1, red from 0.25 up; grey when there
/// is no value.
pub(super) fn psi_colour(value: Option<f64>) -> String {
    const NONE: &str = "#cfd4da";
    const STOPS: [(f64, [f64; 3]); 3] = [
        (0.0, [255.0, 255.0, 255.0]),
        (0.1, [253.0, 216.0, 53.0]),
        (0.25, [211.0, 47.0, 47.0]),
    ];
    let v = match value {
        Some(v) if !v.is_nan() => v.clamp(0.0, 0.25),
        _ => return NONE.to_owned(),
    };
    let (lo, hi) = if v <= STOPS[1].0 {
        (STOPS[0], STOPS[1])
    } else {
        (STOPS[1], STOPS[2])
    };
    let t = ((v - lo.0) / (hi.0 - lo.0)).clamp(0.0, 1.0);
    let mut out = String::from("#");
    for k in 0..3 {
        let c = lo.1[k] + (hi.1[k] - lo.1[k]) * t;
        let _ = write!(out, "{:02x}", c.round().clamp(0.0, 255.0) as u8);
    }
    out
}
