//! The API's documentation: the vendored Swagger UI and the OpenAPI
//! document, under `/api/v1/docs/`.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{CODE_NOT_FOUND, refuse, request_id};

const OPENAPI: &str = include_str!("../swagger/openapi.json");
const INDEX_HTML: &str = include_str!("../swagger/index.html");
const UI_CSS: &str = include_str!("../swagger/swagger-ui.css");
const UI_JS: &str = include_str!("../swagger/swagger-ui-bundle.js");

/// A file of the vendored Swagger UI, or the OpenAPI document.
pub(super) async fn file(
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let (kind, body) = match file.as_str() {
        "index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "openapi.json" | "doc.json" | "swagger.json" => ("application/json", OPENAPI),
        "swagger-ui.css" => ("text/css", UI_CSS),
        "swagger-ui-bundle.js" => ("application/javascript", UI_JS),
        _ => {
            return refuse(
                StatusCode::NOT_FOUND,
                CODE_NOT_FOUND,
                request_id(&headers, None),
                format!("no such file in the API docs: {file}"),
            );
        }
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
