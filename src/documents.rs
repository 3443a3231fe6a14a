//! Open documents: one rope and one tree-sitter tree per document, kept in step with the
//! editor's edits. Every change set is applied atomically — a bad edit anywhere in it
//! leaves the document exactly as it was. The tree is edited with every change and
//! reparsed incrementally: at once for ordinary files, in the background for big ones
//! (tree-sitter's incremental reparse grows with the file: ~0.2 ms at 2,000 lines, several
//! ms at 20,000), so a keystroke never waits for it. A parse that runs away is given up, and
//! the document served as plain text until it is reopened. No async, no LSP types:
//! positions come in as [`LineCol`].
//!
//! The store also gathers what a completion takes from the user's other files
//! ([`Documents::for_completion`]): the outlines of other open files, and the chunks of the
//! recent-context ring ([`crate::recent`]), which it feeds from opens, edits, closes and
//! completion requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, TryLockError};

use ropey::Rope;
use tree_sitter::{InputEdit, Parser, Point, Tree};

use crate::position::{self, LineCol, PositionEncoding, PositionError};
use crate::recent::{self, RecentRing, Spot};
use crate::sync::lock;
use crate::syntax::Language;
use crate::syntax::features::{Features, FeaturesMemo, Target, features, selection_target};
use crate::syntax::outline::outline;

/// Documents larger than this are not parsed: they are served as plain text, so that a
/// 50 MB log file opened by accident costs a rope, not a syntax tree.
pub const MAX_PARSED_BYTES: usize = 8 * 1024 * 1024;

/// Documents up to this size are reparsed inside `didChange` (well under a millisecond);
/// bigger ones are reparsed in the background ([`Documents::reparse_deferred`]).
pub const SYNC_REPARSE_BYTES: usize = 128 * 1024;

/// Whether a change left work for [`Documents::reparse_deferred`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Reparse {
    /// The tree matches the text (or the document has no grammar).
    Done,
    /// The tree was edited but not reparsed: run `reparse_deferred` off the request path.
    Deferred,
}

/// What a change set did: the reparse it left, and its edits in byte offsets, in order (each
/// in the offsets of the text as the previous one left it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Changed {
    pub reparse: Reparse,
    pub edits: Vec<ByteEdit>,
}

/// A range of bytes replaced: `start..old_end` of the text before became `start..new_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteEdit {
    pub start: usize,
    pub old_end: usize,
    pub new_end: usize,
}

impl ByteEdit {
    /// Text inserted at `start`, nothing removed.
    pub fn is_insertion(&self) -> bool {
        self.start == self.old_end
    }
}

/// One edit from a `didChange`: a range replaced by text, or (no range) the whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChange {
    pub range: Option<(LineCol, LineCol)>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("document {0} is not open")]
    NotOpen(String),
    /// LSP versions only grow: a change that goes back was made to another text than ours.
    #[error("change to {uri} has version {version}, older than the document's {current}")]
    StaleVersion {
        uri: String,
        version: i32,
        current: i32,
    },
    #[error("change {index} of {uri} (version {version}): {source}")]
    BadChange {
        uri: String,
        version: i32,
        index: usize,
        #[source]
        source: PositionError,
    },
}

/// A cheap, immutable copy of a document at one version (the rope and tree share their
/// storage with the live document), so a request can work without holding the documents
/// lock. One thing is shared rather than copied: the document's features memo, behind its
/// own mutex — [`Snapshot::features`] only tries that lock (and walks without the memo when
/// it is busy), [`Snapshot::warm_features`] waits for it.
#[derive(Clone)]
pub struct Snapshot {
    pub uri: Arc<str>,
    pub language: Language,
    pub version: i32,
    pub rope: Rope,
    /// The syntax tree. For a big file being reparsed in the background it is the previous
    /// tree with the latest edits applied: node positions are right, the structure right
    /// around the newest edits may lag by a keystroke or two.
    pub tree: Option<Tree>,
    /// Whether `tree` was parsed from exactly this text.
    pub tree_is_fresh: bool,
    /// The document's features memo, shared by all its snapshots.
    features_memo: Arc<Mutex<FeaturesMemo>>,
}

impl Snapshot {
    /// The routing features of `target`, walking only what changed since the last call on
    /// this document (see [`FeaturesMemo`]). While the memo is busy (being filled in the
    /// background), a plain walk: a request never waits for it.
    pub fn features(&self, target: &Target) -> Features {
        let (rope, tree, language) = (&self.rope, self.tree.as_ref(), self.language);
        match self.features_memo.try_lock() {
            Ok(mut memo) => memo.features(rope, tree, language, target),
            Err(TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().features(rope, tree, language, target)
            }
            Err(TryLockError::WouldBlock) => features(rope, tree, language, target),
        }
    }

    /// The document as it would be with `text` inserted at byte `at` (as when the user
    /// accepts a suggestion there): a new rope, and the tree edited and reparsed
    /// incrementally (for a file too big to reparse on the spot, edited only). None when
    /// `at` is not a char boundary of the text. The live document is untouched.
    pub fn with_insertion(&self, at: usize, text: &str) -> Option<Snapshot> {
        let at_char = self.rope.try_byte_to_char(at).ok()?;
        if self.rope.try_char_to_byte(at_char).ok()? != at {
            return None;
        }
        let mut rope = self.rope.clone();
        let start_position = ts_point(&rope, at);
        rope.insert(at_char, text);
        let new_end_byte = at + text.len();
        let mut tree = self.tree.clone();
        let mut fresh = self.tree_is_fresh;
        if let Some(tree) = tree.as_mut() {
            tree.edit(&InputEdit {
                start_byte: at,
                old_end_byte: at,
                new_end_byte,
                start_position,
                old_end_position: start_position,
                new_end_position: ts_point(&rope, new_end_byte),
            });
        }
        if rope.len_bytes() <= SYNC_REPARSE_BYTES {
            if let Some(mut parser) = parser_for(self.language) {
                tree = reparse(&mut parser, &rope, tree.as_ref());
            }
        } else {
            fresh = false;
        }
        Some(Snapshot {
            uri: self.uri.clone(),
            language: self.language,
            version: self.version,
            rope,
            tree,
            tree_is_fresh: fresh,
            features_memo: Arc::clone(&self.features_memo),
        })
    }

    /// Fills the features memo with the whole document, so that the first routing decision
    /// on any of its functions finds it there. Takes milliseconds on a big file: run it off
    /// the request path.
    pub fn warm_features(&self) {
        let whole = selection_target(&self.rope, 0..self.rope.len_bytes());
        lock(&self.features_memo).features(&self.rope, self.tree.as_ref(), self.language, &whole);
    }
}

struct Document {
    uri: Arc<str>,
    language: Language,
    version: i32,
    rope: Rope,
    tree: Option<Tree>,
    /// None for plain text, and while a background reparse borrows it.
    parser: Option<Parser>,
    /// Whether `tree` was parsed from the current text.
    fresh: bool,
    /// While a background reparse runs: the edits made since it took its copy, to apply
    /// to its result.
    edits_during_parse: Option<Vec<InputEdit>>,
    /// Whether the whole text was replaced while a background reparse ran (its result is
    /// then of no use).
    replaced_during_parse: bool,
    /// Counts applied change sets.
    revision: u64,
    /// Tells a re-opened document from the one a background reparse started on.
    generation: u64,
    features_memo: Arc<Mutex<FeaturesMemo>>,
    /// When it was last opened or changed, on the store's clock.
    touched: u64,
    /// Its outline, for the revision and budget it was made for.
    outline: Option<(u64, usize, Arc<str>)>,
}

impl Document {
    fn open(
        uri: &str,
        language: Language,
        version: i32,
        text: &str,
        generation: u64,
    ) -> (Document, Reparse) {
        let parser = parser_for(language);
        let parse_now = text.len() <= SYNC_REPARSE_BYTES;
        let deferred = parser.is_some() && !parse_now && text.len() <= MAX_PARSED_BYTES;
        let mut doc = Document {
            uri: uri.into(),
            language,
            version,
            rope: Rope::from_str(text),
            tree: None,
            parser,
            fresh: !deferred,
            edits_during_parse: None,
            replaced_during_parse: false,
            revision: 0,
            generation,
            features_memo: Arc::default(),
            touched: 0,
            outline: None,
        };
        if parse_now {
            doc.parse_now();
        }
        (
            doc,
            if deferred {
                Reparse::Deferred
            } else {
                Reparse::Done
            },
        )
    }

    fn apply(
        &mut self,
        version: i32,
        changes: &[TextChange],
        enc: PositionEncoding,
    ) -> Result<Changed, DocumentError> {
        // Work on copies (O(1) for a rope and a tree) and commit only if every change fits.
        let mut rope = self.rope.clone();
        let mut tree = self.tree.clone();
        let mut full_reparse = false;
        let mut edits = Vec::new();
        let mut byte_edits = Vec::with_capacity(changes.len());
        for (index, change) in changes.iter().enumerate() {
            let bad = |source| DocumentError::BadChange {
                uri: self.uri.to_string(),
                version,
                index,
                source,
            };
            match change.range {
                None => {
                    byte_edits.push(ByteEdit {
                        start: 0,
                        old_end: rope.len_bytes(),
                        new_end: change.text.len(),
                    });
                    rope = Rope::from_str(&change.text);
                    full_reparse = true;
                }
                Some((start, end)) => {
                    let (start_byte, old_end_byte) =
                        position::range_to_bytes(&rope, start, end, enc).map_err(bad)?;
                    let start_position = ts_point(&rope, start_byte);
                    let old_end_position = ts_point(&rope, old_end_byte);
                    let (start_char, end_char) = (
                        rope.byte_to_char(start_byte),
                        rope.byte_to_char(old_end_byte),
                    );
                    rope.remove(start_char..end_char);
                    rope.insert(start_char, &change.text);
                    let new_end_byte = start_byte + change.text.len();
                    let edit = InputEdit {
                        start_byte,
                        old_end_byte,
                        new_end_byte,
                        start_position,
                        old_end_position,
                        new_end_position: ts_point(&rope, new_end_byte),
                    };
                    if let Some(tree) = tree.as_mut() {
                        tree.edit(&edit);
                    }
                    byte_edits.push(ByteEdit {
                        start: start_byte,
                        old_end: old_end_byte,
                        new_end: new_end_byte,
                    });
                    edits.push(edit);
                }
            }
        }
        if full_reparse {
            // Nothing of the old tree can be reused.
            tree = None;
        }
        self.rope = rope;
        self.version = version;
        self.revision += 1;
        self.fresh = false;
        if let Some(pending) = self.edits_during_parse.as_mut() {
            // A background reparse is running: it will pick these up.
            pending.extend(edits);
            self.replaced_during_parse |= full_reparse;
            self.tree = tree;
            return Ok(Changed {
                reparse: Reparse::Done,
                edits: byte_edits,
            });
        }
        self.tree = tree;
        if self.parser.is_none() {
            return Ok(Changed {
                reparse: Reparse::Done,
                edits: byte_edits,
            });
        }
        if self.rope.len_bytes() > MAX_PARSED_BYTES {
            self.tree = None;
            return Ok(Changed {
                reparse: Reparse::Done,
                edits: byte_edits,
            });
        }
        if self.rope.len_bytes() > SYNC_REPARSE_BYTES {
            return Ok(Changed {
                reparse: Reparse::Deferred,
                edits: byte_edits,
            });
        }
        self.parse_now();
        Ok(Changed {
            reparse: Reparse::Done,
            edits: byte_edits,
        })
    }

    /// Parses the current text on the calling thread (incrementally, from the edited tree).
    fn parse_now(&mut self) {
        if let Some(parser) = self.parser.as_mut() {
            self.tree = reparse(parser, &self.rope, self.tree.as_ref());
            self.fresh = true;
            if self.tree.is_none() {
                self.give_up_parsing();
            }
        }
    }

    /// After a parse of its text ran away: the document is served as plain text until it is
    /// opened again, rather than paying for the same runaway parse at every keystroke.
    fn give_up_parsing(&mut self) {
        self.parser = None;
        tracing::warn!(
            uri = &*self.uri,
            bytes = self.rope.len_bytes(),
            "tree-sitter gave up on this text; it is served as plain text until reopened"
        );
        self.tree = None;
        self.fresh = true;
    }

    /// The outline of its definitions (see [`outline`]), made once per revision.
    fn outline(&mut self, max_chars: usize) -> Arc<str> {
        match &self.outline {
            Some((revision, budget, text))
                if *revision == self.revision && *budget == max_chars =>
            {
                Arc::clone(text)
            }
            _ => {
                let text: Arc<str> =
                    outline(&self.rope, self.tree.as_ref(), self.language, max_chars).into();
                self.outline = Some((self.revision, max_chars, Arc::clone(&text)));
                text
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            uri: self.uri.clone(),
            language: self.language,
            version: self.version,
            rope: self.rope.clone(),
            tree: self.tree.clone(),
            tree_is_fresh: self.fresh,
            features_memo: Arc::clone(&self.features_memo),
        }
    }
}

fn parser_for(language: Language) -> Option<Parser> {
    let mut parser = Parser::new();
    parser.set_language(&language.grammar()?).ok()?;
    Some(parser)
}

/// Parses the rope chunk by chunk (no copy of the text), reusing `old` when given. `None`
/// for a parse that runs away (see [`crate::syntax::parse_within_bounds`]); callers parse
/// nothing past [`MAX_PARSED_BYTES`].
fn reparse(parser: &mut Parser, rope: &Rope, old: Option<&Tree>) -> Option<Tree> {
    let len = rope.len_bytes();
    let mut read = |byte: usize, _: Point| -> &[u8] {
        if byte >= len {
            return &[];
        }
        let (chunk, chunk_start, _, _) = rope.chunk_at_byte(byte);
        &chunk.as_bytes()[byte - chunk_start..]
    };
    crate::syntax::parse_within_bounds(parser, len, &mut read, old)
}

/// Tree-sitter's point for a byte offset: row and byte column. Rows follow the rope's line
/// breaks, which agree with tree-sitter's except for a lone `\r` (then only node rows are
/// off; byte offsets, which is what Pilotfish uses, stay exact).
fn ts_point(rope: &Rope, byte: usize) -> Point {
    let line = rope.byte_to_line(byte);
    Point {
        row: line,
        column: byte - rope.line_to_byte(line),
    }
}

/// The file path inside a `file://` URI (percent-decoded); other URIs are returned as is.
pub fn path_of_uri(uri: &str) -> String {
    let Some(rest) = uri.strip_prefix("file://") else {
        return uri.to_string();
    };
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `file://` URI of an absolute path, percent-encoding every byte but the unreserved
/// ones and `/`, so that [`path_of_uri`] gives the path back.
pub fn file_uri(path: &str) -> String {
    let mut uri = String::with_capacity(path.len() + 8);
    uri.push_str("file://");
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// All open documents, keyed by URI.
#[derive(Default)]
pub struct Documents {
    open: HashMap<String, Document>,
    generations: u64,
    /// Counts opens and changes, to order documents by how recently they were touched.
    clock: u64,
    /// Chunks of what the user just touched, for completions in their other files.
    recent: RecentRing,
}

/// Context from another file for a completion: the file's URI and a text from it (its
/// outline, or a chunk of its code the user touched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedFile {
    pub uri: Arc<str>,
    pub text: Arc<str>,
}

/// What a completion takes from other files (all zero when no model of the session takes
/// any): the outlines of up to `outline_files` other open files of the language family,
/// each at most `outline_chars` long, then up to `recent_chunks` chunks of the recent-context
/// ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OtherFiles {
    pub outline_files: usize,
    pub outline_chars: usize,
    pub recent_chunks: usize,
}

impl Documents {
    /// Opens (or re-opens, replacing) a document. A big one is parsed later
    /// ([`Reparse::Deferred`]), so opening it costs only the rope.
    pub fn open(&mut self, uri: &str, language: Language, version: i32, text: &str) -> Reparse {
        self.generations += 1;
        self.clock += 1;
        let (mut doc, reparse) = Document::open(uri, language, version, text, self.generations);
        doc.touched = self.clock;
        self.open.insert(uri.to_string(), doc);
        self.note_activity(uri, None);
        reparse
    }

    /// Opens a document and parses it at once, whatever its size: for one-shot commands and
    /// benchmarks, where nobody else waits.
    pub fn open_parsed(&mut self, uri: &str, language: Language, version: i32, text: &str) {
        if self.open(uri, language, version, text) == Reparse::Deferred {
            self.reparse_now(uri);
        }
    }

    /// Reparses a document on the calling thread, holding the store.
    pub fn reparse_now(&mut self, uri: &str) {
        if let Some(doc) = self.open.get_mut(uri) {
            doc.parse_now();
        }
    }

    /// Brings a document's tree up to date after [`Reparse::Deferred`]. Call it off the
    /// request path (it parses without holding the lock, and loops while edits keep
    /// arriving during a parse). Only one runs per document at a time; extra calls return.
    pub fn reparse_deferred(store: &Mutex<Documents>, uri: &str) {
        loop {
            let (mut parser, rope, old_tree, generation, revision) = {
                let mut docs = lock(store);
                let Some(doc) = docs.open.get_mut(uri) else {
                    return;
                };
                if doc.fresh || doc.edits_during_parse.is_some() {
                    return;
                }
                if doc.rope.len_bytes() > MAX_PARSED_BYTES {
                    // Grown past the limit while the last parse ran: plain text, as `apply`
                    // makes it (the parser stays, for when it shrinks).
                    doc.tree = None;
                    doc.fresh = true;
                    return;
                }
                let Some(parser) = doc.parser.take() else {
                    return;
                };
                doc.edits_during_parse = Some(Vec::new());
                doc.replaced_during_parse = false;
                (
                    parser,
                    doc.rope.clone(),
                    doc.tree.clone(),
                    doc.generation,
                    doc.revision,
                )
            };
            let parsed = reparse(&mut parser, &rope, old_tree.as_ref());
            let mut docs = lock(store);
            let Some(doc) = docs
                .open
                .get_mut(uri)
                .filter(|d| d.generation == generation)
            else {
                return;
            };
            let edits = doc.edits_during_parse.take().unwrap_or_default();
            if parsed.is_none() && !doc.replaced_during_parse {
                doc.give_up_parsing();
                return;
            }
            doc.parser = Some(parser);
            let mut tree = parsed;
            if doc.replaced_during_parse {
                tree = None;
            } else if let Some(tree) = tree.as_mut() {
                for edit in &edits {
                    tree.edit(edit);
                }
            }
            doc.tree = tree;
            drop(rope);
            if doc.revision == revision {
                doc.fresh = true;
                return;
            }
        }
    }

    /// Applies one `didChange`: all of `changes` in order, or none of them. A change whose
    /// version is older than the document's is refused whole.
    pub fn change(
        &mut self,
        uri: &str,
        version: i32,
        changes: &[TextChange],
        enc: PositionEncoding,
    ) -> Result<Changed, DocumentError> {
        let doc = self
            .open
            .get_mut(uri)
            .ok_or_else(|| DocumentError::NotOpen(uri.to_string()))?;
        if version < doc.version {
            return Err(DocumentError::StaleVersion {
                uri: uri.to_string(),
                version,
                current: doc.version,
            });
        }
        let changed = doc.apply(version, changes, enc)?;
        self.clock += 1;
        doc.touched = self.clock;
        // Where the user edits (the first change of a multi-cursor set; none for a whole-text
        // replacement).
        let at = changes
            .first()
            .and_then(|c| c.range)
            .map(|(start, _)| start.line as usize);
        self.note_activity(uri, at);
        Ok(changed)
    }

    /// A completion request in `uri` at `line` (None: a request the engine makes on its own,
    /// with no position from the editor): the document's snapshot and the context the
    /// request takes from other files, as `wanted` says — outlines first, then the
    /// recent-context chunks, each part in its own stable order so that the model server's
    /// prompt cache keeps the prompt's start. The request's line counts as where the user is.
    pub fn for_completion(
        &mut self,
        uri: &str,
        line: Option<u32>,
        wanted: &OtherFiles,
    ) -> Result<(Snapshot, Vec<RelatedFile>), DocumentError> {
        if let Some(line) = line {
            self.note_activity(uri, Some(line as usize));
        }
        let snapshot = self.snapshot(uri)?;
        let mut related = self.outlines(uri, wanted.outline_files, wanted.outline_chars);
        if wanted.recent_chunks > 0 {
            let line = line
                .map(|l| l as usize)
                .or_else(|| self.recent.focus_line(uri))
                .unwrap_or(0);
            let around = recent::words_around(&snapshot.rope, line);
            let family = snapshot.language.family();
            related.extend(
                self.recent
                    .pick(uri, family, &around, wanted.recent_chunks)
                    .into_iter()
                    .map(|c| RelatedFile {
                        uri: Arc::clone(&c.uri),
                        text: Arc::clone(&c.text),
                    }),
            );
        }
        Ok((snapshot, related))
    }

    /// The outlines (each at most `max_chars`) of up to `max_files` other open documents of
    /// `uri`'s language family: the ones most recently opened or changed, in the order they
    /// were opened (so that editing one of them does not reorder the prompt). Outlines are
    /// made once per revision.
    fn outlines(&mut self, uri: &str, max_files: usize, max_chars: usize) -> Vec<RelatedFile> {
        let Some(family) = self.open.get(uri).map(|d| d.language.family()) else {
            return Vec::new();
        };
        if max_files == 0 {
            return Vec::new();
        }
        let mut others: Vec<&mut Document> = self
            .open
            .values_mut()
            .filter(|d| d.language.family() == family && d.tree.is_some() && &*d.uri != uri)
            .collect();
        others.sort_unstable_by_key(|d| std::cmp::Reverse(d.touched));
        let mut chosen: Vec<(u64, RelatedFile)> = others
            .into_iter()
            .map(|d| {
                let file = RelatedFile {
                    uri: Arc::clone(&d.uri),
                    text: d.outline(max_chars),
                };
                (d.generation, file)
            })
            .filter(|(_, f)| !f.text.is_empty())
            .take(max_files)
            .collect();
        chosen.sort_unstable_by_key(|(generation, _)| *generation);
        chosen.into_iter().map(|(_, f)| f).collect()
    }

    /// Activity in `uri` (at `line` when the event has a position): when it leaves a spot
    /// behind (the user moved to another document, or far away in this one), the chunk there
    /// goes into the recent-context ring. Cuts at most a chunk's worth of text.
    fn note_activity(&mut self, uri: &str, line: Option<usize>) {
        let Some(doc) = self.open.get(uri) else {
            return;
        };
        let uri = Arc::clone(&doc.uri);
        if let Some(spot) = self.recent.touch(&uri, line) {
            self.keep_recent(&spot);
        }
    }

    /// Cuts the chunk at `spot` (if its document is open) into the recent-context ring.
    fn keep_recent(&mut self, spot: &Spot) {
        let Some(doc) = self.open.get(&*spot.uri) else {
            return;
        };
        let chunk = recent::cut(
            &doc.rope,
            doc.tree.as_ref(),
            doc.language,
            &doc.uri,
            spot.line,
        );
        if let Some(chunk) = chunk {
            self.recent.add(chunk);
        }
    }

    /// Closes a document; where the user last was in it stays in the recent-context ring.
    pub fn close(&mut self, uri: &str) -> bool {
        if let Some(spot) = self.recent.leave(uri) {
            self.keep_recent(&spot);
        }
        self.open.remove(uri).is_some()
    }

    pub fn snapshot(&self, uri: &str) -> Result<Snapshot, DocumentError> {
        self.open
            .get(uri)
            .map(Document::snapshot)
            .ok_or_else(|| DocumentError::NotOpen(uri.to_string()))
    }

    /// The current version of an open document.
    pub fn version(&self, uri: &str) -> Option<i32> {
        self.open.get(uri).map(|d| d.version)
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_uris_and_back() {
        assert_eq!(path_of_uri("file:///home/a%20b/x.rs"), "/home/a b/x.rs");
        assert_eq!(path_of_uri("file:///t/%E6%97%A5.py"), "/t/日.py");
        assert_eq!(path_of_uri("file:///t/100%"), "/t/100%");
        assert_eq!(path_of_uri("file:///t/%zz"), "/t/%zz");
        assert_eq!(path_of_uri("untitled:1"), "untitled:1");
        for path in [
            "/home/a b/x.rs",
            "/t/日.py",
            "/t/100%41",
            "/w/x#y?.rs",
            "/a/b",
        ] {
            assert_eq!(path_of_uri(&file_uri(path)), path, "{}", file_uri(path));
        }
        assert_eq!(file_uri("/home/a b/x.rs"), "file:///home/a%20b/x.rs");
    }

    fn lc(line: u32, col: u32) -> LineCol {
        LineCol { line, col }
    }

    fn edit(start: (u32, u32), end: (u32, u32), text: &str) -> TextChange {
        TextChange {
            range: Some((lc(start.0, start.1), lc(end.0, end.1))),
            text: text.into(),
        }
    }

    fn text(docs: &Documents, uri: &str) -> String {
        docs.snapshot(uri)
            .map(|s| s.rope.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn incremental_edits_keep_tree_equal_to_a_fresh_parse() {
        let mut docs = Documents::default();
        let src = "fn main() {\n    let x = 1;\n}\n";
        assert_eq!(
            docs.open("file:///a.rs", Language::Rust, 1, src),
            Reparse::Done
        );
        let edits = [
            edit((1, 13), (1, 13), " + 2"),
            edit((1, 8), (1, 9), "y😀"),
            edit((2, 0), (2, 1), "}\nfn other() {}"),
        ];
        for (i, e) in edits.iter().enumerate() {
            let reparse = docs.change(
                "file:///a.rs",
                2 + i as i32,
                std::slice::from_ref(e),
                PositionEncoding::Utf16,
            );
            assert_eq!(
                reparse.map(|c| c.reparse),
                Ok(Reparse::Done),
                "small files reparse at once"
            );
        }
        let snap = docs.snapshot("file:///a.rs").unwrap();
        let now = snap.rope.to_string();
        assert_eq!(now, "fn main() {\n    let y😀 = 1 + 2;\n}\nfn other() {}\n");
        let fresh = crate::syntax::parse(Language::Rust, &now).unwrap();
        assert_eq!(
            snap.tree.unwrap().root_node().to_sexp(),
            fresh.root_node().to_sexp()
        );
        assert_eq!(snap.version, 4);
    }

    /// A snapshot with a suggestion inserted is what the editor's document becomes when the
    /// user accepts it: the same text, and the tree of a fresh parse; the live document
    /// stays as it was.
    #[test]
    fn a_snapshot_with_an_insertion_matches_the_accepted_document() {
        let mut docs = Documents::default();
        let src = "def f(a😀):\n    return \n";
        docs.open_parsed("u", Language::Python, 1, src);
        let snap = docs.snapshot("u").unwrap();
        let at = src.find("return ").unwrap() + "return ".len();
        let accepted = snap.with_insertion(at, "a + 1\n    # 日本").unwrap();
        let text = accepted.rope.to_string();
        assert_eq!(text, "def f(a😀):\n    return a + 1\n    # 日本\n");
        let fresh = crate::syntax::parse(Language::Python, &text).unwrap();
        assert_eq!(
            accepted.tree.unwrap().root_node().to_sexp(),
            fresh.root_node().to_sexp()
        );
        assert!(accepted.tree_is_fresh);
        assert_eq!(docs.snapshot("u").unwrap().rope.to_string(), src);
        // Inside a multi-byte character, or past the end: no snapshot.
        let inside_emoji = src.find('😀').unwrap() + 1;
        assert!(snap.with_insertion(inside_emoji, "x").is_none());
        assert!(snap.with_insertion(src.len() + 1, "x").is_none());
        assert!(snap.with_insertion(src.len(), "x").is_some());
    }

    #[test]
    fn a_bad_change_leaves_the_document_untouched() {
        let mut docs = Documents::default();
        docs.open_parsed("u", Language::Python, 1, "a = 1\nb = 2\n");
        let changes = [edit((0, 0), (0, 0), "# ok\n"), edit((40, 0), (40, 1), "x")];
        let err = docs
            .change("u", 2, &changes, PositionEncoding::Utf16)
            .unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        assert_eq!(text(&docs, "u"), "a = 1\nb = 2\n");
        assert_eq!(docs.version("u"), Some(1));
        let inverted = [edit((1, 3), (0, 1), "x")];
        assert!(
            docs.change("u", 3, &inverted, PositionEncoding::Utf16)
                .is_err()
        );
        assert_eq!(text(&docs, "u"), "a = 1\nb = 2\n");
    }

    #[test]
    fn a_change_with_an_older_version_is_refused_whole() {
        let mut docs = Documents::default();
        docs.open_parsed("u", Language::Python, 5, "a = 1\n");
        let err = docs.change(
            "u",
            4,
            &[edit((0, 0), (0, 0), "#")],
            PositionEncoding::Utf16,
        );
        assert!(
            matches!(
                err,
                Err(DocumentError::StaleVersion {
                    version: 4,
                    current: 5,
                    ..
                })
            ),
            "{err:?}"
        );
        assert_eq!(
            (text(&docs, "u").as_str(), docs.version("u")),
            ("a = 1\n", Some(5))
        );
        // The same version again is applied (some editors repeat it); a newer one too.
        for version in [5, 9] {
            let applied = docs.change(
                "u",
                version,
                &[edit((0, 0), (0, 0), "#")],
                PositionEncoding::Utf16,
            );
            assert_eq!(applied.map(|c| c.reparse), Ok(Reparse::Done));
        }
        assert_eq!(
            (text(&docs, "u").as_str(), docs.version("u")),
            ("##a = 1\n", Some(9))
        );
    }

    #[test]
    fn unopened_documents_are_an_error() {
        let mut docs = Documents::default();
        let err = docs.change(
            "nope",
            1,
            &[edit((0, 0), (0, 0), "x")],
            PositionEncoding::Utf16,
        );
        assert_eq!(err, Err(DocumentError::NotOpen("nope".into())));
        assert!(docs.snapshot("nope").is_err());
    }

    #[test]
    fn full_text_change_and_plain_text() {
        let mut docs = Documents::default();
        docs.open_parsed("u", Language::PlainText, 1, "hello");
        assert!(docs.snapshot("u").unwrap().tree.is_none());
        let replaced = docs.change(
            "u",
            2,
            &[TextChange {
                range: None,
                text: "bye\r\nnow".into(),
            }],
            PositionEncoding::Utf8,
        );
        assert_eq!(replaced.map(|c| c.reparse), Ok(Reparse::Done));
        let edited = docs.change("u", 3, &[edit((1, 3), (1, 3), "!")], PositionEncoding::Utf8);
        assert_eq!(edited.map(|c| c.reparse), Ok(Reparse::Done));
        assert_eq!(text(&docs, "u"), "bye\r\nnow!");
    }

    #[test]
    fn a_text_whose_parse_runs_away_is_served_as_plain_text() {
        let mut docs = Documents::default();
        let runaway = crate::syntax::test_support::runaway_tsx();
        docs.open_parsed("t", Language::Tsx, 1, &runaway);
        let snap = docs.snapshot("t").unwrap();
        assert!(snap.tree.is_none() && snap.tree_is_fresh);
        // Edits still apply, and nothing parses again (the same runaway at every keystroke).
        let fixed = docs.change("t", 2, &[edit((0, 1), (0, 3), "")], PositionEncoding::Utf16);
        assert_eq!(fixed.map(|c| c.reparse), Ok(Reparse::Done));
        assert_eq!(text(&docs, "t"), runaway.replacen("``", "", 1));
        assert!(docs.snapshot("t").unwrap().tree.is_none());
        // Opened again, its text is parsed again.
        docs.open_parsed("t", Language::Tsx, 3, "const a = <div />;");
        assert!(docs.snapshot("t").unwrap().tree.is_some());
    }

    fn big_rust() -> String {
        (0..6_000)
            .map(|i| format!("fn f{i}(x: u32) -> u32 {{\n    x + {i}\n}}\n"))
            .collect()
    }

    fn assert_tree_matches_text(docs: &Documents, uri: &str) {
        let snap = docs.snapshot(uri).unwrap();
        assert!(snap.tree_is_fresh);
        let fresh = crate::syntax::parse(Language::Rust, &snap.rope.to_string()).unwrap();
        assert_eq!(
            snap.tree.unwrap().root_node().to_sexp(),
            fresh.root_node().to_sexp()
        );
    }

    #[test]
    fn big_files_reparse_in_the_background() {
        let store = Mutex::new(Documents::default());
        let text = big_rust();
        assert!(text.len() > SYNC_REPARSE_BYTES);
        let opened = lock(&store).open("big", Language::Rust, 1, &text);
        assert_eq!(opened, Reparse::Deferred);
        assert!(!lock(&store).snapshot("big").unwrap().tree_is_fresh);
        Documents::reparse_deferred(&store, "big");
        assert_tree_matches_text(&lock(&store), "big");

        let change = [edit((3000, 4), (3000, 5), "yy")];
        let r = lock(&store).change("big", 2, &change, PositionEncoding::Utf16);
        assert_eq!(r.map(|c| c.reparse), Ok(Reparse::Deferred));
        let snap = lock(&store).snapshot("big").unwrap();
        assert!(!snap.tree_is_fresh);
        assert!(snap.tree.is_some(), "the edited old tree serves meanwhile");
        Documents::reparse_deferred(&store, "big");
        assert_tree_matches_text(&lock(&store), "big");
    }

    #[test]
    fn edits_during_a_background_reparse_are_not_lost() {
        let store = std::sync::Arc::new(Mutex::new(Documents::default()));
        let _ = lock(&store).open("big", Language::Rust, 1, &big_rust());
        let parser = {
            let store = store.clone();
            std::thread::spawn(move || Documents::reparse_deferred(&store, "big"))
        };
        for i in 0..50u32 {
            let change = [edit((i * 3 + 1, 4), (i * 3 + 1, 4), "1 + ")];
            let r = lock(&store).change("big", 2 + i as i32, &change, PositionEncoding::Utf16);
            assert!(r.is_ok());
            if i == 25 {
                // Whichever way the threads interleave, a later call finishes the job.
                Documents::reparse_deferred(&store, "big");
            }
        }
        parser.join().unwrap();
        Documents::reparse_deferred(&store, "big");
        assert_tree_matches_text(&lock(&store), "big");
    }

    /// A file past [`MAX_PARSED_BYTES`] is plain text, not a parse given up: once it shrinks
    /// (here after a background reparse found it too big) it is parsed again.
    #[test]
    fn a_file_too_big_to_parse_is_parsed_again_once_it_shrinks() {
        let store = Mutex::new(Documents::default());
        let replace = |version: i32, text: String| {
            let change = [TextChange { range: None, text }];
            let r = lock(&store).change("f", version, &change, PositionEncoding::Utf16);
            assert!(r.is_ok());
        };
        let _ = lock(&store).open("f", Language::Rust, 1, "fn f() {}\n");
        replace(2, "// x\n".repeat(MAX_PARSED_BYTES / 5 + 1));
        Documents::reparse_deferred(&store, "f");
        assert!(lock(&store).snapshot("f").unwrap().tree.is_none());
        replace(3, "fn g() {}\n".into());
        assert!(lock(&store).snapshot("f").unwrap().tree.is_some());
    }

    fn outlines_only(max: usize) -> OtherFiles {
        OtherFiles {
            outline_files: max,
            outline_chars: 1000,
            recent_chunks: 0,
        }
    }

    fn related(docs: &mut Documents, uri: &str, wanted: &OtherFiles) -> Vec<RelatedFile> {
        docs.for_completion(uri, None, wanted)
            .map(|(_, related)| related)
            .unwrap_or_default()
    }

    /// Other open files of the language family: the most recently touched ones, in the
    /// order they were opened (touching one does not reorder them); outlines are made once
    /// per revision.
    #[test]
    fn outlines_of_other_files_by_family_recency_and_open_order() {
        let mut docs = Documents::default();
        docs.open_parsed(
            "file:///w/a.ts",
            Language::TypeScript,
            1,
            "function a() {}\n",
        );
        docs.open_parsed("file:///w/b.tsx", Language::Tsx, 1, "function b() {}\n");
        docs.open_parsed(
            "file:///w/c.py",
            Language::Python,
            1,
            "def c():\n    pass\n",
        );
        docs.open_parsed("file:///w/d.ts", Language::TypeScript, 1, "const x = 1;\n");
        docs.open_parsed("file:///w/main.ts", Language::TypeScript, 1, "m");
        let names = |docs: &mut Documents, max| -> Vec<String> {
            related(docs, "file:///w/main.ts", &outlines_only(max))
                .iter()
                .map(|f| format!("{} {}", f.uri, f.text.trim()))
                .collect()
        };
        // d.ts has no definitions: nothing to send for it.
        let both = [
            "file:///w/a.ts function a() {}",
            "file:///w/b.tsx function b() {}",
        ];
        assert_eq!(names(&mut docs, 5), both);
        assert_eq!(names(&mut docs, 1), ["file:///w/b.tsx function b() {}"]);
        let before = related(&mut docs, "file:///w/main.ts", &outlines_only(1));
        let change = edit((0, 10), (0, 10), "2");
        let reparse = docs.change("file:///w/a.ts", 2, &[change], PositionEncoding::Utf16);
        assert_eq!(reparse.map(|c| c.reparse), Ok(Reparse::Done));
        assert_eq!(names(&mut docs, 1), ["file:///w/a.ts function a2() {}"]);
        // a.ts was touched last, and still comes first: the order is the opening order.
        let now = related(&mut docs, "file:///w/main.ts", &outlines_only(2));
        assert_eq!(&*now[0].text, "function a2() {}\n");
        // b.tsx did not change: its outline is the one made before.
        assert!(Arc::ptr_eq(&now[1].text, &before[0].text));
        assert!(related(&mut docs, "file:///w/closed.ts", &outlines_only(3)).is_empty());
        assert!(related(&mut docs, "file:///w/main.ts", &OtherFiles::default()).is_empty());
    }

    /// The recent-context ring through the store: an edit in one file, then a request in
    /// another, brings the edited function; the same place touched again unchanged leaves the
    /// context as it was; a chunk much like the code at the cursor is left out; a closed
    /// document's chunk stays; nothing when the session wants none.
    #[test]
    fn recent_chunks_follow_edits_and_requests() {
        let wanted = OtherFiles {
            outline_files: 0,
            outline_chars: 0,
            recent_chunks: 4,
        };
        let util = "import os\n\n\ndef parse_config(path):\n    with open(path) as f:\n        text = f.read()\n    return dict(line.split('=') for line in text.splitlines())\n";
        let mut docs = Documents::default();
        docs.open_parsed("file:///w/util.py", Language::Python, 1, util);
        docs.open_parsed(
            "file:///w/main.py",
            Language::Python,
            1,
            "def main():\n    pass\n",
        );
        // Opened only, never touched at a position: no chunk.
        assert!(related(&mut docs, "file:///w/main.py", &wanted).is_empty());
        let typed = [edit((5, 23), (5, 23), " ")];
        let r = docs.change("file:///w/util.py", 2, &typed, PositionEncoding::Utf16);
        assert_eq!(r.map(|c| c.reparse), Ok(Reparse::Done));
        let (_, got) = docs
            .for_completion("file:///w/main.py", Some(1), &wanted)
            .unwrap();
        let texts: Vec<&str> = got.iter().map(|f| &*f.text).collect();
        let function = &util[util.find("def parse").unwrap()..].replace("read()", "read() ");
        assert_eq!(texts, [function.as_str()]);
        assert_eq!(&*got[0].uri, "file:///w/util.py");
        // Back to util.py without changing it, and back again: the same context, same text.
        let (_, again) = docs
            .for_completion("file:///w/util.py", Some(5), &wanted)
            .unwrap();
        assert!(
            again.is_empty(),
            "util.py's own chunk is not context for util.py"
        );
        let (_, again) = docs
            .for_completion("file:///w/main.py", Some(1), &wanted)
            .unwrap();
        assert!(Arc::ptr_eq(&again[0].text, &got[0].text));
        // A file whose cursor sits in a copy of that function: the chunk is left out.
        docs.open_parsed("file:///w/copy.py", Language::Python, 1, function);
        let (_, near_copy) = docs
            .for_completion("file:///w/copy.py", Some(2), &wanted)
            .unwrap();
        assert!(near_copy.is_empty(), "{near_copy:?}");
        // Closing util.py keeps its chunk; a session that wants none gets none.
        assert!(docs.close("file:///w/util.py"));
        assert_eq!(related(&mut docs, "file:///w/main.py", &wanted).len(), 1);
        assert!(related(&mut docs, "file:///w/main.py", &OtherFiles::default()).is_empty());
    }

    /// After the open-time warm-up, the first features of any function of the file come
    /// from the memo (one node visited: the function's own); while the memo is busy, a
    /// plain walk gives the same features.
    #[test]
    fn warmed_memo_knows_every_function_and_a_busy_memo_is_not_waited_for() {
        let text: String = (0..6)
            .map(|f| {
                let body: String = (0..20)
                    .map(|i| format!("    if x > {i} and os.system(x):\n        x = x + {i}\n"))
                    .collect();
                format!("def f{f}(x):\n{body}    return x\n\n")
            })
            .collect();
        let mut docs = Documents::default();
        docs.open_parsed("file:///w/a.py", Language::Python, 1, &text);
        let snap = docs.snapshot("file:///w/a.py").unwrap();
        snap.warm_features();
        for f in 0..6 {
            let cursor = text.find(&format!("def f{f}")).unwrap() + 10;
            let target = crate::syntax::features::enclosing_target(
                &snap.rope,
                snap.tree.as_ref(),
                Language::Python,
                cursor,
            );
            let plain = features(&snap.rope, snap.tree.as_ref(), Language::Python, &target);
            assert_eq!(snap.features(&target), plain, "f{f}");
            assert_eq!(lock(&snap.features_memo).last_walk_nodes(), 1, "f{f}");
            let busy = lock(&snap.features_memo);
            assert_eq!(snap.features(&target), plain, "f{f}, memo busy");
            drop(busy);
        }
    }
}
