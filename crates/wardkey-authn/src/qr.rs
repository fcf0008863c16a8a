//! QR codes as standalone SVG, for TOTP enrolment (the `otpauth://` URI): the page can show
//! it inline without JavaScript or an image endpoint, and nothing secret leaves the server
//! for a third-party QR service.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// Largest input encoded. An `otpauth://` URI is about 150 bytes; the bound keeps the SVG
/// small (a QR code grows with its input) and is well within what any version-40 code holds.
pub const MAX_DATA_BYTES: usize = 1024;

/// Why no QR code was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("QR data over {MAX_DATA_BYTES} bytes")]
    TooLong,
    #[error("the data cannot be encoded as a QR code")]
    Encoding,
}

/// A standalone SVG document (XML declaration included) showing `data` as a QR code.
///
/// Error correction is level M (15%), the usual choice for codes read from a screen; black
/// on white with the standard four-module quiet zone, at least 200 px square so phones
/// focus on it easily.
pub fn svg(data: &str) -> Result<String, QrError> {
    if data.len() > MAX_DATA_BYTES {
        return Err(QrError::TooLong);
    }
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|_| QrError::Encoding)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}
