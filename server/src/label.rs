//! Printable labels: the QR code (error correction level H, so a label still scans with about a third of
//! it scratched or dirty; a 4-module quiet zone), the asset's name, a line saying what scanning gives,
//! and the code in plain characters for typing in when the camera fails. As SVG (for print shops) or
//! PNG (for label printers), drawn from the same layout.

use qrcode::{Color, EcLevel, QrCode};

use crate::http::escape_markup;

/// What a label says.
#[derive(Debug, Clone)]
pub struct Label {
    pub url: String,
    pub title: String,
    pub line: String,
    pub code: String,
    /// Whom to call, printed under the code (empty: no such line). The chat and the patient pages
    /// tell people to call the number on the label, so it must be there.
    pub contact: String,
}

pub const DEFAULT_LINE: &str = "Scan for manuals, fault codes and help";

const QUIET_MODULES: usize = 4;

/// An asset label's contact line: its site's help contact from `assets.toml`, if it has one.
pub fn contact_line(site_contact: Option<&str>) -> String {
    match site_contact.map(str::trim) {
        Some(contact) if !contact.is_empty() => format!("Help: {contact}"),
        _ => String::new(),
    }
}

/// The QR matrix: `width * width` booleans, true for dark, row-major.
fn matrix(url: &str) -> Result<(usize, Vec<bool>), String> {
    let code = QrCode::with_error_correction_level(url.as_bytes(), EcLevel::H)
        .map_err(|e| format!("cannot encode {url:?} as a QR code: {e}"))?;
    let width = code.width();
    let dark = code
        .to_colors()
        .into_iter()
        .map(|c| c == Color::Dark)
        .collect();
    Ok((width, dark))
}

/// Splits `text` at spaces into lines of at most `max_chars` characters; a word longer than that
/// keeps a line of its own (the label then widens to it rather than cut it).
fn wrap(text: &str, max_chars: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let fits = current.is_empty()
            || current.chars().count() + 1 + word.chars().count() <= max_chars.max(1);
        if !fits {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// A kind of text under the code.
#[derive(Clone, Copy)]
struct Style {
    size: f32,
    bold: bool,
    mono: bool,
}

impl Style {
    const TITLE: Style = Style {
        size: 3.2,
        bold: true,
        mono: false,
    };
    const LINE: Style = Style {
        size: 2.4,
        bold: false,
        mono: false,
    };
    const CODE: Style = Style {
        size: 2.4,
        bold: false,
        mono: true,
    };

    /// A character's width in user units, a little wider than the fonts it may get: sans-serif
    /// glyphs average about 0.55 em (0.6 bold), monospace ones are 0.6 em.
    fn char_width(self) -> f32 {
        self.size * if self.mono || self.bold { 0.62 } else { 0.57 }
    }
}

/// The label's texts, top to bottom, with their styles.
fn texts(label: &Label) -> Vec<(&str, Style)> {
    let mut texts = vec![
        (label.title.as_str(), Style::TITLE),
        (label.line.as_str(), Style::LINE),
        (label.code.as_str(), Style::CODE),
    ];
    if !label.contact.is_empty() {
        texts.push((label.contact.as_str(), Style::LINE));
    }
    texts
}

/// An SVG label, 1 user unit = 1 module; text below the code, wrapped to the code's width (a long
/// asset name or phone number takes two lines, never runs off the edge). Each line is also fitted
/// to its measured width (`textLength`), so no printer font can make it overflow.
pub fn svg(label: &Label) -> Result<String, String> {
    const MARGIN: f32 = 2.0;
    let (width, dark) = matrix(&label.url)?;
    let side = width + 2 * QUIET_MODULES;
    let mut lines: Vec<(String, Style)> = Vec::new();
    for (text, style) in texts(label) {
        let max_chars = ((side as f32 - 2.0 * MARGIN) / style.char_width()) as usize;
        lines.extend(wrap(text, max_chars).into_iter().map(|l| (l, style)));
    }
    let line_width =
        |(text, style): &(String, Style)| text.chars().count() as f32 * style.char_width();
    let widest = lines.iter().map(line_width).fold(0.0, f32::max);
    let total_w = (side as f32).max((widest + 2.0 * MARGIN).ceil());
    let offset = (total_w - side as f32) / 2.0;
    let mut texts = String::new();
    let mut baseline = side as f32;
    for line in &lines {
        let (text, style) = line;
        baseline += style.size * 1.25;
        texts.push_str(&format!(
            "<text x=\"{x}\" y=\"{y:.2}\" font-family=\"{family}\" font-size=\"{size}\"{weight} text-anchor=\"middle\" textLength=\"{length:.1}\" lengthAdjust=\"spacingAndGlyphs\">{text}</text>\n",
            x = total_w / 2.0,
            y = baseline,
            family = if style.mono { "monospace" } else { "sans-serif" },
            size = style.size,
            weight = if style.bold { " font-weight=\"700\"" } else { "" },
            length = line_width(line),
            text = escape_markup(text),
        ));
    }
    let total_h = (baseline + 2.0).ceil();
    let mut path = String::new();
    for y in 0..width {
        for x in 0..width {
            if dark[y * width + x] {
                path.push_str(&format!(
                    "M{} {}h1v1h-1z",
                    x + QUIET_MODULES,
                    y + QUIET_MODULES
                ));
            }
        }
    }
    Ok(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total_w} {total_h}" width="{w}mm" height="{h}mm" shape-rendering="crispEdges">
<title>{title}</title>
<rect width="{total_w}" height="{total_h}" fill="#fff"/>
<path transform="translate({offset} 0)" d="{path}" fill="#000"/>
{texts}</svg>
"##,
        w = total_w * 2.0,
        h = total_h * 2.0,
        title = escape_markup(&label.title),
    ))
}

/// A PNG label: 10 pixels per module, text in an 8x8 bitmap font scaled up.
pub fn png(label: &Label) -> Result<Vec<u8>, String> {
    const SCALE: usize = 10;
    let (width, dark) = matrix(&label.url)?;
    let qr_px = (width + 2 * QUIET_MODULES) * SCALE;
    // The bitmap font's glyphs are 8 pixels at `scale`; lines wrap to the code's width.
    let mut lines: Vec<(String, usize)> = Vec::new();
    for (text, style) in texts(label) {
        let scale = if style.bold || style.mono { 3 } else { 2 };
        let max_chars = (qr_px - 2 * SCALE * 2) / (8 * scale);
        lines.extend(wrap(text, max_chars).into_iter().map(|l| (l, scale)));
    }
    let text_w = lines
        .iter()
        .map(|(t, s)| t.chars().count() * 8 * s)
        .max()
        .unwrap_or(0)
        + 2 * SCALE * 2;
    let img_w = qr_px.max(text_w);
    let text_h: usize = lines.iter().map(|(_, s)| 8 * s + 12).sum::<usize>() + SCALE * 2;
    let img_h = qr_px + text_h;
    let mut pixels = vec![255u8; img_w * img_h];
    let x0 = (img_w - qr_px) / 2;
    for y in 0..width {
        for x in 0..width {
            if dark[y * width + x] {
                for dy in 0..SCALE {
                    let row = (QUIET_MODULES + y) * SCALE + dy;
                    let start = row * img_w + x0 + (QUIET_MODULES + x) * SCALE;
                    pixels[start..start + SCALE].fill(0);
                }
            }
        }
    }
    let mut y = qr_px;
    for (text, scale) in lines.iter().map(|(t, s)| (t.as_str(), *s)) {
        let text_px = text.chars().count() * 8 * scale;
        let x = img_w.saturating_sub(text_px) / 2;
        draw_text(&mut pixels, img_w, x, y, text, scale);
        y += 8 * scale + 12;
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, img_w as u32, img_h as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn glyph(c: char) -> [u8; 8] {
    let code = c as usize;
    match code {
        0..=127 => font8x8::legacy::BASIC_LEGACY[code],
        0xA0..=0xFF => font8x8::legacy::LATIN_LEGACY[code - 0xA0],
        _ => font8x8::legacy::BASIC_LEGACY['?' as usize],
    }
}

fn draw_text(pixels: &mut [u8], img_w: usize, x: usize, y: usize, text: &str, scale: usize) {
    let img_h = pixels.len() / img_w;
    for (i, c) in text.chars().enumerate() {
        let g = glyph(c);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..8 {
                // font8x8 stores the leftmost pixel in the lowest bit.
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (i * 8 + col) * scale + dx;
                            let py = y + row * scale + dy;
                            if px < img_w && py < img_h {
                                pixels[py * img_w + px] = 0;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> Label {
        Label {
            url: "http://127.0.0.1:8080/c/tJ6bpUpB".into(),
            title: "VP-300 infusion pump, ICU bed 7 <&>".into(),
            line: DEFAULT_LINE.into(),
            code: "tJ6bpUpB".into(),
            contact: String::new(),
        }
    }

    #[test]
    fn svg_labels_escape_their_text_and_keep_a_quiet_zone() {
        let svg = svg(&label()).unwrap();
        assert!(svg.contains("ICU bed 7 &lt;&amp;&gt;"));
        assert!(!svg.contains("<&>"));
        // No dark module inside the 4-module margin.
        assert!(!svg.contains("M0 ") && !svg.contains("M3 "));
    }

    #[test]
    fn text_wraps_at_spaces_and_keeps_every_word() {
        assert_eq!(
            wrap("Help: Biomedical Engineering, ext. 4410", 20),
            ["Help: Biomedical", "Engineering, ext.", "4410"]
        );
        assert_eq!(wrap("short", 20), ["short"]);
        assert_eq!(wrap("a-very-long-word b", 5), ["a-very-long-word", "b"]);
        assert!(wrap("", 5).is_empty());
    }

    #[test]
    fn a_label_with_a_contact_prints_it_below_the_code_in_both_formats() {
        let without = label();
        let with = Label {
            contact: "Help: Biomedical Engineering, ext. 4410 & <more>".into(),
            ..label()
        };
        let svg_text = svg(&with).unwrap();
        assert!(
            svg_text.contains(">Engineering, ext. 4410 &amp;</text>")
                && svg_text.contains(">&lt;more&gt;</text>"),
            "{svg_text}"
        );
        // Wrapped to the code's width: no line is wider than the label.
        let view_width: f32 = svg_text
            .split("viewBox=\"0 0 ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        let lengths: Vec<f32> = svg_text
            .split("textLength=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            lengths.len() >= 5,
            "the contact wrapped onto a line of its own"
        );
        for length in lengths {
            assert!(length <= view_width - 2.0, "{length} > {view_width}");
        }
        assert!(!svg(&without).unwrap().contains("Help:"));
        let height = |bytes: Vec<u8>| {
            let reader = png::Decoder::new(std::io::Cursor::new(bytes))
                .read_info()
                .unwrap();
            reader.info().height
        };
        assert!(height(png(&with).unwrap()) > height(png(&without).unwrap()));
    }

    #[test]
    fn png_labels_are_valid_images() {
        let bytes = png(&label()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert!(
            info.width >= 290 && info.height >= 290,
            "{}x{}",
            info.width,
            info.height
        );
    }
}
