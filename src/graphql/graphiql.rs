//! GraphiQL served offline: the page is our own template and its four assets come from the
//! npm-installed folder (`npm ci --prefix web`), read once at start-up. No CDN URL is ever
//! emitted; when the assets are missing the page says how to install them.

use std::{collections::HashMap, path::Path};

use axum::{
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use crate::app::AppState;

/// (route name, path under the assets folder, content type)
const FILES: [(&str, &str, &str); 4] = [
    (
        "graphiql.min.js",
        "graphiql/graphiql.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "graphiql.min.css",
        "graphiql/graphiql.min.css",
        "text/css; charset=utf-8",
    ),
    (
        "react.production.min.js",
        "react/umd/react.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "react-dom.production.min.js",
        "react-dom/umd/react-dom.production.min.js",
        "text/javascript; charset=utf-8",
    ),
];

/// The GraphiQL assets held in memory.
pub struct GraphiqlAssets {
    files: HashMap<&'static str, (Bytes, &'static str)>,
    missing: Vec<String>,
}

impl GraphiqlAssets {
    /// Reads the assets from `dir`; missing files are logged and reported by the page.
    pub fn load(dir: &Path) -> Self {
        let mut files = HashMap::new();
        let mut missing = Vec::new();
        for (name, rel, content_type) in FILES {
            let path = dir.join(rel);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    files.insert(name, (Bytes::from(bytes), content_type));
                }
                Err(e) => missing.push(format!("{} ({e})", path.display())),
            }
        }
        if !missing.is_empty() {
            tracing::warn!(
                graphiql.missing = ?missing,
                "GraphiQL assets not found; run `npm ci --prefix web` (or set AURUM_GRAPHIQL_ASSETS)"
            );
        }
        Self { files, missing }
    }

    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="robots" content="noindex">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Aurum GraphiQL</title>
  <link rel="icon" href="data:,">
  <style>body{height:100%;margin:0;width:100%;overflow:hidden}#graphiql{height:100vh}</style>
  <link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
  <script src="/graphiql/assets/react.production.min.js"></script>
  <script src="/graphiql/assets/react-dom.production.min.js"></script>
</head>
<body>
  <div id="graphiql">Loading…</div>
  <script src="/graphiql/assets/graphiql.min.js"></script>
  <script>
    const url = new URL('/graphql', window.location.href);
    const wsUrl = new URL('/graphql', window.location.href);
    wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams(window.location.search);
    const fetcher = GraphiQL.createFetcher({
      url: url.toString(),
      subscriptionUrl: wsUrl.toString(),
      fetch: (u, o = {}) => fetch(u, { ...o, credentials: 'same-origin' }),
    });
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, {
        fetcher,
        defaultEditorToolsVisibility: true,
        query: params.get('query') ?? undefined,
        variables: params.get('variables') ?? undefined,
        headers: params.get('headers') ?? undefined,
      })
    );
  </script>
</body>
</html>
"#;

/// The GraphiQL page, or an explanation of how to install its assets.
pub fn page(state: &AppState) -> Response {
    if state.graphiql.is_complete() {
        return Html(PAGE).into_response();
    }
    let body = format!(
        "<!DOCTYPE html><html><body><h1>GraphiQL assets are not installed</h1>\
         <p>Run <code>npm ci --prefix web</code> in the Aurum checkout (or point \
         AURUM_GRAPHIQL_ASSETS at an installed <code>node_modules</code>) and restart. \
         {} file(s) missing. POST /graphql works without them.</p></body></html>",
        state.graphiql.missing.len()
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(body)).into_response()
}

/// `GET /graphiql/assets/{name}`.
pub async fn asset(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.graphiql.files.get(name.as_str()) {
        Some((bytes, content_type)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_names_no_remote_host() {
        assert!(!super::PAGE.contains("https://") && !super::PAGE.contains("http://"));
    }
}
