//! The completion cache: an LRU of post-processed suggestions keyed on the model and the
//! prompt's windows, and typed-ahead reuse — when the user types the first characters of a
//! suggestion, the rest of it is answered from here without a model call. Pure; no I/O.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

/// How many of the most recently used entries a typed-ahead lookup scans. The suggestion
/// being typed into is one the user has just seen, so it is always among the newest.
const TYPED_AHEAD_SCAN: usize = 16;

/// What a suggestion was computed from. Equal keys mean an equal prompt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub model: Arc<str>,
    /// Everything before the cursor that the prompt carries (header + prefix window).
    pub prefix: String,
    pub suffix: String,
    pub multiline: bool,
}

/// A cached answer: the suggestion (None: the model had nothing useful to say here, which is
/// worth remembering too) and the model that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSuggestion {
    pub text: Option<Arc<str>>,
    pub answered_by: Arc<str>,
    /// The lines the model wrote after the suggestion (each a line break, then the line):
    /// typed-ahead reuse offers them one at a time once the user has typed or accepted the
    /// whole suggestion, and each line before.
    pub then: Option<Arc<str>>,
}

pub struct CompletionCache {
    entries: LruCache<CacheKey, CachedSuggestion>,
}

impl CompletionCache {
    pub fn new(capacity: usize) -> CompletionCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        CompletionCache {
            entries: LruCache::new(capacity),
        }
    }

    /// Changes the capacity, evicting the least recently used entries if it shrinks.
    pub fn resize(&mut self, capacity: usize) {
        self.entries
            .resize(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN));
    }

    pub fn insert(&mut self, key: CacheKey, value: CachedSuggestion) {
        self.entries.put(key, value);
    }

    /// Whether an entry for exactly this prompt exists (without refreshing it).
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.entries.contains(key)
    }

    /// The entry for exactly this prompt.
    pub fn lookup(&mut self, key: &CacheKey) -> Option<CachedSuggestion> {
        self.entries.get(key).cloned()
    }

    /// Typed-ahead reuse: an entry for the same model and suffix whose prefix, followed by
    /// the characters typed since, is `key.prefix`, and whose suggestion starts with those
    /// characters. Returns what is left of that suggestion; None if nothing is left.
    pub fn lookup_typed_ahead(&mut self, key: &CacheKey) -> Option<CachedSuggestion> {
        let (source_key, rest) = self.find_typed_ahead(key)?;
        // Keep the source fresh (the user is still typing into it). The rest is not kept
        // under the new key: the source may still grow (a slow model's call writing the
        // line after), and a copy would answer the same request again with less.
        self.entries.promote(&source_key);
        Some(rest)
    }

    /// Whether [`CompletionCache::lookup_typed_ahead`] would answer `key`, without touching
    /// the entries.
    pub fn has_typed_ahead(&self, key: &CacheKey) -> bool {
        self.find_typed_ahead(key).is_some()
    }

    /// The entry typed-ahead reuse would take for `key`, and the rest of its suggestion.
    fn find_typed_ahead(&self, key: &CacheKey) -> Option<(CacheKey, CachedSuggestion)> {
        self.entries
            .iter()
            .take(TYPED_AHEAD_SCAN)
            .find_map(|(k, v)| {
                if k.model != key.model
                    || k.suffix != key.suffix
                    || k.prefix.len() >= key.prefix.len()
                {
                    return None;
                }
                let typed = key.prefix.strip_prefix(k.prefix.as_str())?;
                let text = v.text.as_deref()?;
                let (text, then) = match text.strip_prefix(typed) {
                    Some(rest) if !rest.trim().is_empty() => (Arc::from(rest), v.then.clone()),
                    Some(rest) if !rest.is_empty() => return None,
                    // The whole suggestion typed or accepted, and maybe some of the lines
                    // after it: the rest of the line the user is in, then the others.
                    _ => {
                        let then = v.then.as_deref()?;
                        let rest = typed
                            .strip_prefix(text)
                            .and_then(|into| then.strip_prefix(into))
                            .filter(|rest| !rest.trim().is_empty())?;
                        let (line, more) = split_first_line(rest);
                        (Arc::from(line), (!more.is_empty()).then(|| Arc::from(more)))
                    }
                };
                Some((
                    k.clone(),
                    CachedSuggestion {
                        text: Some(text),
                        answered_by: v.answered_by.clone(),
                        then,
                    },
                ))
            })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `lines` cut after its first line: the line break it may start with, then the text up to
/// the next line break (which the second part starts with).
fn split_first_line(lines: &str) -> (&str, &str) {
    let body = lines.len() - lines.trim_start_matches(['\r', '\n']).len();
    match lines[body..].find(['\r', '\n']) {
        Some(end) => lines.split_at(body + end),
        None => (lines, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str, suffix: &str) -> CacheKey {
        CacheKey {
            model: "m".into(),
            prefix: prefix.into(),
            suffix: suffix.into(),
            multiline: false,
        }
    }

    fn answer(text: &str) -> CachedSuggestion {
        CachedSuggestion {
            text: Some(text.into()),
            answered_by: "m".into(),
            then: None,
        }
    }

    #[test]
    fn exact_hits_and_lru_eviction() {
        let mut c = CompletionCache::new(2);
        c.insert(key("a", ""), answer("1"));
        c.insert(key("b", ""), answer("2"));
        assert_eq!(c.lookup(&key("a", "")), Some(answer("1")));
        c.insert(key("c", ""), answer("3")); // evicts b, the least recently used
        assert_eq!(c.lookup(&key("b", "")), None);
        assert_eq!(c.lookup(&key("a", "")), Some(answer("1")));
        let mut other_model = key("a", "");
        other_model.model = "other".into();
        assert_eq!(c.lookup(&other_model), None);
    }

    #[test]
    fn typed_ahead_table() {
        // (cached prefix, cached suggestion, new prefix, new suffix, expected rest)
        let cases: &[(&str, &str, &str, &str, Option<&str>)] = &[
            ("let x = ", "foo(bar);", "let x = f", ")", None), // suffix differs
            ("let x = ", "foo(bar);", "let x = f", "", Some("oo(bar);")),
            ("let x = ", "foo(bar);", "let x = foo(", "", Some("bar);")),
            ("let x = ", "foo(bar);", "let x = fob", "", None), // typed something else
            ("let x = ", "foo(bar);", "let x = foo(bar);", "", None), // nothing left
            ("let x = ", "foo(bar);", "let x = ", "", None),    // same prefix is not typed-ahead
            ("let 😀 = ", "日本(x)", "let 😀 = 日", "", Some("本(x)")),
            (
                "def f():\n",
                "    return 1\n    pass",
                "def f():\n    ret",
                "",
                Some("urn 1\n    pass"),
            ),
        ];
        for (old_prefix, suggestion, new_prefix, new_suffix, want) in cases {
            let mut c = CompletionCache::new(8);
            c.insert(key(old_prefix, ""), answer(suggestion));
            let got = c.lookup_typed_ahead(&key(new_prefix, new_suffix));
            assert_eq!(
                got.as_ref().and_then(|g| g.text.as_deref()),
                *want,
                "{new_prefix:?}"
            );
            if key(new_prefix, new_suffix) != key(old_prefix, "") {
                assert!(
                    c.lookup(&key(new_prefix, new_suffix)).is_none(),
                    "the rest is not copied under the new key: {new_prefix:?}"
                );
            }
        }
    }

    /// A slow model's call publishes its answer line by line under its own key: a request
    /// typed along it, asked again after the next line came, gets that line too (a copy of
    /// the first answer under the request's key would have answered with less).
    #[test]
    fn typing_along_a_growing_answer_sees_it_grow() {
        let mut c = CompletionCache::new(8);
        let (source, along) = (key("    ", ""), key("    for", ""));
        c.insert(source.clone(), answer("for x in xs:"));
        let first = c.lookup_typed_ahead(&along).expect("typed along");
        assert_eq!(first.text.as_deref(), Some(" x in xs:"));
        c.insert(source, answer("for x in xs:\n        total += x"));
        let again = c
            .lookup(&along)
            .or_else(|| c.lookup_typed_ahead(&along))
            .expect("typed along, again");
        assert_eq!(again.text.as_deref(), Some(" x in xs:\n        total += x"));
    }

    /// The lines the model wrote after a suggestion are offered once the whole suggestion is
    /// typed (or accepted), one at a time, and only then.
    #[test]
    fn the_lines_after_a_suggestion_come_once_it_is_typed() {
        let lines_after = "\n    total += x\n    return total";
        // (typed after "total = sum(", expected suggestion, and what it offers next)
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("it", Some("ems)"), Some(lines_after)),
            (
                "items)",
                Some("\n    total += x"),
                Some("\n    return total"),
            ),
            ("items) ", None, None),
            ("items)x", None, None),
            // Into the line after: its rest, then the next.
            (
                "items)\n    to",
                Some("tal += x"),
                Some("\n    return total"),
            ),
            ("items)\n    total += x", Some("\n    return total"), None),
            ("items)\n    total -= x", None, None),
            ("items)\n    total += x\n    return total", None, None),
            ("items)\n    total += x\n    return total\n", None, None),
        ];
        for (typed, want, want_then) in cases {
            let mut c = CompletionCache::new(8);
            c.insert(
                key("total = sum(", ""),
                CachedSuggestion {
                    then: Some(lines_after.into()),
                    ..answer("items)")
                },
            );
            let got = c.lookup_typed_ahead(&key(&format!("total = sum({typed}"), ""));
            assert_eq!(
                got.as_ref().and_then(|g| g.text.as_deref()),
                *want,
                "{typed:?}"
            );
            assert_eq!(
                got.as_ref().and_then(|g| g.then.as_deref()),
                *want_then,
                "{typed:?}"
            );
        }
    }

    #[test]
    fn a_first_line_and_the_rest() {
        let cases = [
            ("\n    a\n    b", ("\n    a", "\n    b")),
            ("ne2\n    b", ("ne2", "\n    b")),
            ("\r\n  a\r\n  b", ("\r\n  a", "\r\n  b")),
            ("\n\n  a", ("\n\n  a", "")),
            ("a", ("a", "")),
        ];
        for (lines, want) in cases {
            assert_eq!(split_first_line(lines), want, "{lines:?}");
        }
    }

    #[test]
    fn empty_answers_are_cached_but_never_typed_into() {
        let mut c = CompletionCache::new(4);
        c.insert(
            key("x", ""),
            CachedSuggestion {
                text: None,
                answered_by: "m".into(),
                then: None,
            },
        );
        assert_eq!(c.lookup(&key("x", "")).map(|v| v.text), Some(None));
        assert_eq!(c.lookup_typed_ahead(&key("xy", "")), None);
    }
}
