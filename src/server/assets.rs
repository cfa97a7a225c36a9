//! What the GraphiQL assets and the ops console's build share: where a configured folder is
//! looked for, and how a file held in memory is answered.

use std::path::{Path, PathBuf};

use axum::{
    body::Bytes,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

/// Folders tried for `dir`, in order. An absolute `dir` is the only one. A relative one is
/// looked up in the working directory, then next to the binary (an install that copied
/// `web/node_modules` beside `aurum`), then in the checkout the binary was built from, so
/// `aurum serve` started elsewhere still finds `npm ci --prefix web`'s folder.
pub fn candidates(dir: &Path, exe: Option<&Path>) -> Vec<PathBuf> {
    if dir.is_absolute() {
        return vec![dir.to_path_buf()];
    }
    let mut tried = vec![std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())];
    if let Some(folder) = exe.and_then(Path::parent) {
        tried.push(folder.join(dir));
    }
    tried.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    let mut unique = Vec::with_capacity(tried.len());
    for path in tried {
        if !unique.contains(&path) {
            unique.push(path);
        }
    }
    unique
}

/// A file held in memory (bytes, content type) with its caching rule, or 404.
pub fn file_response(
    file: Option<&(Bytes, &'static str)>,
    cache_control: &'static str,
) -> Response {
    match file {
        Some((bytes, content_type)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, cache_control),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
