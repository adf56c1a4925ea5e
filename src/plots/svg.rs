//! Stacked bar charts as small inline SVG (the web admin's overview plots, issue 11 item 4).
//!
//! **Owns:** turning a [`BarChart`] — x labels (days, weeks) and one or more [`Panel`]s of
//! stacked [`Layer`]s sharing the x axis — into one `<svg role="img">` with a `<title>`, a legend,
//! y ticks in the panel's [`Format`], and one `<rect>` per non-zero (bar, layer) filled with the
//! layer's colour (so `fill="#RRGGBB"` counts are the data). A chart with no non-zero value still
//! renders: axes and "No data in this period".
//!
//! **Uses:** plotters' `SVGBackend` (`ChartBuilder` for axes and ticks). Text is emitted as
//! `<text>` in the page's `sans-serif`; no font is embedded, so a 30-bar chart is a few KB.
//! Output is deterministic: the same chart gives the same bytes.

use std::fmt::Write as _;

use plotters::backend::SVGBackend;
use plotters::chart::ChartBuilder;
use plotters::drawing::IntoDrawingArea;
use plotters::element::{Rectangle, Text};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, IntoFont, RGBColor, TextStyle, WHITE};

/// Text shown over an empty chart.
pub const NO_DATA: &str = "No data in this period";

const TEXT: RGBColor = RGBColor(33, 37, 41);
const MUTED: RGBColor = RGBColor(108, 117, 125);
const GRID: RGBColor = RGBColor(222, 226, 230);
/// Font size handed to plotters (its SVG backend writes `size / 1.24` as `font-size`).
const FONT: f64 = 14.0;
/// Height of the legend strip, in px.
const LEGEND_H: u32 = 24;

/// An sRGB colour; [`Rgb::hex`] is how it appears in the SVG (`#RRGGBB`, upper case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#RRGGBB` (upper-case hex), exactly as the `fill` attribute of the layer's bars.
    pub fn hex(self) -> String {
        format!("#{:02X}{:02X}{:02X}", self.0, self.1, self.2)
    }

    fn plotters(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// A qualitative palette (colour-blind friendly, Okabe–Ito order) for layers without a fixed
/// meaning (e.g. members); callers cycle through it.
pub const PALETTE: [Rgb; 8] = [
    Rgb(0, 114, 178),
    Rgb(230, 159, 0),
    Rgb(0, 158, 115),
    Rgb(204, 121, 167),
    Rgb(86, 180, 233),
    Rgb(213, 94, 0),
    Rgb(240, 228, 66),
    Rgb(0, 0, 0),
];

/// How a panel's values and y ticks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Whole counts (runs, chores, tokens): `12`, `3.4k`, `1.2M`.
    Count,
    /// US dollars: `$0.12` (three decimals under $0.10).
    Usd,
}

impl Format {
    /// `v` as a tick label or a number in a caption.
    pub fn show(self, v: f64, max: f64) -> String {
        match self {
            Format::Count => {
                if v >= 1e6 {
                    format!("{:.1}M", v / 1e6)
                } else if v >= 1e4 {
                    format!("{:.0}k", v / 1e3)
                } else if v >= 1e3 {
                    format!("{:.1}k", v / 1e3)
                } else {
                    format!("{}", v.round() as i64)
                }
            }
            Format::Usd if max < 0.1 => format!("${v:.3}"),
            Format::Usd => format!("${v:.2}"),
        }
    }
}

/// One stacked layer: a name (in the legend), a colour, and one value per x label (missing
/// values count as 0; negative and non-finite ones are drawn as 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub name: String,
    pub color: Rgb,
    pub values: Vec<f64>,
}

/// One chart panel: its layers stacked bottom-up in order, and its y axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// The y axis description ("runs", "tokens", "USD").
    pub axis: String,
    pub format: Format,
    pub layers: Vec<Layer>,
}

/// A chart: panels stacked vertically over one x axis (labels shown under the last panel).
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// The SVG `<title>` (read by screen readers; the page shows its own caption).
    pub title: String,
    /// One label per bar position ("28 Nov", "w/c 23 Nov").
    pub x_labels: Vec<String>,
    pub panels: Vec<Panel>,
    /// Size in px of the `viewBox` (the page scales it to its width).
    pub width: u32,
    pub height: u32,
}

/// Why a chart could not be drawn (plotters failed; should not happen for valid sizes).
#[derive(Debug, thiserror::Error)]
#[error("drawing the SVG chart failed: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

impl Panel {
    /// The largest stack height (sum of the layers at one x).
    fn max_stack(&self, n: usize) -> f64 {
        (0..n)
            .map(|i| {
                self.layers
                    .iter()
                    .map(|l| clean(l.values.get(i).copied().unwrap_or(0.0)))
                    .sum::<f64>()
            })
            .fold(0.0, f64::max)
    }
}

impl BarChart {
    /// True when no value of any layer is above zero.
    pub fn is_empty(&self) -> bool {
        self.panels.iter().all(|p| {
            p.layers
                .iter()
                .all(|l| l.values.iter().all(|v| clean(*v) == 0.0))
        })
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at or above `v` (at least `floor`).
fn nice_ceiling(v: f64, floor: f64) -> f64 {
    let v = v.max(floor);
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * base >= v * (1.0 - 1e-9) {
            return m * base;
        }
    }
    10.0 * base
}

/// Render `chart` as an inline SVG element whose `<title>` has the id `<id>-title` (the `<svg>`
/// is `role="img"` and `aria-labelledby` it). See the module docs for what is drawn.
///
/// # Errors
/// [`PlotError`] when plotters fails (a zero size, for one).
pub fn stacked_bars(id: &str, chart: &BarChart) -> Result<String, PlotError> {
    let n = chart.x_labels.len();
    let empty = chart.is_empty();
    let mut buf = String::with_capacity(8 * 1024);
    {
        let root =
            SVGBackend::with_string(&mut buf, (chart.width, chart.height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (legend, body) = root.split_vertically(LEGEND_H);

        // legend: a swatch and the name of each distinct layer, left to right
        let mut x = 8i32;
        let mut seen: Vec<&str> = Vec::new();
        for l in chart.panels.iter().flat_map(|p| &p.layers) {
            if seen.contains(&l.name.as_str()) {
                continue;
            }
            seen.push(&l.name);
            let cy = (LEGEND_H / 2) as i32;
            legend
                .draw(&Rectangle::new(
                    [(x, cy - 5), (x + 10, cy + 5)],
                    l.color.plotters().filled(),
                ))
                .map_err(err)?;
            let style = TextStyle::from(("sans-serif", FONT).into_font())
                .color(&TEXT)
                .pos(Pos::new(HPos::Left, VPos::Center));
            legend
                .draw(&Text::new(l.name.clone(), (x + 14, cy), style))
                .map_err(err)?;
            // the page's font is unknown here: ~0.6 em per character is wide enough
            x += 14 + (l.name.chars().count() as f64 * FONT * 0.5).ceil() as i32 + 16;
        }

        let panels = body.split_evenly((chart.panels.len().max(1), 1));
        let last = chart.panels.len().saturating_sub(1);
        for (i, (area, panel)) in panels.iter().zip(&chart.panels).enumerate() {
            let floor = match panel.format {
                Format::Count => 4.0,
                Format::Usd => 0.01,
            };
            let top = nice_ceiling(panel.max_stack(n), floor);
            let x_range = -0.5f64..(n.max(1) as f64 - 0.5);
            let mut cc = ChartBuilder::on(area)
                .margin_top(6)
                .margin_right(10)
                .x_label_area_size(if i == last { 22 } else { 4 })
                .y_label_area_size(62)
                .build_cartesian_2d(x_range, 0f64..top)
                .map_err(err)?;
            let labels = &chart.x_labels;
            let x_fmt = |x: &f64| {
                let r = x.round();
                if (x - r).abs() < 1e-6 && r >= 0.0 {
                    labels.get(r as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            };
            let format = panel.format;
            let y_fmt = move |y: &f64| format.show(*y, top);
            let label_style = TextStyle::from(("sans-serif", FONT - 2.0).into_font()).color(&MUTED);
            cc.configure_mesh()
                .disable_x_mesh()
                .max_light_lines(0)
                .bold_line_style(GRID)
                .axis_style(MUTED)
                .x_labels(if i == last { n.clamp(1, 8) } else { 0 })
                .y_labels(5)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .label_style(label_style.clone())
                .axis_desc_style(label_style)
                .y_desc(panel.axis.as_str())
                .draw()
                .map_err(err)?;
            for bar in 0..n {
                let mut bottom = 0.0;
                for layer in &panel.layers {
                    let v = clean(layer.values.get(bar).copied().unwrap_or(0.0));
                    if v == 0.0 {
                        continue;
                    }
                    let x = bar as f64;
                    cc.draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.36, bottom), (x + 0.36, bottom + v)],
                        layer.color.plotters().filled(),
                    )))
                    .map_err(err)?;
                    bottom += v;
                }
            }
        }
        if empty {
            let (w, h) = body.dim_in_pixel();
            let style = TextStyle::from(("sans-serif", FONT + 2.0).into_font())
                .color(&MUTED)
                .pos(Pos::new(HPos::Center, VPos::Center));
            body.draw(&Text::new(NO_DATA, (w as i32 / 2, h as i32 / 2), style))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    // plotters puts every tag and text on its own line: drop those newlines (smaller pages;
    // the text of a `<text>` loses only its surrounding newline)
    let compact = buf.replace(">\n", ">").replace("\n</", "</");
    Ok(with_title(id, &chart.title, compact))
}

/// Give plotters' `<svg …>` the `role`, `aria-labelledby` and a `<title>`, and let it scale
/// (the viewBox stays; width and height become CSS's business).
fn with_title(id: &str, title: &str, svg: String) -> String {
    let Some(open_end) = svg.find('>') else {
        return svg;
    };
    let head = &svg[..open_end];
    let head = head
        .replacen(&format!(r#"width="{}""#, attr(head, "width")), "", 1)
        .replacen(&format!(r#"height="{}""#, attr(head, "height")), "", 1);
    let mut out = String::with_capacity(svg.len() + title.len() + 96);
    out.push_str(&head.split_whitespace().collect::<Vec<_>>().join(" "));
    let _ = write!(
        out,
        r#" role="img" aria-labelledby="{id}-title"><title id="{id}-title">{}</title>"#,
        crate::format::escape_html(title)
    );
    out.push_str(&svg[open_end + 1..]);
    out
}

/// The value of `name="…"` in `tag` ("" when absent).
fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    let key = format!(r#" {name}=""#);
    tag.find(&key)
        .map(|i| &tag[i + key.len()..])
        .and_then(|rest| rest.find('"').map(|j| &rest[..j]))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_chart(values: [[f64; 5]; 2]) -> BarChart {
        BarChart {
            title: "Runs per day <by status>".into(),
            x_labels: (1..=5).map(|d| format!("{d} Nov")).collect(),
            panels: vec![Panel {
                axis: "runs".into(),
                format: Format::Count,
                layers: vec![
                    Layer {
                        name: "completed".into(),
                        color: PALETTE[2],
                        values: values[0].to_vec(),
                    },
                    Layer {
                        name: "failed".into(),
                        color: PALETTE[5],
                        values: values[1].to_vec(),
                    },
                ],
            }],
            width: 640,
            height: 240,
        }
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn one_rect_per_nonzero_bar_and_layer_with_a_title() {
        let c = runs_chart([[3.0, 0.0, 1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 4.0, 0.0]]);
        let svg = stacked_bars("plot-runs", &c).unwrap();
        assert!(svg.starts_with("<svg "), "{}", &svg[..80]);
        assert!(svg.contains(r#"role="img" aria-labelledby="plot-runs-title""#));
        assert!(
            svg.contains(r#"<title id="plot-runs-title">Runs per day &lt;by status&gt;</title>"#)
        );
        assert!(svg.contains(r#"viewBox="0 0 640 240""#));
        // bars: three days with completed runs, two with failed ones; plus one legend swatch each
        assert_eq!(
            count(&svg, &format!(r#"fill="{}""#, PALETTE[2].hex())),
            3 + 1
        );
        assert_eq!(
            count(&svg, &format!(r#"fill="{}""#, PALETTE[5].hex())),
            2 + 1
        );
        assert!(svg.contains(">completed</text>") && svg.contains(">failed</text>"));
        assert!(svg.contains(">1 Nov</text>"), "x labels drawn");
        assert!(!svg.contains(NO_DATA));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn stacks_are_proportional() {
        // day 1: completed 2 on the bottom, failed 2 above it: two rects of equal height
        let c = runs_chart([[2.0, 0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0]]);
        let svg = stacked_bars("p", &c).unwrap();
        let heights: Vec<i64> = svg
            .split("<rect")
            .skip(1)
            .filter(|l| !l.contains("#FFFFFF"))
            .map(|l| &l[..l.find('>').unwrap()])
            .filter(|l| l.contains(&PALETTE[2].hex()) || l.contains(&PALETTE[5].hex()))
            .map(|l| attr(l, "height").parse().unwrap())
            .collect();
        // two legend swatches (10 px) and two bars of equal height
        assert_eq!(heights.len(), 4, "{heights:?}");
        let bars: Vec<i64> = heights.into_iter().filter(|h| *h != 10).collect();
        assert_eq!(bars.len(), 2);
        assert!((bars[0] - bars[1]).abs() <= 1, "{bars:?}");
    }

    #[test]
    fn deterministic_and_small() {
        let mut c = runs_chart([[0.0; 5]; 2]);
        c.x_labels = (1..=30).map(|d| format!("{d} Nov")).collect();
        for l in &mut c.panels[0].layers {
            l.values = (0..30).map(|i| f64::from(i % 7)).collect();
        }
        let a = stacked_bars("plot-runs", &c).unwrap();
        let b = stacked_bars("plot-runs", &c).unwrap();
        assert_eq!(a, b);
        assert!(a.len() < 16 * 1024, "{} bytes", a.len());
        assert!(!a.contains("<image") && !a.contains("@font-face"));
    }

    #[test]
    fn empty_data_still_renders_a_no_data_chart() {
        let c = runs_chart([[0.0; 5]; 2]);
        let svg = stacked_bars("plot-runs", &c).unwrap();
        assert!(svg.contains(NO_DATA));
        assert!(svg.contains(r#"<title id="plot-runs-title">"#));
        // only the legend swatches carry the layer colours
        assert_eq!(count(&svg, &format!(r#"fill="{}""#, PALETTE[2].hex())), 1);
        // no x labels at all
        let none = BarChart {
            x_labels: vec![],
            panels: vec![Panel {
                axis: "runs".into(),
                format: Format::Count,
                layers: vec![],
            }],
            ..c
        };
        assert!(stacked_bars("x", &none).unwrap().contains(NO_DATA));
    }

    #[test]
    fn two_panels_share_the_x_axis() {
        let mut c = runs_chart([[1.0, 2.0, 0.0, 0.0, 0.0], [0.0; 5]]);
        c.panels.push(Panel {
            axis: "USD".into(),
            format: Format::Usd,
            layers: vec![Layer {
                name: "cost".into(),
                color: PALETTE[0],
                values: vec![0.012, 0.0, 0.004, 0.0, 0.0],
            }],
        });
        let svg = stacked_bars("plot-usage", &c).unwrap();
        assert_eq!(
            count(&svg, &format!(r#"fill="{}""#, PALETTE[0].hex())),
            2 + 1
        );
        assert!(
            svg.contains(">$0.010</text>") || svg.contains(">$0.005</text>"),
            "usd ticks"
        );
    }

    #[test]
    fn formats_read_well() {
        assert_eq!(Format::Count.show(12.0, 20.0), "12");
        assert_eq!(Format::Count.show(3400.0, 5000.0), "3.4k");
        assert_eq!(Format::Count.show(25_000.0, 50_000.0), "25k");
        assert_eq!(Format::Count.show(1_250_000.0, 2e6), "1.2M");
        assert_eq!(Format::Usd.show(0.0125, 0.05), "$0.013");
        assert_eq!(Format::Usd.show(1.5, 2.0), "$1.50");
        assert_eq!(nice_ceiling(3.0, 4.0), 5.0);
        assert_eq!(nice_ceiling(11.0, 4.0), 20.0);
        assert_eq!(nice_ceiling(0.0, 0.01), 0.01);
    }
}
