//! Chore leaderboard chart (used by `chores::stats`): renders a period's standings as a small PNG for Telegram `sendPhoto`.
//!
//! **Owns:** turning `(display name, points)` pairs into a self-contained horizontal bar chart —
//! ordering (best first, ties keep their input order and share a rank), capping at [`MAX_BARS`]
//! (with a "+N more" footnote), cleaning labels (control characters become spaces, characters the
//! font cannot draw such as emoji are dropped, over-long names are truncated with `…`), layout that
//! scales with the requested size, and PNG encoding.
//!
//! **Uses:** `plotters`' bitmap backend drawing into an in-memory RGB buffer (bars, rules and text
//! pixels all go through its `DrawingArea`), `png` to encode that buffer, and the Noto Sans Regular
//! font (Apache-2.0) embedded in the binary through the `ttf-noto-sans` crate, rasterised with
//! `ab_glyph`. No system fonts or fontconfig are touched, so rendering works on debian-slim and
//! font-less CI.
//!
//! Text is rasterised here rather than through plotters' `ab_glyph` feature and `register_font`:
//! plotters 0.3.7's `ab_glyph` renderer ignores glyph side bearings and truncates per-glyph
//! vertical offsets (visibly uneven letters, e.g. "Jürgen"), and enabling that feature switches
//! every plotters user in the build to a global font table that starts empty — criterion's
//! plotters report backend would then fail with `FontUnavailable` under `cargo bench`.
//!
//! Pure and synchronous (no I/O, no global state beyond the lazily parsed font); a 640×360 render
//! takes a few milliseconds in release builds.

use std::fmt::Display;
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, ScaleFont};
use plotters::backend::BitMapBackend;
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, IntoDrawingArea};
use plotters::element::Rectangle;
use plotters::style::{Color, RGBColor};

/// Maximum number of bars drawn; further entries are summarised as "+N more".
pub const MAX_BARS: usize = 12;
/// Smallest accepted image width in pixels.
pub const MIN_WIDTH: u32 = 160;
/// Smallest accepted image height in pixels.
pub const MIN_HEIGHT: u32 = 100;
/// Largest accepted width or height in pixels (well inside Telegram's photo limits).
pub const MAX_SIDE: u32 = 2560;

/// Text shown instead of bars when there is nothing to rank.
const EMPTY_MESSAGE: &str = "No completions yet";
/// Noto Sans Regular (Apache-2.0), embedded via the `ttf-noto-sans` crate.
const FONT_BYTES: &[u8] = ttf_noto_sans::REGULAR;
/// Appended to truncated labels.
const ELLIPSIS: char = '…';

const TEXT: RGBColor = RGBColor(33, 37, 41);
const MUTED: RGBColor = RGBColor(108, 117, 125);
const LEADER_BAR: RGBColor = RGBColor(242, 159, 5);
const BAR: RGBColor = RGBColor(66, 125, 190);
const RULE: RGBColor = RGBColor(222, 226, 230);

/// One bar: a member's display name and their points (or completions) this period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar<'a> {
    /// Display name shown next to the bar (any Unicode; see the module docs for clean-up rules).
    pub label: &'a str,
    /// Points or completions; bar lengths are proportional to this.
    pub value: u32,
}

/// Why a chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The requested size is outside [`MIN_WIDTH`]×[`MIN_HEIGHT`] ..= [`MAX_SIDE`]×[`MAX_SIDE`].
    #[error(
        "chart size {width}x{height} is outside the supported range \
         {MIN_WIDTH}x{MIN_HEIGHT} to {MAX_SIDE}x{MAX_SIDE}"
    )]
    InvalidSize {
        /// Requested width in pixels.
        width: u32,
        /// Requested height in pixels.
        height: u32,
    },
    /// The embedded font could not be parsed (should never happen).
    #[error("the embedded chart font could not be loaded")]
    Font,
    /// plotters reported an error while drawing.
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    /// The rendered pixels could not be encoded as PNG.
    #[error("encoding the chart as PNG failed: {0}")]
    Encode(#[from] png::EncodingError),
}

/// Render a horizontal bar chart, best first, at most [`MAX_BARS`] bars, as PNG bytes
/// (`width`×`height` px, e.g. 640×360).
///
/// `title` is drawn at the top (e.g. "Leaderboard — week of 16 Nov") and truncated with `…` if it
/// does not fit. Bars are sorted by descending value (stable, so ties keep the caller's order and
/// share a rank); the leader's bar is highlighted. Empty input yields a chart that says
/// "No completions yet".
///
/// # Errors
/// [`ChartError::InvalidSize`] for sizes outside the supported range; the other variants only on
/// internal failures (font, drawing or PNG encoding).
pub fn leaderboard_png(
    title: &str,
    bars: &[Bar<'_>],
    width: u32,
    height: u32,
) -> Result<Vec<u8>, ChartError> {
    if !(MIN_WIDTH..=MAX_SIDE).contains(&width) || !(MIN_HEIGHT..=MAX_SIDE).contains(&height) {
        return Err(ChartError::InvalidSize { width, height });
    }
    let font = font()?;
    let (rows, hidden) = prepare_rows(font, bars);

    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        let painter = Painter {
            area: &root,
            font,
            cap_frac: cap_height_fraction(font),
        };
        painter.draw(title, &rows, hidden, f64::from(width), f64::from(height))?;
        root.present().map_err(draw_err)?;
    }
    encode_png(&pixels, width, height)
}

/// The embedded font, parsed once on first use.
fn font() -> Result<&'static FontRef<'static>, ChartError> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok())
        .as_ref()
        .ok_or(ChartError::Font)
}

fn draw_err(e: impl Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// One drawable row of the leaderboard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// Competition rank ("1, 2, 2, 4"): one more than the number of strictly better entries.
    rank: usize,
    /// Cleaned label (not yet truncated to a pixel width).
    label: String,
    value: u32,
}

/// Sort best first (stable), rank, clean labels, and cap at [`MAX_BARS`].
/// Returns the rows to draw and how many entries were left out.
fn prepare_rows(font: &FontRef<'_>, bars: &[Bar<'_>]) -> (Vec<Row>, usize) {
    let mut sorted: Vec<&Bar<'_>> = bars.iter().collect();
    sorted.sort_by_key(|bar| std::cmp::Reverse(bar.value)); // stable: ties keep input order
    let hidden = sorted.len().saturating_sub(MAX_BARS);
    let mut rows: Vec<Row> = Vec::with_capacity(sorted.len().min(MAX_BARS));
    for (i, bar) in sorted.into_iter().take(MAX_BARS).enumerate() {
        let rank = match rows.last() {
            Some(prev) if prev.value == bar.value => prev.rank,
            _ => i + 1,
        };
        rows.push(Row {
            rank,
            label: clean_label(font, bar.label),
            value: bar.value,
        });
    }
    (rows, hidden)
}

/// Make a label drawable: control characters and whitespace runs become one space, characters
/// the font has no glyph for (emoji, variation selectors, ZWJ, most non-Latin scripts beyond
/// Greek/Cyrillic) are dropped, and an empty result becomes "?".
fn clean_label(font: &FontRef<'_>, raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
        } else if !is_invisible(c) && font.glyph_id(c).0 != 0 {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push('?');
    }
    out
}

/// Zero-width format characters (joiners, variation selectors, bidi marks, tags) that the font
/// may map to a glyph but that only make sense inside emoji or complex-script sequences.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Advance width of `text` in pixels at `size` (sum of advances plus kerning), matching how
/// [`Painter::text`] lays glyphs out.
fn text_width(font: &FontRef<'_>, size: f64, text: &str) -> f64 {
    let scaled = font.as_scaled(size as f32);
    let mut width = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        width += scaled.h_advance(id);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        prev = Some(id);
    }
    f64::from(width)
}

/// `text` unchanged if it fits in `max_width` px at `size`, else its longest prefix (trailing
/// spaces trimmed) followed by `…` that fits. Never returns an empty string. Linear in the
/// length of `text`, so hostile input cannot make layout quadratic.
fn fit_text(font: &FontRef<'_>, size: f64, text: &str, max_width: f64) -> String {
    if text_width(font, size, text) <= max_width {
        return text.to_owned();
    }
    let scaled = font.as_scaled(size as f32);
    let budget = max_width - f64::from(scaled.h_advance(scaled.glyph_id(ELLIPSIS)));
    let mut width = 0f32;
    let mut prev = None;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let id = scaled.glyph_id(c);
        width += scaled.h_advance(id) + prev.map_or(0.0, |p| scaled.kern(p, id));
        prev = Some(id);
        if f64::from(width) > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    let mut kept = text[..end].trim_end().to_owned();
    loop {
        let candidate = format!("{kept}{ELLIPSIS}");
        // Kerning against the ellipsis can add a fraction of a pixel; shorten until it fits.
        if kept.is_empty() || text_width(font, size, &candidate) <= max_width {
            return candidate;
        }
        kept.pop();
        kept.truncate(kept.trim_end().len());
    }
}

/// Cap height as a fraction of the `ab_glyph` pixel scale, used to centre text on its capitals.
fn cap_height_fraction(font: &FontRef<'_>) -> f64 {
    const PROBE: f32 = 100.0;
    let scaled = font.as_scaled(PROBE);
    scaled
        .outline_glyph(scaled.scaled_glyph('H'))
        .map(|g| f64::from(-g.px_bounds().min.y / PROBE))
        .unwrap_or(0.52)
}

/// Horizontal anchoring of a text run.
#[derive(Debug, Clone, Copy)]
enum Align {
    Left,
    Center,
    Right,
}

/// Draws onto the root area; all coordinates are pixels from the top-left corner.
struct Painter<'a, 'b> {
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    font: &'a FontRef<'static>,
    cap_frac: f64,
}

impl Painter<'_, '_> {
    fn draw(
        &self,
        title: &str,
        rows: &[Row],
        hidden: usize,
        width: f64,
        height: f64,
    ) -> Result<(), ChartError> {
        let pad = (width.min(height) * 0.05).clamp(8.0, 32.0);
        let title_size = (height * 0.08).clamp(14.0, 44.0).min(width * 0.06);
        let label_size = (height * 0.062).clamp(12.0, 34.0).min(width * 0.05);

        // Title, left-aligned, with a thin rule underneath.
        let title_text = fit_text(self.font, title_size, title.trim(), width - 2.0 * pad);
        let title_cap = title_size * self.cap_frac;
        self.text(
            &title_text,
            pad,
            pad + title_cap / 2.0,
            title_size,
            TEXT,
            Align::Left,
        )?;
        let rule_y = pad + title_cap + title_size * 0.45;
        self.rect(pad, rule_y, width - pad, rule_y + 1.0, RULE)?;
        let body_top = rule_y + pad * 0.6;

        if rows.is_empty() {
            let cy = (body_top + height - pad) / 2.0;
            let size = label_size * 1.15;
            let msg = fit_text(self.font, size, EMPTY_MESSAGE, width - 2.0 * pad);
            return self.text(&msg, width / 2.0, cy, size, MUTED, Align::Center);
        }

        let note_size = label_size * 0.8;
        let footer = if hidden > 0 { note_size * 1.4 } else { 0.0 };
        let body_bottom = height - pad - footer;
        // Rows share the body evenly but never grow taller than ~2 lines; short lists stay at the top.
        let row_h = ((body_bottom - body_top) / rows.len() as f64).min(label_size * 2.0);
        let label_size = label_size.min(row_h * 0.68);
        let bar_h = (row_h * 0.64).max(2.0);
        let gap = label_size * 0.45;

        // Columns: rank | name | bar … value.
        let rank_w = rows
            .iter()
            .map(|r| text_width(self.font, label_size, &format!("{}.", r.rank)))
            .fold(0.0, f64::max);
        let name_x = pad + rank_w + gap;
        let name_max = width * 0.34;
        let names: Vec<String> = rows
            .iter()
            .map(|r| fit_text(self.font, label_size, &r.label, name_max))
            .collect();
        let name_w = names
            .iter()
            .map(|n| text_width(self.font, label_size, n))
            .fold(0.0, f64::max);
        let bar_x = name_x + name_w + gap * 1.5;
        let max_value = rows.iter().map(|r| r.value).max().unwrap_or(0).max(1);
        let value_w = text_width(self.font, label_size, &max_value.to_string());
        let bar_max_w = (width - pad - value_w - gap - bar_x).max(1.0);

        for (i, (row, name)) in rows.iter().zip(&names).enumerate() {
            let cy = body_top + row_h * (i as f64 + 0.5);
            self.text(
                &format!("{}.", row.rank),
                pad + rank_w,
                cy,
                label_size,
                MUTED,
                Align::Right,
            )?;
            self.text(name, name_x, cy, label_size, TEXT, Align::Left)?;
            let bar_w = if row.value == 0 {
                0.0
            } else {
                (bar_max_w * f64::from(row.value) / f64::from(max_value)).max(3.0)
            };
            if bar_w > 0.0 {
                let color = if row.rank == 1 { LEADER_BAR } else { BAR };
                self.rect(
                    bar_x,
                    cy - bar_h / 2.0,
                    bar_x + bar_w,
                    cy + bar_h / 2.0,
                    color,
                )?;
            }
            let value_x = bar_x + bar_w + gap * 0.6;
            self.text(
                &row.value.to_string(),
                value_x,
                cy,
                label_size,
                TEXT,
                Align::Left,
            )?;
        }

        if hidden > 0 {
            let cy = height - pad - note_size * self.cap_frac / 2.0;
            self.text(
                &format!("+{hidden} more"),
                name_x,
                cy,
                note_size,
                MUTED,
                Align::Left,
            )?;
        }
        Ok(())
    }

    /// Draw `text` so that its capital letters are vertically centred on `cy`; `x` is the left
    /// edge, centre or right edge according to `align`.
    fn text(
        &self,
        text: &str,
        x: f64,
        cy: f64,
        size: f64,
        color: RGBColor,
        align: Align,
    ) -> Result<(), ChartError> {
        let scaled = self.font.as_scaled(size as f32);
        let width = text_width(self.font, size, text);
        let left = match align {
            Align::Left => x,
            Align::Center => x - width / 2.0,
            Align::Right => x - width,
        };
        // Whole-pixel baseline and start keep stems crisp and every glyph on the same row.
        let baseline = (cy + size * self.cap_frac / 2.0).round() as f32;
        let mut pen = left.round() as f32;
        let mut prev = None;
        let mut coverage: Vec<(i32, i32, f32)> = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scaled.scale(), point(pen, baseline));
            pen += scaled.h_advance(id);
            if let Some(outline) = scaled.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                let (ox, oy) = (bounds.min.x as i32, bounds.min.y as i32);
                outline.draw(|gx, gy, c| coverage.push((ox + gx as i32, oy + gy as i32, c)));
            }
        }
        for (px, py, c) in coverage {
            if c > 0.0 {
                self.area
                    .draw_pixel((px, py), &color.mix(f64::from(c.min(1.0))))
                    .map_err(draw_err)?;
            }
        }
        Ok(())
    }

    fn rect(&self, x0: f64, y0: f64, x1: f64, y1: f64, color: RGBColor) -> Result<(), ChartError> {
        let corners = [
            (x0.round() as i32, y0.round() as i32),
            (x1.round() as i32 - 1, y1.round() as i32 - 1),
        ];
        self.area
            .draw(&Rectangle::new(corners, color.filled()))
            .map_err(draw_err)
    }
}

/// Encode a tightly packed RGB8 buffer as PNG.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::with_capacity(rgb.len() / 16);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

    fn bar(label: &str, value: u32) -> Bar<'_> {
        Bar { label, value }
    }

    /// Decode a PNG into (width, height, RGB bytes).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("valid PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("valid PNG frame");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn count_color(rgb: &[u8], color: RGBColor) -> usize {
        rgb.chunks_exact(3)
            .filter(|p| p == &[color.0, color.1, color.2])
            .count()
    }

    fn sample() -> Vec<Bar<'static>> {
        vec![
            bar("Ana", 5),
            bar("Zoë", 42),
            bar("Jürgen", 17),
            bar("Bo", 0),
        ]
    }

    #[test]
    fn output_starts_with_png_signature() {
        let png = leaderboard_png("Leaderboard — week of 16 Nov", &sample(), 640, 360).unwrap();
        assert_eq!(png[..8], PNG_SIGNATURE);
    }

    #[test]
    fn dimensions_round_trip() {
        for (w, h) in [(640, 360), (MIN_WIDTH, MIN_HEIGHT), (1280, 720), (400, 900)] {
            let png = leaderboard_png("Leaderboard", &sample(), w, h).unwrap();
            let (dw, dh, _) = decode(&png);
            assert_eq!((dw, dh), (w, h));
        }
    }

    #[test]
    fn empty_input_renders_message_without_bars() {
        let png = leaderboard_png("Leaderboard — week of 16 Nov", &[], 640, 360).unwrap();
        let (w, h, rgb) = decode(&png);
        assert_eq!((w, h), (640, 360));
        assert_eq!(count_color(&rgb, BAR) + count_color(&rgb, LEADER_BAR), 0);
        // The message is drawn: plenty of non-white pixels below the title band.
        let below_title = &rgb[(100 * 640 * 3)..];
        assert!(
            below_title
                .chunks_exact(3)
                .filter(|p| p != &[255, 255, 255])
                .count()
                > 200
        );
    }

    #[test]
    fn bars_are_drawn_with_leader_highlighted() {
        let png = leaderboard_png("Leaderboard", &sample(), 640, 360).unwrap();
        let (_, _, rgb) = decode(&png);
        assert!(count_color(&rgb, LEADER_BAR) > 500, "leader bar missing");
        assert!(count_color(&rgb, BAR) > 500, "other bars missing");
    }

    #[test]
    fn twenty_bars_are_cut_to_twelve_best_first() {
        let labels: Vec<String> = (0..20).map(|i| format!("Member {i}")).collect();
        let bars: Vec<Bar<'_>> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| bar(l, i as u32 * 3))
            .collect();
        let (rows, hidden) = prepare_rows(font().unwrap(), &bars);
        assert_eq!(rows.len(), MAX_BARS);
        assert_eq!(hidden, 8);
        assert_eq!(rows[0].label, "Member 19");
        assert_eq!(rows[11].label, "Member 8");
        assert!(rows.windows(2).all(|w| w[0].value >= w[1].value));
        let png = leaderboard_png("Leaderboard", &bars, 640, 360).unwrap();
        assert_eq!(png[..8], PNG_SIGNATURE);
    }

    #[test]
    fn ties_keep_input_order_and_share_rank() {
        let bars = [bar("A", 3), bar("B", 7), bar("C", 7), bar("D", 1)];
        let (rows, hidden) = prepare_rows(font().unwrap(), &bars);
        let got: Vec<(usize, &str)> = rows.iter().map(|r| (r.rank, r.label.as_str())).collect();
        assert_eq!(got, [(1, "B"), (1, "C"), (3, "A"), (4, "D")]);
        assert_eq!(hidden, 0);
    }

    #[test]
    fn non_ascii_and_emoji_labels_do_not_panic() {
        let bars = [
            bar("Zoë 🧹✨", 9),
            bar("👨‍👩‍👧", 4),
            bar("Ågot\tÇelik\nß", 2),
            bar("王芳", 1),
            bar("Zoe\u{308}", 1),
        ];
        let png = leaderboard_png("Ünïcödé — 🏆", &bars, 640, 360).unwrap();
        assert_eq!(png[..8], PNG_SIGNATURE);
        let (rows, _) = prepare_rows(font().unwrap(), &bars);
        assert_eq!(rows[0].label, "Zoë");
        assert_eq!(rows[1].label, "?");
        assert_eq!(rows[2].label, "Ågot Çelik ß");
        // Scripts the embedded font lacks cannot be drawn; the row stays, labelled "?".
        assert_eq!(rows[3].label, "?");
        // Decomposed accents keep their combining mark (drawn over the base letter).
        assert_eq!(rows[4].label, "Zoe\u{308}");
    }

    #[test]
    fn font_covers_latin_names_and_punctuation() {
        let font = font().unwrap();
        for c in "éèêëüöäåøæœçñßłńśźżčřšžőűÿÉÜÖÅØÇŁŠŽ…—·".chars()
        {
            assert_ne!(font.glyph_id(c).0, 0, "missing glyph for {c:?}");
        }
    }

    #[test]
    fn long_label_is_truncated_with_ellipsis() {
        let font = font().unwrap();
        let long = "Maximiliano Alessandro de la Cruz-Fernández the Third";
        let fitted = fit_text(font, 16.0, long, 120.0);
        assert!(fitted.ends_with(ELLIPSIS), "{fitted:?}");
        assert!(fitted.chars().count() < long.chars().count());
        assert!(long.starts_with(fitted.trim_end_matches(ELLIPSIS)));
        assert!(text_width(font, 16.0, &fitted) <= 120.0);
        assert_eq!(fit_text(font, 16.0, "Bo", 120.0), "Bo");
        assert_eq!(fit_text(font, 16.0, long, 1.0), "…");
        let huge = "x".repeat(100_000);
        let fitted = fit_text(font, 16.0, &huge, 300.0);
        assert!(fitted.ends_with(ELLIPSIS) && text_width(font, 16.0, &fitted) <= 300.0);
        // And through the public entry point.
        let png = leaderboard_png("Leaderboard", &[bar(long, 3)], 320, 180).unwrap();
        assert_eq!(png[..8], PNG_SIGNATURE);
    }

    #[test]
    fn zero_values_render() {
        let png = leaderboard_png("Leaderboard", &[bar("Ana", 0), bar("Bo", 0)], 640, 360);
        assert!(png.is_ok());
        let big = leaderboard_png(
            "Leaderboard",
            &[bar("Ana", u32::MAX), bar("Bo", 1)],
            640,
            360,
        );
        assert!(big.is_ok());
    }

    #[test]
    fn rejects_unsupported_sizes() {
        for (w, h) in [
            (0, 360),
            (640, 0),
            (MIN_WIDTH - 1, 360),
            (640, MAX_SIDE + 1),
        ] {
            let err = leaderboard_png("x", &sample(), w, h).unwrap_err();
            assert!(matches!(err, ChartError::InvalidSize { .. }), "{err}");
        }
    }
}
