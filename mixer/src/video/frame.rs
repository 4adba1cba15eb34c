//! Pictures as I420 (8-bit Y, then U and V at half the width and height), and colours in the
//! BT.601 limited range that H.264 cameras and decoders use by default.

/// A colour as Y′CbCr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Yuv {
    pub y: u8,
    pub u: u8,
    pub v: u8,
}

impl Yuv {
    /// From 8-bit R′G′B′ (BT.601, limited range: Y 16–235, Cb/Cr 16–240).
    pub fn from_rgb(r: u8, g: u8, b: u8) -> Yuv {
        let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        let clamp = |x: f64| x.round().clamp(0.0, 255.0) as u8;
        Yuv { y: clamp(y), u: clamp(u), v: clamp(v) }
    }

    /// The largest difference of one component: how far two colours are apart.
    pub fn distance(self, other: Yuv) -> u8 {
        let d = |a: u8, b: u8| a.abs_diff(b);
        d(self.y, other.y).max(d(self.u, other.u)).max(d(self.v, other.v))
    }
}

/// An I420 picture with tightly packed planes; width and height are even.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Frame {
    /// A picture of one colour; odd sizes are rounded down to even.
    pub fn filled(width: usize, height: usize, colour: Yuv) -> Frame {
        let (width, height) = (width & !1, height & !1);
        let chroma = (width / 2) * (height / 2);
        Frame {
            width,
            height,
            y: vec![colour.y; width * height],
            u: vec![colour.u; chroma],
            v: vec![colour.v; chroma],
        }
    }

    /// Copies planes with strides (a decoder's output) into a packed frame.
    pub fn from_planes(
        width: usize,
        height: usize,
        planes: [&[u8]; 3],
        strides: [usize; 3],
    ) -> Option<Frame> {
        let mut frame = Frame::filled(0, 0, Yuv { y: 0, u: 0, v: 0 });
        frame.copy_planes(width, height, planes, strides).then_some(frame)
    }

    /// [`Frame::from_planes`] into this frame, its buffers reused; false (and the frame left
    /// empty) when a plane is shorter than its size and stride say.
    pub fn copy_planes(
        &mut self,
        width: usize,
        height: usize,
        planes: [&[u8]; 3],
        strides: [usize; 3],
    ) -> bool {
        let (width, height) = (width & !1, height & !1);
        let chroma = (width / 2) * (height / 2);
        (self.width, self.height) = (width, height);
        self.y.resize(width * height, 0);
        self.u.resize(chroma, 0);
        self.v.resize(chroma, 0);
        let copy = |dst: &mut [u8], src: &[u8], w: usize, h: usize, stride: usize| -> Option<()> {
            for row in 0..h {
                let from = src.get(row * stride..row * stride + w)?;
                dst[row * w..(row + 1) * w].copy_from_slice(from);
            }
            Some(())
        };
        let copied = copy(&mut self.y, planes[0], width, height, strides[0])
            .and_then(|()| copy(&mut self.u, planes[1], width / 2, height / 2, strides[1]))
            .and_then(|()| copy(&mut self.v, planes[2], width / 2, height / 2, strides[2]));
        if copied.is_none() {
            (self.width, self.height) = (0, 0);
            self.y.clear();
            self.u.clear();
            self.v.clear();
        }
        copied.is_some()
    }

    /// Paints a rectangle (clipped to the picture; corners rounded to even).
    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, colour: Yuv) {
        let (x1, y1) = ((x + w).min(self.width) & !1, (y + h).min(self.height) & !1);
        let (x0, y0) = ((x & !1).min(x1), (y & !1).min(y1));
        for row in y0..y1 {
            self.y[row * self.width + x0..row * self.width + x1].fill(colour.y);
        }
        let cw = self.width / 2;
        for row in y0 / 2..y1 / 2 {
            self.u[row * cw + x0 / 2..row * cw + x1 / 2].fill(colour.u);
            self.v[row * cw + x0 / 2..row * cw + x1 / 2].fill(colour.v);
        }
    }

    /// The mean colour of a rectangle (clipped to the picture).
    pub fn mean(&self, x: usize, y: usize, w: usize, h: usize) -> Yuv {
        let (x1, y1) = ((x + w).min(self.width), (y + h).min(self.height));
        let average = |plane: &[u8], stride: usize, x0: usize, y0: usize, x1: usize, y1: usize| {
            let (mut sum, mut n) = (0u64, 0u64);
            for row in y0..y1 {
                for &p in &plane[row * stride + x0..row * stride + x1] {
                    sum += u64::from(p);
                    n += 1;
                }
            }
            (sum / n.max(1)) as u8
        };
        Yuv {
            y: average(&self.y, self.width, x, y, x1, y1),
            u: average(&self.u, self.width / 2, x / 2, y / 2, x1 / 2, y1 / 2),
            v: average(&self.v, self.width / 2, x / 2, y / 2, x1 / 2, y1 / 2),
        }
    }
}

impl openh264::formats::YUVSource for Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_land_where_bt601_puts_them_and_rectangles_paint_and_average() {
        assert_eq!(Yuv::from_rgb(0, 0, 0), Yuv { y: 16, u: 128, v: 128 });
        assert_eq!(Yuv::from_rgb(255, 255, 255), Yuv { y: 235, u: 128, v: 128 });
        assert_eq!(Yuv::from_rgb(255, 0, 0), Yuv { y: 81, u: 90, v: 240 });
        let red = Yuv::from_rgb(255, 0, 0);
        let blue = Yuv::from_rgb(0, 0, 255);
        let mut frame = Frame::filled(64, 48, blue);
        frame.fill_rect(32, 0, 40, 48, red);
        assert_eq!(frame.mean(0, 0, 32, 48), blue);
        assert_eq!(frame.mean(32, 0, 32, 48), red);
        assert!(frame.mean(0, 0, 64, 48).distance(red) > 20);
    }
}
