//! Criterion benchmarks of the pure steps of the completion path: an edit with incremental
//! reparse on a 20,000-line file, context extraction, prompt building and cache lookups;
//! the routing decision for a 300-line function; other files' context for a request.
//! Run: `cargo bench --bench core`.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pilotfish::cache::{CacheKey, CachedSuggestion, CompletionCache};
use pilotfish::config::{LoadedConfig, Origin};
use pilotfish::documents::{Documents, OtherFiles, Reparse, Snapshot, TextChange};
use pilotfish::position::{LineCol, PositionEncoding};
use pilotfish::prompt::{Fim, FimTemplate, build_fim};
use pilotfish::router::{RouteRequest, RouteState};
use pilotfish::session::Session;
use pilotfish::syntax::Language;
use pilotfish::syntax::context::{ContextBudget, MultilinePolicy, extract};
use pilotfish::syntax::features::{Features, FeaturesMemo, enclosing_target};

/// A Rust file of about `lines` lines: structs, impls and functions with bodies.
pub fn rust_source(lines: usize) -> String {
    let mut out = String::from("use std::collections::HashMap;\nuse std::fmt;\n\n");
    let mut i = 0;
    while out.lines().count() < lines {
        out.push_str(&format!(
            "pub struct Item{i} {{\n    id: u64,\n    name: String,\n}}\n\n\
             impl Item{i} {{\n    pub fn score(&self, weights: &HashMap<String, f64>) -> f64 {{\n        \
             let mut total = 0.0;\n        for (key, w) in weights {{\n            if self.name.contains(key.as_str()) {{\n                \
             total += w * (self.id as f64);\n            }}\n        }}\n        total\n    }}\n}}\n\n"
        ));
        i += 1;
    }
    out
}

/// Types a character at column 8 of `line`, then (next call) deletes it, so the document
/// does not grow.
fn type_or_delete(version: i32, line: u32) -> TextChange {
    let at = LineCol { line, col: 8 };
    let end = LineCol { line, col: 9 };
    let (range, text) = if version % 2 == 1 {
        ((at, at), "x")
    } else {
        ((at, end), "")
    };
    TextChange {
        range: Some(range),
        text: text.into(),
    }
}

fn edit_and_reparse(c: &mut Criterion) {
    let text = rust_source(20_000);
    let store = Mutex::new(Documents::default());
    store
        .lock()
        .unwrap()
        .open_parsed("file:///big.rs", Language::Rust, 0, &text);
    let line = 10_000u32;
    let mut version = 0;
    // What `didChange` costs on the request path: the rope edit and the tree edit; the
    // reparse of a file this big is deferred to a background thread.
    c.bench_function("didChange 1 char (reparse deferred), 20k-line Rust", |b| {
        b.iter(|| {
            version += 1;
            let change = type_or_delete(version, line);
            let mut docs = store.lock().unwrap();
            black_box(
                docs.change(
                    "file:///big.rs",
                    version,
                    &[change],
                    PositionEncoding::Utf16,
                )
                .unwrap(),
            )
        })
    });
    // And the background reparse that follows each such edit.
    c.bench_function(
        "background incremental reparse after 1 char, 20k-line Rust",
        |b| {
            b.iter(|| {
                version += 1;
                let change = type_or_delete(version, line);
                let _ = store.lock().unwrap().change(
                    "file:///big.rs",
                    version,
                    &[change],
                    PositionEncoding::Utf16,
                );
                Documents::reparse_deferred(&store, "file:///big.rs");
            })
        },
    );
    // A 2,000-line file is reparsed inside didChange itself.
    let small = rust_source(2_000);
    let mut docs = Documents::default();
    docs.open_parsed("file:///small.rs", Language::Rust, 0, &small);
    c.bench_function(
        "didChange 1 char + incremental reparse, 2k-line Rust",
        |b| {
            b.iter(|| {
                version += 1;
                let change = type_or_delete(version, 1_000);
                black_box(
                    docs.change(
                        "file:///small.rs",
                        version,
                        &[change],
                        PositionEncoding::Utf16,
                    )
                    .unwrap(),
                )
            })
        },
    );
}

fn context_and_prompt(c: &mut Criterion) {
    let text = rust_source(3_000);
    let mut docs = Documents::default();
    docs.open_parsed("file:///mid.rs", Language::Rust, 0, &text);
    let snap = docs.snapshot("file:///mid.rs").unwrap();
    let cursor = snap.rope.line_to_byte(1_500) + 8;
    c.bench_function("context extraction, 3k-line Rust", |b| {
        b.iter(|| {
            black_box(extract(
                &snap.rope,
                snap.tree.as_ref(),
                Language::Rust,
                black_box(cursor),
                ContextBudget::default(),
                MultilinePolicy::Auto,
            ))
        })
    });
    let ctx = extract(
        &snap.rope,
        snap.tree.as_ref(),
        Language::Rust,
        cursor,
        ContextBudget::default(),
        MultilinePolicy::Auto,
    );
    c.bench_function("prompt build (qwen template)", |b| {
        b.iter(|| black_box(build_fim(Fim::Template(FimTemplate::Qwen), black_box(&ctx))))
    });
}

fn cache(c: &mut Criterion) {
    let text = rust_source(200);
    let model: Arc<str> = "fast".into();
    let mut cache = CompletionCache::new(512);
    // Fill the cache with 512 entries sharing a long prefix, as typing in one file does.
    for i in 0..512 {
        let key = CacheKey {
            model: model.clone(),
            prefix: format!("{text}{i}"),
            suffix: "\n}\n".into(),
            multiline: false,
        };
        cache.insert(
            key,
            CachedSuggestion {
                text: Some(format!("value_{i}();").into()),
                answered_by: model.clone(),
                then: None,
            },
        );
    }
    let hit = CacheKey {
        model: model.clone(),
        prefix: format!("{text}42"),
        suffix: "\n}\n".into(),
        multiline: false,
    };
    c.bench_function("cache exact hit (512 entries, 6 KB prefix)", |b| {
        b.iter(|| black_box(cache.lookup(black_box(&hit))))
    });
    let typed = CacheKey {
        model: model.clone(),
        prefix: format!("{text}511val"),
        suffix: "\n}\n".into(),
        multiline: false,
    };
    c.bench_function("cache typed-ahead hit", |b| {
        b.iter(|| black_box(cache.lookup_typed_ahead(black_box(&typed))))
    });
    let miss = CacheKey {
        model,
        prefix: format!("{text}none"),
        suffix: "\n}\n".into(),
        multiline: false,
    };
    c.bench_function("cache miss (exact + typed-ahead)", |b| {
        b.iter(|| {
            black_box(cache.lookup(black_box(&miss)));
            black_box(cache.lookup_typed_ahead(black_box(&miss)))
        })
    });
}

/// The whole routing decision for an action on a 300-line function: the target and its
/// features from tree-sitter, then rules, privacy, health, budget and fit.
fn routing(c: &mut Criterion) {
    let mut src = String::from("import os\nimport subprocess\n\n\ndef handler(request, db):\n");
    for i in 0..100 {
        src.push_str(&format!("    if request.get(\"k{i}\") and request.user:\n"));
        src.push_str(&format!(
            "        db.execute(f\"SELECT * FROM t WHERE id = {{request.id}} AND n = {i}\")\n"
        ));
        src.push_str("        subprocess.run([\"ls\", request.path])\n");
    }
    let mut docs = Documents::default();
    docs.open_parsed("file:///ws/app/handler.py", Language::Python, 0, &src);
    let snap = docs.snapshot("file:///ws/app/handler.py").unwrap();
    let loaded = LoadedConfig::from_toml_str(
        r#"
[models.fast]
provider = "ollama"
url = "http://127.0.0.1:11434"
model = "qwen2.5-coder:1.5b"
fim = "native"
[models.cloud]
provider = "anthropic"
url = "https://api.anthropic.com"
model = "claude-sonnet-4-5"
local = false
context_window = 200000
[routes]
complete = ["fast"]
review = ["cloud", "fast"]
[[rules]]
task = "review"
when = { languages = ["rust", "cpp"], min_lines = 400 }
use = ["fast"]
[[rules]]
task = "review"
when = { sensitive = true, min_complexity = 10, paths = ["**/app/**"] }
use = ["cloud", "fast"]
[budget]
daily_usd = 2.0
"#,
        Origin::BuiltIn,
    )
    .unwrap();
    let session = Session::compile(loaded, Some("/ws".into())).unwrap();
    let router = session.router();
    let state = RouteState::default();
    let cursor = snap.rope.line_to_byte(150);
    let target = enclosing_target(&snap.rope, snap.tree.as_ref(), Language::Python, cursor);
    assert!(target.line_span(&snap.rope).1 - target.line_span(&snap.rope).0 >= 299);
    let decide = |snap: &Snapshot, feats: &Features| {
        let request = RouteRequest {
            task: "review",
            features: feats,
            path: "/ws/app/handler.py",
            workspace_root: Some("/ws"),
            secrets_found: 0,
            prompt_tokens: feats.tokens + 400,
        };
        black_box(router.decide(&request, &state));
        black_box(snap.version)
    };
    let target_of = |snap: &Snapshot| {
        enclosing_target(
            &snap.rope,
            snap.tree.as_ref(),
            Language::Python,
            black_box(cursor),
        )
    };
    // The first decision on a function the memo has not seen (the memo is filled when a
    // document opens, if completion routing reads features; until then, and for actions
    // otherwise): every node walked, and the memo filled.
    c.bench_function(
        "routing decision, 300-line Python function, cold memo (target + full features walk + rules + filters)",
        |b| {
            b.iter(|| {
                let target = target_of(&snap);
                let mut memo = FeaturesMemo::default();
                let feats = memo.features(&snap.rope, snap.tree.as_ref(), Language::Python, &target);
                decide(&snap, &feats)
            })
        },
    );
    // As the server decides: with the document's features memo, after the user changed one
    // line of the function: each edit writes a new number into a string on line 155, so the
    // function's text is new every time (never one the memo has seen). The edit and its
    // reparse happen in didChange, outside the timing.
    let mut version = 0;
    let mut old_len = "k50".len() as u32;
    c.bench_function(
        "routing decision, 300-line Python function, after a one-line edit (features memo)",
        |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    version += 1;
                    let code = format!("v{version:07}");
                    let change = TextChange {
                        range: Some((
                            LineCol { line: 155, col: 20 },
                            LineCol {
                                line: 155,
                                col: 20 + old_len,
                            },
                        )),
                        text: code.clone(),
                    };
                    old_len = code.len() as u32;
                    let reparse = docs.change(
                        "file:///ws/app/handler.py",
                        version,
                        &[change],
                        PositionEncoding::Utf16,
                    );
                    assert_eq!(
                        reparse.map(|c| c.reparse),
                        Ok(Reparse::Done),
                        "reparsed inside didChange"
                    );
                    let snap = docs.snapshot("file:///ws/app/handler.py").unwrap();
                    let start = Instant::now();
                    let target = target_of(&snap);
                    let feats = snap.features(&target);
                    decide(&snap, &feats);
                    timed += start.elapsed();
                }
                timed
            })
        },
    );
    // A function unchanged since the memo saw it: the first decision after the open-time
    // warm-up, or another decision on the same text.
    let snap = docs.snapshot("file:///ws/app/handler.py").unwrap();
    c.bench_function(
        "routing decision, 300-line Python function, unchanged since the warm-up or the last decision (features memo)",
        |b| {
            b.iter(|| {
                let target = target_of(&snap);
                let feats = snap.features(&target);
                decide(&snap, &feats)
            })
        },
    );
}

/// Other files' context for one request (`Documents::for_completion`): five open 3k-line
/// Rust files, a full recent-context ring (16 chunks, cut by edits far apart in four of
/// them), three outlines and four chunks wanted. Asked at the same place (the focus does not
/// move: nothing is cut), and alternating between two files (each request cuts the chunk the
/// other left, the same text again: the ring does not change).
fn other_files(c: &mut Criterion) {
    let mut docs = Documents::default();
    let uris: Vec<String> = (0..5).map(|i| format!("file:///w/f{i}.rs")).collect();
    for (d, uri) in uris.iter().enumerate() {
        // Names of their own in every item, so that chunks are not near-duplicates.
        let text: String = (0..200)
            .map(|i| {
                format!(
                    "pub struct Doc{d}Item{i} {{\n    id_{i}: u64,\n    label_{d}_{i}: String,\n}}\n\n\
                     impl Doc{d}Item{i} {{\n    pub fn score_{d}_{i}(&self, w{i}: &Weights{d}) -> f64 {{\n        \
                     let mut total_{i} = 0.0;\n        for (key_{i}, w) in w{i}.iter_{d}() {{\n            \
                     total_{i} += w * (self.id_{i} as f64) / norm_{d}(key_{i});\n        }}\n        \
                     total_{i}\n    }}\n}}\n\n"
                )
            })
            .collect();
        docs.open_parsed(uri, Language::Rust, 0, &text);
    }
    for (i, uri) in uris.iter().enumerate().skip(1) {
        for spot in 0..5u32 {
            let change = type_or_delete(1, 100 + spot * 400 + i as u32);
            let _ = docs.change(uri, 1 + spot as i32, &[change], PositionEncoding::Utf16);
        }
    }
    let wanted = OtherFiles {
        outline_files: 3,
        outline_chars: 1200,
        recent_chunks: 4,
    };
    let (_, related) = docs.for_completion(&uris[0], Some(1_500), &wanted).unwrap();
    assert!(
        related.len() > 3,
        "3 outlines and some chunks: {}",
        related.len()
    );
    c.bench_function(
        "other files' context, same place (3 outlines, 4 of 16 chunks)",
        |b| b.iter(|| black_box(docs.for_completion(&uris[0], Some(black_box(1_500)), &wanted))),
    );
    let mut n = 0usize;
    c.bench_function(
        "other files' context, alternating files (a chunk cut each time)",
        |b| {
            b.iter(|| {
                n += 1;
                black_box(docs.for_completion(&uris[n % 2], Some(1_500), &wanted))
            })
        },
    );
}

criterion_group!(
    benches,
    edit_and_reparse,
    context_and_prompt,
    cache,
    routing,
    other_files
);
criterion_main!(benches);
