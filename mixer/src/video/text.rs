//! Names on tiles: text drawn into a picture from 8×8 bitmap glyphs (`font8x8`: ASCII, Latin-1
//! and Latin Extended-A, Greek), each glyph pixel a square of `scale` pixels, over a dark box
//! so that it reads on any camera. A character without a glyph is drawn as `?`.

use font8x8::{UnicodeFonts, BASIC_FONTS, GREEK_FONTS, LATIN_FONTS};

use super::frame::{Frame, Yuv};

/// Glyph cells are 8 pixels square before scaling.
pub const GLYPH: usize = 8;
/// The most characters a name shows; longer ones are cut with `…` (drawn as `..`).
pub const MAX_CHARS: usize = 32;

/// The glyph of `c`, rows top first, bit 0 leftmost.
fn glyph(c: char) -> [u8; 8] {
    BASIC_FONTS
        .get(c)
        .or_else(|| LATIN_FONTS.get(c))
        .or_else(|| GREEK_FONTS.get(c))
        .or_else(|| BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

/// The characters of `text` that fit `max` cells, cut with `..` when they do not.
fn fitted(text: &str, max: usize) -> Vec<char> {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).take(MAX_CHARS + 1).collect();
    let max = max.min(MAX_CHARS);
    if chars.len() <= max {
        return chars;
    }
    let mut cut: Vec<char> = chars.into_iter().take(max.saturating_sub(2)).collect();
    cut.extend(['.', '.'].iter().take(max));
    cut
}

/// The width and height `text` takes at `scale`, box margin included, within `max_w`.
pub fn measure(text: &str, scale: usize, max_w: usize) -> (usize, usize) {
    let scale = scale.max(1);
    let cells = max_w.saturating_sub(2 * scale) / (GLYPH * scale);
    let n = fitted(text, cells).len();
    (n * GLYPH * scale + 2 * scale, GLYPH * scale + 2 * scale)
}

/// How text is drawn: the size of a glyph pixel, the letters' brightness (that of `colour`:
/// chroma is shared by 2×2 pixels and stays the box's, so letters are told by brightness),
/// and the box behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub scale: usize,
    pub colour: Yuv,
    pub shade: Yuv,
}

/// Draws `text` with its top left corner at `at`, no wider than `max_w`; clipped to the
/// picture.
pub fn draw(frame: &mut Frame, at: (usize, usize), max_w: usize, text: &str, style: Style) {
    let (x, y) = at;
    let Style { scale, colour, shade } = style;
    let scale = scale.max(1);
    let cells = max_w.saturating_sub(2 * scale) / (GLYPH * scale);
    let chars = fitted(text, cells);
    if chars.is_empty() {
        return;
    }
    let (w, h) = measure(text, scale, max_w);
    frame.fill_rect(x, y, w, h, shade);
    let (ox, oy) = (x + scale, y + scale);
    for (i, c) in chars.iter().enumerate() {
        for (row, bits) in glyph(*c).iter().enumerate() {
            for col in 0..GLYPH {
                if bits & (1 << col) != 0 {
                    let px = ox + (i * GLYPH + col) * scale;
                    let py = oy + row * scale;
                    fill_luma(frame, px, py, scale, colour.y);
                }
            }
        }
    }
}

/// Paints a square of the luma plane only (chroma is shared by 2×2 pixels and stays the box's).
fn fill_luma(frame: &mut Frame, x: usize, y: usize, size: usize, luma: u8) {
    let (x1, y1) = ((x + size).min(frame.width), (y + size).min(frame.height));
    for row in y.min(y1)..y1 {
        frame.y[row * frame.width + x.min(x1)..row * frame.width + x1].fill(luma);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_drawn_bright_on_the_box_and_cut_to_fit() {
        let black = Yuv::from_rgb(0, 0, 0);
        let white = Yuv::from_rgb(255, 255, 255);
        let mut frame = Frame::filled(200, 40, Yuv::from_rgb(0, 0, 200));
        draw(&mut frame, (10, 10), 180, "Alice", Style { scale: 2, colour: white, shade: black });
        // "A" is in the first cell: some of its pixels bright, the margin dark.
        let lit = (12..28)
            .flat_map(|y| (12..28).map(move |x| (x, y)))
            .filter(|&(x, y)| frame.y[y * 200 + x] > 200)
            .count();
        assert!(lit > 20, "{lit} lit pixels in the A");
        assert!(frame.y[10 * 200 + 10] < 40, "the box's margin");
        // Five letters at 16 pixels with a 2-pixel margin each side: nothing past x = 94.
        assert!((0..40).all(|y| frame.y[y * 200 + 100] == Yuv::from_rgb(0, 0, 200).y));
        assert_eq!(measure("Alice", 2, 180), (84, 20));
        // Too long for 40 pixels: two cells, cut.
        assert_eq!(fitted("Bartholomew", 2), vec!['.', '.']);
        assert_eq!(fitted("Bartholomew", 5), vec!['B', 'a', 'r', '.', '.']);
        assert_eq!(fitted("Zoë", 5), vec!['Z', 'o', 'ë']);
    }

    #[test]
    fn text_at_the_edge_is_clipped_not_a_panic() {
        let mut frame = Frame::filled(32, 16, Yuv::from_rgb(0, 0, 0));
        let style =
            |scale| Style { scale, colour: Yuv::from_rgb(255, 255, 255), shade: Yuv::from_rgb(9, 9, 9) };
        draw(&mut frame, (30, 14), 400, "éclat 名前", style(3));
        draw(&mut frame, (0, 0), 0, "x", style(0));
    }
}
