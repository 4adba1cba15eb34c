//! A room's picture: its sources laid out in tiles on one canvas, each scaled into its tile by
//! a convolution filter (Catmull-Rom, through `fast_image_resize`), its aspect ratio kept by
//! letterboxing or by cropping.
//!
//! Layouts: one speaker full screen; a grid of 2×2, 3×3 or 4×4 chosen by how many sources
//! there are; the speaker large above a filmstrip of four. The caller orders the sources (the
//! active speaker first); sources past a layout's tiles are not shown.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::frame::{Frame, Yuv};
use super::text;

/// How the canvas is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The first source alone.
    Speaker,
    /// Every source (up to 16) in a square grid sized for their number.
    Grid,
    /// The first source on the top three quarters, the next four in a row below.
    SpeakerStrip,
}

/// How a source whose shape differs from its tile's fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Whole, with bars of the background beside or above it.
    Letterbox,
    /// Filling the tile, its overflow cut off evenly on both sides.
    Crop,
}

/// A rectangle of the canvas, in pixels; corners on even coordinates (whole chroma samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// One tile's content: a picture, and a name (empty for none).
#[derive(Debug, Clone, Copy)]
pub struct Tile<'a> {
    pub picture: Option<&'a Frame>,
    pub name: &'a str,
}

/// The most sources a grid shows.
pub const MAX_GRID: usize = 16;

/// The tiles of `layout` for `count` sources on a `width` × `height` canvas, in source order.
pub fn tiles(layout: Layout, count: usize, width: usize, height: usize) -> Vec<Rect> {
    let even = |v: usize| v & !1;
    if count == 0 {
        return Vec::new();
    }
    match layout {
        Layout::Speaker => vec![Rect { x: 0, y: 0, w: even(width), h: even(height) }],
        Layout::Grid => {
            let n = count.min(MAX_GRID);
            let side = match n {
                1 => 1,
                2..=4 => 2,
                5..=9 => 3,
                _ => 4,
            };
            let (w, h) = (even(width / side), even(height / side));
            (0..n).map(|i| Rect { x: (i % side) * w, y: (i / side) * h, w, h }).collect()
        }
        Layout::SpeakerStrip => {
            let main_h = even(height * 3 / 4);
            let mut out = vec![Rect { x: 0, y: 0, w: even(width), h: main_h }];
            let (w, h) = (even(width / 4), even(height - main_h));
            out.extend((0..(count - 1).min(4)).map(|i| Rect { x: i * w, y: main_h, w, h }));
            out
        }
    }
}

/// The part of `tile` a `source_w` × `source_h` picture covers when letterboxed: centred,
/// its aspect ratio kept.
fn letterboxed(tile: Rect, source_w: usize, source_h: usize) -> Rect {
    if source_w == 0 || source_h == 0 {
        return tile;
    }
    // Compare source_w / source_h with tile.w / tile.h without floating point.
    let (w, h) = if source_w * tile.h > tile.w * source_h {
        (tile.w, tile.w * source_h / source_w)
    } else {
        (tile.h * source_w / source_h, tile.h)
    };
    let (w, h) = ((w & !1).max(2).min(tile.w), (h & !1).max(2).min(tile.h));
    Rect { x: tile.x + (((tile.w - w) / 2) & !1), y: tile.y + (((tile.h - h) / 2) & !1), w, h }
}

#[derive(Debug, thiserror::Error)]
#[error("scaling a source: {0}")]
pub struct ComposeError(String);

/// Composes a room's canvas; its buffers are reused picture after picture.
pub struct Compositor {
    canvas: Frame,
    background: Yuv,
    fit: Fit,
    resizer: Resizer,
    /// One scaled plane before it is copied into the canvas.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Compositor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compositor({}×{})", self.canvas.width, self.canvas.height)
    }
}

impl Compositor {
    pub fn new(width: usize, height: usize, background: Yuv, fit: Fit) -> Compositor {
        Compositor {
            canvas: Frame::filled(width, height, background),
            background,
            fit,
            resizer: Resizer::new(),
            scratch: Vec::new(),
        }
    }

    /// The canvas with `sources` laid out by `layout`; a source of `None` (no picture yet, or
    /// its camera off) leaves its tile to the background.
    pub fn compose(&mut self, layout: Layout, sources: &[Option<&Frame>]) -> Result<&Frame, ComposeError> {
        let tiles: Vec<Tile<'_>> = sources.iter().map(|&picture| Tile { picture, name: "" }).collect();
        self.compose_named(layout, &tiles)
    }

    /// [`Compositor::compose`] with names: each tile's name goes in its bottom left corner
    /// over its picture, or large in its middle when it has none.
    pub fn compose_named(&mut self, layout: Layout, sources: &[Tile<'_>]) -> Result<&Frame, ComposeError> {
        let (width, height) = (self.canvas.width, self.canvas.height);
        self.canvas.fill_rect(0, 0, width, height, self.background);
        for (tile, source) in tiles(layout, sources.len(), width, height).into_iter().zip(sources) {
            let picture = source.picture.filter(|f| f.width >= 2 && f.height >= 2);
            if let Some(frame) = picture {
                self.place(frame, tile)?;
            }
            if !source.name.is_empty() {
                self.label(tile, source.name, picture.is_some());
            }
        }
        Ok(&self.canvas)
    }

    /// A tile's name: small in its corner over a picture, large in its middle without one.
    fn label(&mut self, tile: Rect, name: &str, over_picture: bool) {
        let (white, shade) = (Yuv::from_rgb(240, 240, 240), Yuv::from_rgb(24, 24, 24));
        let margin = (tile.h / 40).max(2);
        let max_w = tile.w.saturating_sub(2 * margin);
        if over_picture {
            let scale = (tile.h / 120).max(1);
            let (_, h) = text::measure(name, scale, max_w);
            let y = (tile.y + tile.h).saturating_sub(h + margin);
            let style = text::Style { scale, colour: white, shade };
            text::draw(&mut self.canvas, (tile.x + margin, y), max_w, name, style);
        } else {
            let scale = (tile.h / 60).max(1);
            let (w, h) = text::measure(name, scale, max_w);
            let (x, y) = (tile.x + tile.w.saturating_sub(w) / 2, tile.y + tile.h.saturating_sub(h) / 2);
            let style = text::Style { scale, colour: white, shade: self.background };
            text::draw(&mut self.canvas, (x, y), max_w, name, style);
        }
    }

    /// The last picture composed.
    pub fn canvas(&self) -> &Frame {
        &self.canvas
    }

    fn place(&mut self, frame: &Frame, tile: Rect) -> Result<(), ComposeError> {
        let dest = match self.fit {
            Fit::Letterbox => letterboxed(tile, frame.width, frame.height),
            Fit::Crop => tile,
        };
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
        let options = match self.fit {
            Fit::Crop => options.fit_into_destination(None),
            Fit::Letterbox => options,
        };
        let planes = [
            (&frame.y, frame.width, frame.height, 0, 1),
            (&frame.u, frame.width / 2, frame.height / 2, 1, 2),
            (&frame.v, frame.width / 2, frame.height / 2, 2, 2),
        ];
        for (source, sw, sh, plane, scale) in planes {
            let (dw, dh) = (dest.w / scale, dest.h / scale);
            if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
                continue;
            }
            let error = |e: &dyn std::fmt::Display| ComposeError(e.to_string());
            let src = ImageRef::new(sw as u32, sh as u32, source, PixelType::U8).map_err(|e| error(&e))?;
            self.scratch.resize(dw * dh, 0);
            let mut dst = Image::from_slice_u8(dw as u32, dh as u32, &mut self.scratch, PixelType::U8)
                .map_err(|e| error(&e))?;
            self.resizer.resize(&src, &mut dst, &options).map_err(|e| error(&e))?;
            let canvas_w = self.canvas.width / scale;
            let target = match plane {
                0 => &mut self.canvas.y,
                1 => &mut self.canvas.u,
                _ => &mut self.canvas.v,
            };
            let (x, y) = (dest.x / scale, dest.y / scale);
            for row in 0..dh {
                let at = (y + row) * canvas_w + x;
                target[at..at + dw].copy_from_slice(&self.scratch[row * dw..(row + 1) * dw]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colour(i: usize) -> Yuv {
        [
            Yuv::from_rgb(220, 40, 40),
            Yuv::from_rgb(40, 200, 40),
            Yuv::from_rgb(40, 40, 220),
            Yuv::from_rgb(230, 230, 40),
            Yuv::from_rgb(200, 40, 200),
        ][i % 5]
    }

    /// The mean colour of the middle half of a tile.
    fn centre(frame: &Frame, r: Rect) -> Yuv {
        frame.mean(r.x + r.w / 4, r.y + r.h / 4, r.w / 2, r.h / 2)
    }

    #[test]
    fn grids_grow_with_the_sources_and_tiles_stay_on_the_canvas_without_overlap() {
        for (count, side, shown) in
            [(1, 1, 1), (2, 2, 2), (4, 2, 4), (5, 3, 5), (9, 3, 9), (10, 4, 10), (40, 4, 16)]
        {
            let t = tiles(Layout::Grid, count, 1280, 720);
            assert_eq!(t.len(), shown, "{count}");
            assert_eq!((t[0].w, t[0].h), ((1280 / side) & !1, (720 / side) & !1), "{count}");
            for (i, a) in t.iter().enumerate() {
                assert!(a.x + a.w <= 1280 && a.y + a.h <= 720 && a.x % 2 == 0 && a.y % 2 == 0);
                for b in &t[i + 1..] {
                    let apart = a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
                    assert!(apart, "{a:?} {b:?}");
                }
            }
        }
        assert_eq!(tiles(Layout::Speaker, 7, 1280, 720), [Rect { x: 0, y: 0, w: 1280, h: 720 }]);
        let strip = tiles(Layout::SpeakerStrip, 9, 1280, 720);
        assert_eq!(strip.len(), 5);
        assert_eq!(strip[0], Rect { x: 0, y: 0, w: 1280, h: 540 });
        assert_eq!(strip[4], Rect { x: 960, y: 540, w: 320, h: 180 });
        assert!(tiles(Layout::Grid, 0, 1280, 720).is_empty());
    }

    #[test]
    fn each_source_shows_its_colour_in_its_tile_and_a_missing_one_the_background() {
        let background = Yuv::from_rgb(16, 16, 16);
        let mut c = Compositor::new(640, 360, background, Fit::Crop);
        let sources: Vec<Frame> = (0..3).map(|i| Frame::filled(320, 240, colour(i))).collect();
        let mut refs: Vec<Option<&Frame>> = sources.iter().map(Some).collect();
        refs.push(None);
        let canvas = c.compose(Layout::Grid, &refs).unwrap();
        let t = tiles(Layout::Grid, 4, 640, 360);
        for (i, tile) in t.iter().take(3).enumerate() {
            assert!(centre(canvas, *tile).distance(colour(i)) <= 2, "tile {i}: {:?}", centre(canvas, *tile));
        }
        assert!(centre(canvas, t[3]).distance(background) <= 1);
        // Another layout on the same compositor: the speaker alone.
        let canvas = c.compose(Layout::Speaker, &refs).unwrap();
        assert!(canvas.mean(0, 0, 640, 360).distance(colour(0)) <= 2);
    }

    #[test]
    fn letterbox_keeps_the_shape_and_crop_fills_the_tile() {
        let background = Yuv::from_rgb(0, 0, 0);
        // A 4:3 picture, left half one colour, right half another, into a 16:9 canvas.
        let mut source = Frame::filled(320, 240, colour(0));
        source.fill_rect(160, 0, 160, 240, colour(2));
        let mut c = Compositor::new(640, 360, background, Fit::Letterbox);
        let canvas = c.compose(Layout::Speaker, &[Some(&source)]).unwrap().clone();
        // 480 wide at 360 high, centred: bars of 80 on each side.
        assert!(canvas.mean(0, 0, 78, 360).distance(background) <= 1, "{:?}", canvas.mean(0, 0, 78, 360));
        assert!(canvas.mean(562, 0, 78, 360).distance(background) <= 1);
        assert!(canvas.mean(100, 20, 100, 320).distance(colour(0)) <= 3, "left half where it belongs");
        assert!(canvas.mean(440, 20, 100, 320).distance(colour(2)) <= 3, "right half where it belongs");
        let mut c = Compositor::new(640, 360, background, Fit::Crop);
        let canvas = c.compose(Layout::Speaker, &[Some(&source)]).unwrap();
        assert!(canvas.mean(0, 0, 40, 360).distance(colour(0)) <= 3, "no bars when cropped");
        assert!(canvas.mean(600, 0, 40, 360).distance(colour(2)) <= 3);
    }
}
