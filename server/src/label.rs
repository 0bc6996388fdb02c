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
}

pub const DEFAULT_LINE: &str = "Scan for manuals, fault codes and help";

const QUIET_MODULES: usize = 4;

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

/// An SVG label, 1 user unit = 1 module; text below the code.
pub fn svg(label: &Label) -> Result<String, String> {
    let (width, dark) = matrix(&label.url)?;
    let side = width + 2 * QUIET_MODULES;
    let text_height = 14;
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
    let total_h = side + text_height;
    Ok(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {total_h}" width="{w}mm" height="{h}mm" shape-rendering="crispEdges">
<title>{title}</title>
<rect width="{side}" height="{total_h}" fill="#fff"/>
<path d="{path}" fill="#000"/>
<text x="{mid}" y="{y1}" font-family="sans-serif" font-size="3.2" font-weight="700" text-anchor="middle">{title}</text>
<text x="{mid}" y="{y2}" font-family="sans-serif" font-size="2.4" text-anchor="middle">{line}</text>
<text x="{mid}" y="{y3}" font-family="monospace" font-size="2.4" text-anchor="middle">{code}</text>
</svg>
"##,
        w = side * 2,
        h = total_h * 2,
        mid = side as f32 / 2.0,
        y1 = side + 3,
        y2 = side + 7,
        y3 = side + 11,
        title = escape_markup(&label.title),
        line = escape_markup(&label.line),
        code = escape_markup(&label.code),
    ))
}

/// A PNG label: 10 pixels per module, text in an 8x8 bitmap font scaled up.
pub fn png(label: &Label) -> Result<Vec<u8>, String> {
    const SCALE: usize = 10;
    let (width, dark) = matrix(&label.url)?;
    let qr_px = (width + 2 * QUIET_MODULES) * SCALE;
    let lines: [(&str, usize); 3] = [(&label.title, 3), (&label.line, 2), (&label.code, 3)];
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
    for (text, scale) in lines {
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
