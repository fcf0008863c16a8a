#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! QR codes are checked by reading them back with `rqrr`, a decoder nobody on this project
//! wrote, from the SVG itself (rasterised here from its path).

use wardkey_authn::qr::{self, MAX_DATA_BYTES, QrError};

const URI: &str = "otpauth://totp/Wardkey:claire%40example.org?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Wardkey&algorithm=SHA1&digits=6&period=30";

/// The value of `name="..."` in the `<svg` start tag.
fn svg_attr(svg: &str, name: &str) -> u32 {
    let tag = &svg[svg.find("<svg").unwrap()..];
    let tag = &tag[..tag.find('>').unwrap()];
    let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    tag[start..start + tag[start..].find('"').unwrap()].parse().unwrap()
}

/// Rasterises the dark path: the renderer writes one `M{x} {y}h{w}v{h}H{x}V{y}` per module.
fn rasterise(svg: &str) -> (usize, usize, Vec<u8>) {
    let (w, h) = (svg_attr(svg, "width") as usize, svg_attr(svg, "height") as usize);
    let mut pixels = vec![255u8; w * h];
    let d_start = svg.find(" d=\"").unwrap() + 4;
    let d = &svg[d_start..d_start + svg[d_start..].find('"').unwrap()];
    let mut modules = 0;
    for cmd in d.split('M').filter(|c| !c.is_empty()) {
        let nums: Vec<usize> =
            cmd.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()).map(|n| n.parse().unwrap()).collect();
        let [x, y, mw, mh, ..] = nums[..] else { panic!("unexpected path segment {cmd:?}") };
        for row in y..y + mh {
            for col in x..x + mw {
                pixels[row * w + col] = 0;
            }
        }
        modules += 1;
    }
    assert!(modules > 100, "{modules} dark modules");
    (w, h, pixels)
}

fn decode(svg: &str) -> String {
    let (w, h, pixels) = rasterise(svg);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

#[test]
fn svg_document_of_the_uri() {
    let svg = qr::svg(URI).unwrap();
    assert!(svg.starts_with("<?xml"), "{svg:.80}");
    assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg_attr(&svg, "width") >= 200);
    // Nothing that would run or fetch anything when inlined in a page.
    for bad in ["<script", "href", "<foreignObject", "url("] {
        assert!(!svg.contains(bad), "{bad}");
    }
}

#[test]
fn decodes_back_to_the_input() {
    assert_eq!(decode(&qr::svg(URI).unwrap()), URI);
    let longest = format!("otpauth://totp/x?secret={}", "A".repeat(MAX_DATA_BYTES - 24));
    assert_eq!(longest.len(), MAX_DATA_BYTES);
    assert_eq!(decode(&qr::svg(&longest).unwrap()), longest);
}

#[test]
fn different_input_gives_different_output() {
    let a = qr::svg(URI).unwrap();
    let b = qr::svg(&URI.replace("claire", "claude")).unwrap();
    assert_ne!(a, b);
    assert_eq!(a, qr::svg(URI).unwrap(), "deterministic");
}

#[test]
fn input_is_bounded() {
    assert!(qr::svg(&"a".repeat(MAX_DATA_BYTES)).is_ok());
    assert_eq!(qr::svg(&"a".repeat(MAX_DATA_BYTES + 1)).unwrap_err(), QrError::TooLong);
    // Bytes, not characters: 342 three-byte characters are 1026 bytes.
    assert_eq!(qr::svg(&"€".repeat(342)).unwrap_err(), QrError::TooLong);
    assert!(qr::svg("").is_ok());
}
