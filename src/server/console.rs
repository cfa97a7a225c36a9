//! The ops console at `/console`: a built front-end (`npm run --prefix console build` writes
//! `console/dist`), read once at start-up like GraphiQL's assets and served from memory. The
//! console talks to the public `/graphql` only. Every path under `/console` that is not an
//! asset answers the console's page (its router owns those paths); a missing build answers a
//! page saying how to make it.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use axum::{
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use super::{
    AppState,
    assets::{candidates, file_response},
};

/// The page may load only its own scripts and styles and talk only to this origin (the
/// WebSocket included); React sets `style` attributes, hence `'unsafe-inline'` for styles.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// File name under `assets/` → (bytes, content type).
type Files = HashMap<String, (Bytes, &'static str)>;

/// The built console held in memory: `index.html` and the files under `assets/`.
pub struct ConsoleAssets {
    index: Option<Bytes>,
    files: Files,
    /// Folders searched in vain (empty once the build is loaded).
    searched: Vec<PathBuf>,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// `index.html` and `assets/*` of one build folder, or why it is not one.
fn read_build(dir: &Path) -> Result<(Bytes, Files), String> {
    let index = std::fs::read(dir.join("index.html"))
        .map_err(|e| format!("{} ({e})", dir.join("index.html").display()))?;
    let assets = dir.join("assets");
    let mut files = HashMap::new();
    let entries = std::fs::read_dir(&assets).map_err(|e| format!("{} ({e})", assets.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| format!("{} ({e})", path.display()))?;
            files.insert(name.to_owned(), (Bytes::from(bytes), content_type(name)));
        }
    }
    Ok((Bytes::from(index), files))
}

impl ConsoleAssets {
    /// Reads the first build among [`candidates`] of `dir`; when there is none, logs the
    /// folders tried and the page says how to build it.
    pub fn load(dir: &Path) -> Self {
        let exe = std::env::current_exe().ok();
        let searched = candidates(dir, exe.as_deref());
        let mut missing = Vec::new();
        for folder in &searched {
            match read_build(folder) {
                Ok((index, files)) => {
                    tracing::info!(console.assets = %folder.display(), console.files = files.len(), "ops console loaded");
                    return Self {
                        index: Some(index),
                        files,
                        searched: Vec::new(),
                    };
                }
                Err(why) => missing.push(why),
            }
        }
        tracing::warn!(
            console.searched = ?searched,
            console.missing = ?missing,
            "ops console build not found; run `npm ci --prefix console && npm run --prefix \
             console build` in the checkout (or set AURUM_CONSOLE_ASSETS to a built folder)"
        );
        Self {
            index: None,
            files: HashMap::new(),
            searched,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.index.is_some()
    }
}

/// `GET /console` and every `/console/…` path that is not an asset.
pub async fn page(State(state): State<AppState>) -> Response {
    let Some(index) = &state.console.index else {
        let body = format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Aurum console \
             not built</title></head><body><h1>The ops console is not built</h1><p>Run \
             <code>npm ci --prefix console &amp;&amp; npm run --prefix console build</code> in \
             the Aurum checkout (<code>scripts/setup</code> does) or point \
             <code>AURUM_CONSOLE_ASSETS</code> at a built <code>dist</code> folder, then restart. \
             {} folder(s) searched; the server log lists them. The API at <code>/graphql</code> \
             and GraphiQL work without it.</p></body></html>",
            state.console.searched.len()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, Html(body)).into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        index.clone(),
    )
        .into_response()
}

/// `GET /console/assets/{name}`: content-hashed file names, so they are cached for good.
pub async fn asset(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    file_response(
        state.console.files.get(name.as_str()),
        "public, max-age=31536000, immutable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_a_build_is_reported_not_served() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let assets = ConsoleAssets::load(dir.path());
        assert!(!assets.is_complete());
        assert_eq!(assets.searched, vec![dir.path().to_path_buf()]);
        Ok(())
    }

    #[test]
    fn a_build_is_read_with_its_content_types() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("assets"))?;
        std::fs::write(dir.path().join("index.html"), "<!DOCTYPE html>")?;
        std::fs::write(dir.path().join("assets/index-1.js"), "x")?;
        std::fs::write(dir.path().join("assets/index-1.css"), "y")?;
        let assets = ConsoleAssets::load(dir.path());
        assert!(assets.is_complete());
        let kind = |name: &str| assets.files.get(name).map(|f| f.1);
        assert_eq!(kind("index-1.js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(kind("index-1.css"), Some("text/css; charset=utf-8"));
        Ok(())
    }
}
