//! The pages' style sheet and script, compiled into the binary: the pages load nothing from anywhere else.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// The style sheet.
pub const STYLE: &str = include_str!("assets/style.css");
/// The script: live updates, sortable tables, the operator's name remembered, the health page's wait.
pub const SCRIPT: &str = include_str!("assets/lab.js");

/// `/assets/style.css`.
pub async fn style() -> Response {
    ([(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, "no-cache")], STYLE).into_response()
}

/// `/assets/lab.js`.
pub async fn script() -> Response {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8"), (CACHE_CONTROL, "no-cache")], SCRIPT).into_response()
}
