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

/// The words of `text` that must stay on one line together: a phone number's parts ("(555)
/// 010-4400": neighbouring words that both hold a digit), a number with the short abbreviation
/// before it ("ext. 4410", "Tel. 555"), and words joined by a no-break space.
fn units(text: &str) -> Vec<String> {
    let mut units: Vec<String> = Vec::new();
    let mut last_had_digit = false;
    let mut last_was_abbreviation = false;
    for word in text.split(|c: char| c.is_whitespace() && c != '\u{a0}') {
        if word.is_empty() {
            continue;
        }
        let has_digit = word.chars().any(|c| c.is_ascii_digit());
        match units.last_mut() {
            Some(unit) if (last_had_digit || last_was_abbreviation) && has_digit => {
                unit.push(' ');
                unit.push_str(word);
            }
            _ => units.push(word.to_string()),
        }
        last_had_digit = has_digit;
        last_was_abbreviation = word.ends_with('.') && word.chars().count() <= 4;
    }
    units
}

/// Splits `text` into lines no wider than `max` (as `width` measures), breaking at spaces and
/// keeping `units` whole where they fit; a unit too wide splits at its spaces, and a word too wide
/// for a line is cut, so no line is ever wider than `max` and the label keeps the code's width.
fn wrap(text: &str, max: f32, width: &dyn Fn(&str) -> f32) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    for unit in units(text) {
        if width(&unit) <= max {
            pieces.push(unit);
            continue;
        }
        for word in unit.split(' ') {
            if width(word) <= max {
                pieces.push(word.to_string());
                continue;
            }
            let mut cut = String::new();
            for c in word.chars() {
                cut.push(c);
                if width(&cut) > max && cut.chars().count() > 1 {
                    cut.pop();
                    pieces.push(std::mem::take(&mut cut));
                    cut.push(c);
                }
            }
            pieces.push(cut);
        }
    }
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for piece in pieces {
        if !current.is_empty() && width(&format!("{current} {piece}")) > max {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&piece);
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

    /// `text`'s width in user units, measured on the wide side of the fonts a printer may have
    /// (DejaVu Sans, the widest common sans-serif, has digits of 0.64 em and capitals of 0.68-0.99
    /// em), so the wrapped text fits without being squeezed.
    fn width(self, text: &str) -> f32 {
        text.chars().map(|c| self.em(c)).sum::<f32>() * self.size
    }

    fn em(self, c: char) -> f32 {
        let wide = matches!(c, '\u{1100}'..='\u{115F}' | '\u{2E80}'..='\u{A4CF}' | '\u{AC00}'..='\u{D7A3}' | '\u{F900}'..='\u{FAFF}' | '\u{FF00}'..='\u{FF60}');
        let bold = if self.bold { 0.06 } else { 0.0 };
        if wide {
            1.0
        } else if self.mono {
            0.62
        } else if c == ' ' || c == '\u{a0}' {
            0.33
        } else if matches!(
            c,
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|'
        ) {
            0.33 + bold
        } else if matches!(c, 'm' | 'w' | 'M' | 'W') {
            1.0 + bold
        } else if c.is_uppercase() || c.is_ascii_digit() {
            0.76 + bold
        } else {
            0.62 + bold
        }
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
/// asset name or phone number takes two lines, never runs off the edge or widens the label).
pub fn svg(label: &Label) -> Result<String, String> {
    const MARGIN: f32 = 2.0;
    let (width, dark) = matrix(&label.url)?;
    let side = width + 2 * QUIET_MODULES;
    let room = side as f32 - 2.0 * MARGIN;
    let mut lines: Vec<(String, Style)> = Vec::new();
    for (text, style) in texts(label) {
        let measure = move |t: &str| style.width(t);
        lines.extend(wrap(text, room, &measure).into_iter().map(|l| (l, style)));
    }
    let mut texts = String::new();
    let mut baseline = side as f32;
    for (text, style) in &lines {
        baseline += style.size * 1.25;
        texts.push_str(&format!(
            "<text x=\"{x}\" y=\"{y:.2}\" font-family=\"{family}\" font-size=\"{size}\"{weight} text-anchor=\"middle\">{text}</text>\n",
            x = side as f32 / 2.0,
            y = baseline,
            family = if style.mono { "monospace" } else { "sans-serif" },
            size = style.size,
            weight = if style.bold { " font-weight=\"700\"" } else { "" },
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
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {total_h}" width="{w}mm" height="{h}mm" shape-rendering="crispEdges">
<title>{title}</title>
<rect width="{side}" height="{total_h}" fill="#fff"/>
<path d="{path}" fill="#000"/>
{texts}</svg>
"##,
        w = side * 2,
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
        let room = (qr_px - 2 * SCALE * 2) as f32;
        let measure = move |t: &str| (t.chars().count() * 8 * scale) as f32;
        lines.extend(wrap(text, room, &measure).into_iter().map(|l| (l, scale)));
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
    // Typographic punctuation that word processors put into names and phone numbers has no glyph
    // in the font: drawn as its plain form, not as '?'.
    let c = match c {
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' => '"',
        '\u{2026}' => '.',
        '\u{2002}'..='\u{200A}' | '\u{202F}' => ' ',
        other => other,
    };
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
    fn text_wraps_at_spaces_keeps_phone_numbers_whole_and_cuts_only_overlong_words() {
        let chars = |t: &str| t.chars().count() as f32;
        assert_eq!(
            wrap("Help: Biomedical Engineering, ext. 4410", 20.0, &chars),
            ["Help: Biomedical", "Engineering,", "ext. 4410"]
        );
        // The number's parts stay together, and with the word before them when it has a digit.
        assert_eq!(
            wrap("Questions? Call Ward 4B, (555) 010-4400", 22.0, &chars),
            ["Questions? Call Ward", "4B, (555) 010-4400"]
        );
        // A no-break space is kept as such.
        assert_eq!(
            wrap("Call\u{a0}Ward\u{a0}Nine now", 14.0, &chars),
            ["Call\u{a0}Ward\u{a0}Nine", "now"]
        );
        assert_eq!(wrap("short", 20.0, &chars), ["short"]);
        // Too long for any line: cut, never wider than the line.
        assert_eq!(
            wrap("a-very-long-word b", 5.0, &chars),
            ["a-ver", "y-lon", "g-wor", "d b"]
        );
        // A glued number too long for a line splits at its spaces first.
        assert_eq!(
            wrap("(555) 010-4400 12345", 10.0, &chars),
            ["(555)", "010-4400", "12345"]
        );
        assert!(wrap("", 5.0, &chars).is_empty());
        assert!(wrap("   ", 5.0, &chars).is_empty());
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
        // Wrapped to the code's width: the label is as wide as the code, and no line is wider.
        let view_width: f32 = svg_text
            .split("viewBox=\"0 0 ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            view_width,
            svg(&without)
                .unwrap()
                .split("viewBox=\"0 0 ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<f32>()
                .unwrap()
        );
        let lines: Vec<(&str, &str)> = svg_text
            .split("</text>")
            .filter_map(|piece| piece.rsplit_once("<text "))
            .map(|(_, element)| element.split_once('>').unwrap())
            .collect();
        assert!(lines.len() >= 7, "the long texts wrapped: {lines:?}");
        for (attributes, text) in lines {
            let style = if attributes.contains("monospace") {
                Style::CODE
            } else if attributes.contains("font-weight") {
                Style::TITLE
            } else {
                Style::LINE
            };
            let text = text
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">");
            assert!(style.width(&text) <= view_width - 4.0, "{text}");
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
    fn typographic_dashes_and_quotes_print_as_their_plain_forms() {
        assert_eq!(glyph('\u{2013}'), glyph('-'));
        assert_eq!(glyph('\u{2019}'), glyph('\''));
        assert_eq!(glyph('\u{201C}'), glyph('"'));
        assert_eq!(glyph('¿'), font8x8::legacy::LATIN_LEGACY[0xBF - 0xA0]);
        assert_eq!(glyph('\u{4E2D}'), glyph('?'));
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
