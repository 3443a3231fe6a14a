//! What tree-sitter tells about the target of a request — the code a code action works on,
//! or the spot of a completion: the target itself (enclosing function/method/class, else
//! the file), its size, branchiness, nesting, calls to security-sensitive APIs and syntax
//! errors. These features drive routing. Pure and synchronous; what a definition, a branch
//! or a call is comes from the language's spec (`lang/`), and which calls are sensitive
//! from `sensitive.rs`.
//!
//! Invariants:
//! - One walk: the features of a target come from a single pass over the nodes that
//!   intersect it, with one reused stack and one reused callee buffer; per node it reads
//!   the kind id and looks it up in a per-language table (built once, immutable), so no
//!   strings are compared per node. Allocations happen only for the sensitive calls found.
//! - Incremental: with a [`FeaturesMemo`] (one per document), the walk keeps what each
//!   larger subtree holds below its root, keyed by its content (kind, node count, hash of
//!   its text), and next time adds that instead of walking a subtree it has seen. A
//!   summary depends only on the subtree: its depths and lines are relative to its root,
//!   and its root's own contribution (which depends on the parent) is not in it.
//!   Tree-sitter's `Node::id` cannot be the key: it is the address of the node's slot in
//!   its parent, which changes whenever the parent is rebuilt, and an edit rebuilds every
//!   ancestor of the edited node.
//! - Finding the target descends once from the root to the cursor; it never scans the
//!   document's text.
//! - Never panics: cursors, selections and the node ranges of a possibly stale tree are
//!   clamped to the rope and to char boundaries.
//! - A target is a named unit a person would ask about — a function, method, or (outside
//!   any function) a class/struct/impl/trait/interface/enum. Closures and lambdas are not
//!   targets: the function around them is. Namespaces and modules are not targets.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use ropey::Rope;
use tree_sitter::{Node, Tree, TreeCursor};
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use super::Language;
use super::lang::{CallShape, Def, Item, LanguageSpec, Name, Role};
use super::sensitive::Matcher;
use crate::position::{clamp_range, floor, for_each_chunk};
use crate::tokens::tokens_for_chars;

pub use super::lang::SensitiveKind;

/// The code a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Byte range in the document.
    pub range: Range<usize>,
    /// The tree-sitter node kind (`function_item`, `class_definition`, …), `"selection"` for
    /// a user selection, `"file"` for a whole small file, or `"region"` for lines around the
    /// cursor in a large one. A Python definition with decorators keeps its own kind
    /// (`function_definition`) with the range of the `decorated_definition`; a JS/TS
    /// function assigned to a variable has the kind of the function (`arrow_function`,
    /// `function_expression`) and the range of the whole declaration.
    pub kind: String,
    /// The function/class name, when it has one (`impl` blocks: `Type` or `Trait for Type`;
    /// C++ out-of-class methods: `Class::method`).
    pub name: Option<String>,
}

impl Target {
    /// The zero-based first and last lines of the target (a range that ends right after a
    /// line break ends on the line of that break).
    pub fn line_span(&self, rope: &Rope) -> (usize, usize) {
        line_span(rope, &self.range)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveCall {
    pub kind: SensitiveKind,
    /// Zero-based line in the document (in a memo summary: from the subtree's first line).
    pub line: u32,
    /// The call's source text, trimmed to one line (shared with the memo).
    pub text: Arc<str>,
}

/// The routing features of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    pub language: Language,
    pub node_kind: String,
    pub lines: u32,
    /// Estimated tokens of the target's text.
    pub tokens: u32,
    /// Branch points: if/else-if, loops, match/switch arms and cases (not the wildcard or
    /// `default`), catch/except, ternaries, `&&`/`||` (and `??`).
    pub branches: u32,
    /// Deepest nesting of control constructs (if, loops, match/switch, try, with), closures
    /// and bare blocks inside the target; the target itself is depth 0, so a flat function
    /// is 0 and an `if` inside a loop is 2. An `else if` stays at the depth of its `if`.
    pub max_nesting: u32,
    pub sensitive_calls: Vec<SensitiveCall>,
    /// ERROR or MISSING nodes inside the target.
    pub syntax_errors: u32,
}

impl Features {
    /// The features of a completion spot when no rule needs the target's: just the language.
    pub fn at_cursor(language: Language) -> Features {
        Features {
            language,
            node_kind: "cursor".into(),
            lines: 0,
            tokens: 0,
            branches: 0,
            max_nesting: 0,
            sensitive_calls: Vec::new(),
            syntax_errors: 0,
        }
    }

    /// Cyclomatic-style complexity: branch points + 1.
    pub fn complexity(&self) -> u32 {
        self.branches + 1
    }

    pub fn is_sensitive(&self) -> bool {
        !self.sensitive_calls.is_empty()
    }
}

/// A file with at most this many lines is a target as a whole when the cursor is outside
/// any definition; so is a top-level node of at most this many lines in a larger file.
pub const SMALL_FILE_LINES: usize = 200;
/// The size of a `"region"` target, in lines (about half above the cursor, half below).
pub const REGION_LINES: usize = 60;
/// Caps on what one target reports.
const MAX_SENSITIVE_CALLS: usize = 64;
const MAX_CALL_TEXT_CHARS: usize = 160;
const MAX_NAME_CHARS: usize = 120;

/// The target at `cursor` (a byte offset, clamped): the innermost enclosing function,
/// method or constructor; else, outside any function, the innermost class/struct/impl/
/// trait/interface/enum; else the whole file when it is small (`"file"`); else the
/// top-level node at the cursor when it is small and not a namespace/module; else the
/// `REGION_LINES` lines around the cursor (`"region"`). Plain text: the file or the region.
///
/// Preceding doc comments and Rust attributes are not included (they are siblings in the
/// tree); Python decorators and C++ `template <…>` headers are (they wrap the definition).
pub fn enclosing_target(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    cursor: usize,
) -> Target {
    let cursor = floor(rope, cursor);
    let spec = language.spec();
    let root = match tree {
        Some(tree) if spec.grammar.is_some() => tree.root_node(),
        _ => return file_or_region(rope, cursor),
    };
    let path = path_to(root, before_blanks(rope, cursor));
    if let Some(target) = definition_on_path(rope, spec, &path) {
        return target;
    }
    if line_count(rope) <= SMALL_FILE_LINES {
        return file_target(rope);
    }
    path.get(1)
        .filter(|top| is_region_candidate(rope, spec, top))
        .map(|top| Target {
            range: clamp_range(rope, top.byte_range()),
            kind: top.kind().to_string(),
            name: top
                .child_by_field_name("name")
                .map(|n| one_line_text(rope, n.byte_range(), MAX_NAME_CHARS)),
        })
        .unwrap_or_else(|| region(rope, cursor))
}

/// The user's selection as a target (`"selection"`), clamped to the text and to char
/// boundaries; a reversed range is put in order.
pub fn selection_target(rope: &Rope, range: Range<usize>) -> Target {
    let (a, b) = (floor(rope, range.start), floor(rope, range.end));
    Target {
        range: a.min(b)..a.max(b),
        kind: "selection".into(),
        name: None,
    }
}

/// Computes the features of the target in the document: one walk over the nodes that
/// intersect its range. A node is counted when it starts inside the range (or is empty at
/// its end); nodes that only enclose the range are walked through, not counted.
pub fn features(rope: &Rope, tree: Option<&Tree>, language: Language, target: &Target) -> Features {
    walk_features(rope, tree, language, target, None).0
}

/// What a document's earlier features walks found, for [`FeaturesMemo::features`] to skip
/// the subtrees an edit did not touch. A subtree is known by its content (kind, node count,
/// error flag and a 128-bit hash of its text), so it is found again wherever an edit moved
/// it and whichever tree it is in.
pub struct FeaturesMemo {
    language: Option<Language>,
    units: UnitMap,
    /// Counts calls; an entry remembers the last call that used it.
    calls: u64,
    /// Subtrees with more nodes than this below their root may be remembered.
    min_descendants: usize,
    /// Nodes the last walk visited.
    last_walk_nodes: usize,
}

/// Past this many subtrees, the memo forgets those that the last `MEMO_KEEP_CALLS` calls
/// did not use (the versions of a statement that typing left behind, functions not looked
/// at in a while). A whole 20,000-line file fits under it.
const MEMO_MAX_UNITS: usize = 16_384;
const MEMO_KEEP_CALLS: u64 = 256;

impl Default for FeaturesMemo {
    fn default() -> FeaturesMemo {
        FeaturesMemo {
            language: None,
            units: UnitMap::default(),
            calls: 0,
            min_descendants: MEMO_MIN_DESCENDANTS,
            last_walk_nodes: 0,
        }
    }
}

impl std::fmt::Debug for FeaturesMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeaturesMemo")
            .field("language", &self.language)
            .field("units", &self.units.len())
            .field("last_walk_nodes", &self.last_walk_nodes)
            .finish_non_exhaustive()
    }
}

impl FeaturesMemo {
    /// [`features`], reusing what earlier calls on this document found: equal results, but
    /// after an edit only the subtrees it changed are walked again.
    pub fn features(
        &mut self,
        rope: &Rope,
        tree: Option<&Tree>,
        language: Language,
        target: &Target,
    ) -> Features {
        if self.language != Some(language) {
            self.units.clear();
            self.language = Some(language);
        }
        self.calls += 1;
        let mut units = Units {
            map: &mut self.units,
            call: self.calls,
            min_descendants: self.min_descendants,
        };
        let (features, walked) = walk_features(rope, tree, language, target, Some(&mut units));
        self.last_walk_nodes = walked;
        if self.units.len() > MEMO_MAX_UNITS {
            let oldest = self.calls.saturating_sub(MEMO_KEEP_CALLS);
            self.units.retain(|_, unit| unit.used > oldest);
        }
        features
    }

    /// How many nodes the last call visited (subtrees found in the memo are not visited).
    pub fn last_walk_nodes(&self) -> usize {
        self.last_walk_nodes
    }
}

/// The features, and how many nodes were visited.
fn walk_features(
    rope: &Rope,
    tree: Option<&Tree>,
    language: Language,
    target: &Target,
    units: Option<&mut Units>,
) -> (Features, usize) {
    let range = clamp_range(rope, target.range.clone());
    let (first, last) = line_span(rope, &range);
    let chars = rope.byte_to_char(range.end) - rope.byte_to_char(range.start);
    let has_grammar = language.spec().grammar.is_some();
    let mut walk = Walk {
        range: range.clone(),
        rope,
        classes: node_classes(language),
        matcher: Matcher::new(rope, language),
        units,
        chunk: Chunk::default(),
        open_units: Vec::new(),
        visited: 0,
        branches: 0,
        max_nesting: 0,
        syntax_errors: 0,
        calls: Vec::new(),
    };
    if let Some(tree) = tree.filter(|_| has_grammar) {
        let root = tree.root_node();
        let start = root
            .descendant_for_byte_range(range.start, range.end)
            .unwrap_or(root);
        walk.run(start);
    }
    // Calls are collected past the cap while a remembered subtree needs them, so that its
    // summary holds its own first calls whatever came before it.
    let mut sensitive_calls = walk.calls;
    sensitive_calls.truncate(MAX_SENSITIVE_CALLS);
    let features = Features {
        language,
        node_kind: target.kind.clone(),
        lines: to_u32(last - first + 1),
        tokens: to_u32(tokens_for_chars(chars)),
        branches: walk.branches,
        max_nesting: walk.max_nesting,
        sensitive_calls,
        syntax_errors: walk.syntax_errors,
    };
    (features, walk.visited)
}

// ---------------------------------------------------------------------------------------
// Targets

/// The cursor moved back over the spaces and tabs before it on its line: a cursor after
/// `return ` at the end of a function is in the function, although the function's node
/// ends before the space.
fn before_blanks(rope: &Rope, cursor: usize) -> usize {
    let line_start = rope.line_to_byte(rope.byte_to_line(cursor));
    let mut at = cursor;
    while at > line_start && matches!(rope.byte(at - 1), b' ' | b'\t') {
        at -= 1;
    }
    at
}

/// The nodes from the root down to the deepest one containing `cursor`. A node that ends
/// exactly at the cursor (`fn f() {}|`) contains it when no node starts there.
fn path_to(root: Node<'_>, cursor: usize) -> Vec<Node<'_>> {
    let mut path = vec![root];
    let mut node = root;
    while let Some(child) = child_at(node, cursor) {
        path.push(child);
        node = child;
    }
    path
}

fn child_at(node: Node<'_>, cursor: usize) -> Option<Node<'_>> {
    // The first child ending at or after the cursor; tree-sitter finds it without visiting
    // the children before it one by one (a block's statements hang from a balanced tree).
    let mut child = match cursor.checked_sub(1) {
        Some(before) => node.first_child_for_byte(before)?,
        None => node.child(0)?,
    };
    let mut touching = None;
    loop {
        let (start, end) = (child.start_byte(), child.end_byte());
        if start > cursor {
            break;
        }
        if cursor < end {
            return Some(child);
        }
        if end == cursor && start < cursor {
            touching = Some(child);
        }
        match child.next_sibling() {
            Some(next) => child = next,
            None => break,
        }
    }
    touching
}

/// The innermost function on `path`, else the innermost container (outside any function).
fn definition_on_path(rope: &Rope, spec: &LanguageSpec, path: &[Node]) -> Option<Target> {
    let mut container = None;
    for i in (1..path.len()).rev() {
        let node = path[i];
        let Some(def) = spec.def(node.kind()) else {
            continue;
        };
        // A prototype, an abstract method, a C struct named in a declaration: no target.
        let complete = !def.body_required || node.child_by_field_name("body").is_some();
        match def.item {
            Item::Function if complete => return Some(named_target(rope, spec, def, path, i)),
            Item::Container if complete && container.is_none() => container = Some((i, def)),
            Item::Anonymous => {
                if let Some(target) = assigned_function(rope, spec, path, i) {
                    return Some(target);
                }
            }
            _ => {}
        }
    }
    container.map(|(i, def)| named_target(rope, spec, def, path, i))
}

/// The target for the definition at `path[i]`, widened to its wrapper.
fn named_target(rope: &Rope, spec: &LanguageSpec, def: &Def, path: &[Node], i: usize) -> Target {
    let node = path[i];
    let outer = match i.checked_sub(1).map(|p| path[p]) {
        Some(parent) if spec.item(parent.kind()) == Some(Item::Wrapper) => parent,
        _ => node,
    };
    Target {
        range: clamp_range(rope, outer.byte_range()),
        kind: node.kind().to_string(),
        name: definition_name(rope, def, node),
    }
}

/// `const f = () => {…}` / `let g = function () {…}` / a class field `h = () => {…}`:
/// the declaration (or field) is the target, named after the variable (or field).
fn assigned_function(rope: &Rope, spec: &LanguageSpec, path: &[Node], i: usize) -> Option<Target> {
    let function = path[i];
    let parent = path.get(i.checked_sub(1)?)?;
    let (outer, holder, name_field) = spec.assigned.iter().find_map(|a| match a.declarator {
        Some(declarator) if parent.kind() == declarator => {
            let outer = path.get(i.checked_sub(2)?)?;
            (outer.kind() == a.outer).then_some((*outer, *parent, a.name_field))
        }
        None if parent.kind() == a.outer => Some((*parent, *parent, a.name_field)),
        _ => None,
    })?;
    Some(Target {
        range: clamp_range(rope, outer.byte_range()),
        kind: function.kind().to_string(),
        name: holder
            .child_by_field_name(name_field)
            .map(|n| one_line_text(rope, n.byte_range(), MAX_NAME_CHARS)),
    })
}

fn definition_name(rope: &Rope, def: &Def, node: Node) -> Option<String> {
    let text = |n: Node| one_line_text(rope, n.byte_range(), MAX_NAME_CHARS);
    match def.name {
        Name::Impl => {
            let ty = text(node.child_by_field_name("type")?);
            Some(match node.child_by_field_name("trait") {
                Some(tr) => format!("{} for {ty}", text(tr)),
                None => ty,
            })
        }
        Name::Spec => {
            let mut walk = node.walk();
            let spec = node
                .named_children(&mut walk)
                .find(|c| matches!(c.kind(), "type_spec" | "type_alias"))?;
            spec.child_by_field_name("name").map(text)
        }
        Name::Declarator | Name::FunctionDeclarator => {
            // Through pointer/reference/function declarators to the declared name.
            let mut declarator = node.child_by_field_name("declarator")?;
            for _ in 0..16 {
                match declarator.child_by_field_name("declarator") {
                    Some(inner) => declarator = inner,
                    None => break,
                }
            }
            Some(text(declarator))
        }
        Name::Field => node.child_by_field_name("name").map(text),
    }
}

/// A top-level node worth being the target in a large file: not a namespace or module
/// (those hold whole files), not a syntax error, not larger than a small file.
fn is_region_candidate(rope: &Rope, spec: &LanguageSpec, node: &Node) -> bool {
    if node.is_error() || !node.is_named() || spec.item(node.kind()) == Some(Item::Namespace) {
        return false;
    }
    let (first, last) = line_span(rope, &clamp_range(rope, node.byte_range()));
    last - first < SMALL_FILE_LINES
}

fn file_or_region(rope: &Rope, cursor: usize) -> Target {
    if line_count(rope) <= SMALL_FILE_LINES {
        file_target(rope)
    } else {
        region(rope, cursor)
    }
}

fn file_target(rope: &Rope) -> Target {
    Target {
        range: 0..rope.len_bytes(),
        kind: "file".into(),
        name: None,
    }
}

/// `REGION_LINES` whole lines around the cursor's line, shifted to stay inside the text.
fn region(rope: &Rope, cursor: usize) -> Target {
    let total = line_count(rope);
    let line = rope.byte_to_line(cursor.min(rope.len_bytes()));
    let end_line = (line.saturating_sub(REGION_LINES / 2) + REGION_LINES).min(total);
    let first_line = end_line.saturating_sub(REGION_LINES);
    Target {
        range: line_start(rope, first_line)..line_start(rope, end_line),
        kind: "region".into(),
        name: None,
    }
}

// ---------------------------------------------------------------------------------------
// The features walk

/// What a node kind means to the walk: its role, whether it is a call, and what it makes
/// of its children. Looked up by kind id, so the walk compares no strings per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeClass {
    role: Role,
    call: Option<CallShape>,
    /// Under an `else` clause, an `if` is an `else if`.
    is_else: bool,
    /// A function expression under it is a named definition rather than a closure
    /// (`const f = () => …`, a class field).
    is_definition: bool,
    /// A block directly under it stands bare (`{ … }` as a statement).
    is_block_holder: bool,
}

const PLAIN: NodeClass = NodeClass {
    role: Role::Other,
    call: None,
    is_else: false,
    is_definition: false,
    is_block_holder: false,
};

fn node_class(spec: &LanguageSpec, kind: &str) -> NodeClass {
    NodeClass {
        role: lookup(spec.roles, kind).unwrap_or(Role::Other),
        call: lookup(spec.calls, kind),
        is_else: kind == "else_clause",
        // What directly holds an assigned function: `variable_declarator`, a class field.
        is_definition: spec
            .assigned
            .iter()
            .any(|a| a.declarator.unwrap_or(a.outer) == kind),
        is_block_holder: matches!(
            kind,
            "block"
                | "compound_statement"
                | "statement_block"
                | "statement_list"
                | "expression_statement"
        ),
    }
}

/// The value a `(kind, value)` table of the spec gives `kind`.
fn lookup<T: Copy>(table: &[(&str, T)], kind: &str) -> Option<T> {
    table.iter().find(|(k, _)| *k == kind).map(|e| e.1)
}

/// The classes of all node kinds of `language`, indexed by kind id; built once per
/// language (a few hundred string matches) and immutable afterwards.
fn node_classes(language: Language) -> &'static [NodeClass] {
    const LANGUAGES: usize = Language::ALL.len();
    static TABLES: [OnceLock<Vec<NodeClass>>; LANGUAGES] = [const { OnceLock::new() }; LANGUAGES];
    TABLES[language.index()].get_or_init(|| {
        let Some(grammar) = language.grammar() else {
            return Vec::new();
        };
        (0..grammar.node_kind_count())
            .map(|id| {
                let id = u16::try_from(id).unwrap_or(u16::MAX);
                match grammar.node_kind_for_id(id) {
                    Some(kind) if grammar.node_kind_is_named(id) => {
                        node_class(language.spec(), kind)
                    }
                    _ => PLAIN,
                }
            })
            .collect()
    })
}

/// `default:` labels and `_` patterns.
fn is_default_arm(node: Node) -> bool {
    if node.child(0).is_some_and(|c| c.kind() == "default") {
        return true;
    }
    node.named_child(0).is_some_and(|pattern| {
        matches!(pattern.kind(), "match_pattern" | "case_pattern")
            && pattern.child_count() == 1
            && pattern.child(0).is_some_and(|c| c.kind() == "_")
    })
}

fn is_logical(node: Node) -> bool {
    node.child_by_field_name("operator")
        .is_some_and(|op| matches!(op.kind(), "&&" | "||" | "??" | "and" | "or"))
}

/// A subtree is remembered when it has more nodes than this below its root: smaller ones
/// cost less to walk than to look up.
const MEMO_MIN_DESCENDANTS: usize = 24;

/// What a subtree holds below its root (the root's own contribution depends on its parent,
/// so it is not part of it), relative to the root: nesting below the root's depth, calls'
/// offsets from the root's start; its first `MAX_SENSITIVE_CALLS` sensitive calls, which
/// holds all that can be reported of it wherever it stands.
#[derive(Debug)]
struct Summary {
    branches: u32,
    syntax_errors: u32,
    nesting: u32,
    calls: Vec<SensitiveCall>,
}

/// A subtree's identity in the memo: what it is and a hash of its text. Equal keys mean
/// equal text parsed to the same kind of node with as many nodes, so the same summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UnitKey {
    kind_id: u16,
    has_error: bool,
    descendants: usize,
    text_hash: u128,
}

/// The key already holds a good hash of the text: the map uses it as is ([`KeyHasher`]).
impl std::hash::Hash for UnitKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.text_hash as u64 ^ self.descendants as u64);
    }
}

/// Hashes a [`UnitKey`] to the `u64` it writes.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in, in case.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type UnitMap = HashMap<UnitKey, Unit, std::hash::BuildHasherDefault<KeyHasher>>;

impl UnitKey {
    fn of<'r>(rope: &'r Rope, chunk: &mut Chunk<'r>, node: Node) -> UnitKey {
        UnitKey {
            kind_id: node.kind_id(),
            has_error: node.has_error(),
            descendants: node.descendant_count(),
            text_hash: text_hash(rope, chunk, node.byte_range()),
        }
    }
}

/// The rope piece the last hash read from: the walk goes forward through the text, so the
/// next subtree usually lies in it, and finding a piece in the rope is not free.
#[derive(Default)]
struct Chunk<'r> {
    text: &'r [u8],
    start: usize,
}

/// A 128-bit hash of the bytes in `range` (clamped to the text; a stale tree's range need
/// not fall on char boundaries, and bytes do not care), in one pass when one rope piece
/// holds them (most subtrees), else streamed over the pieces.
fn text_hash<'r>(rope: &'r Rope, chunk: &mut Chunk<'r>, range: Range<usize>) -> u128 {
    let len = rope.len_bytes();
    let (start, end) = (range.start.min(len), range.end.min(len));
    let end = end.max(start);
    let within = |c: &Chunk| start >= c.start && end <= c.start + c.text.len();
    if !within(chunk) {
        let (text, chunk_start, _, _) = rope.chunk_at_byte(start);
        *chunk = Chunk {
            text: text.as_bytes(),
            start: chunk_start,
        };
    }
    if within(chunk) {
        return xxh3_128(&chunk.text[start - chunk.start..end - chunk.start]);
    }
    let mut hasher = Xxh3::new();
    let (pieces, mut piece_start, _, _) = rope.chunks_at_byte(start);
    for piece in pieces {
        if piece_start >= end {
            break;
        }
        let bytes = piece.as_bytes();
        let from = start.saturating_sub(piece_start);
        let to = (end - piece_start).min(bytes.len());
        hasher.update(&bytes[from..to]);
        piece_start += bytes.len();
    }
    hasher.digest128()
}

struct Unit {
    summary: Arc<Summary>,
    /// The last memo call that used it.
    used: u64,
}

/// The memo as one walk sees it.
struct Units<'m> {
    map: &'m mut UnitMap,
    call: u64,
    min_descendants: usize,
}

impl Units<'_> {
    /// Whether `node` is worth remembering: big enough, and (below the walk's start, whose
    /// parent is 0 here) at most half of its parent, so that along any path the remembered
    /// subtrees halve, and hashing their texts costs a few passes over the target's.
    fn worth(&self, descendants: usize, parent_descendants: usize) -> bool {
        descendants > self.min_descendants
            && (parent_descendants == 0 || descendants * 2 <= parent_descendants)
    }

    fn get(&mut self, key: &UnitKey) -> Option<Arc<Summary>> {
        let unit = self.map.get_mut(key)?;
        unit.used = self.call;
        Some(Arc::clone(&unit.summary))
    }

    fn insert(&mut self, key: UnitKey, summary: Summary) {
        let unit = Unit {
            summary: Arc::new(summary),
            used: self.call,
        };
        self.map.insert(key, unit);
    }
}

struct Walk<'r, 'm> {
    range: Range<usize>,
    rope: &'r Rope,
    classes: &'static [NodeClass],
    matcher: Matcher<'r>,
    units: Option<&'r mut Units<'m>>,
    /// The rope piece the last subtree hash read.
    chunk: Chunk<'r>,
    /// Where in `calls` each remembered subtree being walked started, innermost last: calls
    /// past the innermost one's start + `MAX_SENSITIVE_CALLS` are of no use to anyone.
    open_units: Vec<usize>,
    visited: usize,
    branches: u32,
    max_nesting: u32,
    syntax_errors: u32,
    /// The sensitive calls met, in document order, as many as `calls_wanted` (the cap on
    /// the target's applies at the end).
    calls: Vec<SensitiveCall>,
}

/// An ancestor during the walk: its nesting depth (counting itself), its class, its node
/// count, the deepest depth met below it so far, and, when its summary is to be
/// remembered, the counts on entering it.
#[derive(Clone, Copy)]
struct Frame {
    depth: u32,
    class: NodeClass,
    descendants: usize,
    deepest: u32,
    unit: Option<UnitEntry>,
}

#[derive(Clone, Copy)]
struct UnitEntry {
    key: UnitKey,
    start: usize,
    branches: u32,
    syntax_errors: u32,
    calls: usize,
}

impl Walk<'_, '_> {
    /// Pre-order walk of `start`'s subtree, skipping subtrees outside the range, and those
    /// the memo knows. `start` itself is depth 0 even when it is a nesting construct.
    fn run(&mut self, start: Node) {
        let mut cursor = start.walk();
        let mut ancestors: Vec<Frame> = Vec::with_capacity(32);
        let range = self.range.clone();
        // Usually the target is a node: then every node under it is inside the range and
        // the per-node range checks are skipped; a subtree without errors skips the error
        // checks.
        let whole = start.byte_range() == range;
        let has_errors = start.has_error();
        loop {
            let node = cursor.node();
            self.visited += 1;
            let (s, e) = if whole {
                (range.start, range.start)
            } else {
                (node.start_byte(), node.end_byte())
            };
            let class = self
                .classes
                .get(usize::from(node.kind_id()))
                .copied()
                .unwrap_or(PLAIN);
            let parent_class = ancestors.last().map_or(PLAIN, |f| f.class);
            let mut depth = ancestors.last().map_or(0, |f| f.depth);
            let counted = whole || (s >= range.start && (s < range.end || e <= range.end));
            if counted {
                if has_errors && (node.is_error() || node.is_missing()) {
                    self.syntax_errors += 1;
                }
                let is_start = ancestors.is_empty();
                if self.visit(node, class, parent_class, &cursor) && !is_start {
                    depth += 1;
                    self.reach(&mut ancestors, depth);
                }
            }
            let mut descend = whole || (s <= range.end && e >= range.start);
            let mut unit = None;
            let inside = whole || (s >= range.start && e <= range.end);
            let descendants = node.descendant_count();
            if let Some(units) = self.units.as_deref_mut()
                && inside
                && units.worth(descendants, ancestors.last().map_or(0, |f| f.descendants))
            {
                let key = UnitKey::of(self.rope, &mut self.chunk, node);
                match units.get(&key) {
                    Some(summary) => {
                        self.add(&summary, node.start_byte(), depth, &mut ancestors);
                        descend = false;
                    }
                    None => {
                        unit = Some(UnitEntry {
                            key,
                            start: node.start_byte(),
                            branches: self.branches,
                            syntax_errors: self.syntax_errors,
                            calls: self.calls.len(),
                        })
                    }
                }
            }
            if descend && cursor.goto_first_child() {
                if let Some(entry) = &unit {
                    self.open_units.push(entry.calls);
                }
                ancestors.push(Frame {
                    depth,
                    class,
                    descendants,
                    deepest: depth,
                    unit,
                });
                continue;
            }
            loop {
                if cursor.goto_next_sibling() {
                    break;
                }
                if !cursor.goto_parent() {
                    return;
                }
                if let Some(frame) = ancestors.pop() {
                    self.leave(frame, &mut ancestors);
                }
            }
        }
    }

    /// A node at `depth` was met: the deepest so far for its ancestors.
    fn reach(&mut self, ancestors: &mut [Frame], depth: u32) {
        self.max_nesting = self.max_nesting.max(depth);
        if let Some(parent) = ancestors.last_mut() {
            parent.deepest = parent.deepest.max(depth);
        }
    }

    /// Adds what the memo knows of the subtree below a node starting at byte `start`, at
    /// `depth`.
    fn add(&mut self, summary: &Summary, start: usize, depth: u32, ancestors: &mut [Frame]) {
        self.branches += summary.branches;
        self.syntax_errors += summary.syntax_errors;
        self.reach(ancestors, depth + summary.nesting);
        let room = self.calls_wanted().saturating_sub(self.calls.len());
        if room > 0 && !summary.calls.is_empty() {
            let first_line = self.line_of(start);
            self.calls
                .extend(summary.calls.iter().take(room).map(|call| SensitiveCall {
                    line: call.line + first_line,
                    ..call.clone()
                }));
        }
    }

    /// The line of a byte offset (clamped).
    fn line_of(&self, byte: usize) -> u32 {
        to_u32(self.rope.byte_to_line(byte.min(self.rope.len_bytes())))
    }

    /// How many sensitive calls are worth collecting: the first `MAX_SENSITIVE_CALLS` of the
    /// target, and of each remembered subtree being walked.
    fn calls_wanted(&self) -> usize {
        self.open_units.last().copied().unwrap_or(0) + MAX_SENSITIVE_CALLS
    }

    /// Leaves the subtree of `frame`: its deepest depth is its parent's too, and when it is
    /// a unit the memo learns its summary.
    fn leave(&mut self, frame: Frame, ancestors: &mut [Frame]) {
        if let Some(parent) = ancestors.last_mut() {
            parent.deepest = parent.deepest.max(frame.deepest);
        }
        let Some(entry) = frame.unit.filter(|_| self.units.is_some()) else {
            return;
        };
        self.open_units.pop();
        let first_line = if self.calls.len() > entry.calls {
            self.line_of(entry.start)
        } else {
            0
        };
        let summary = Summary {
            branches: self.branches - entry.branches,
            syntax_errors: self.syntax_errors - entry.syntax_errors,
            nesting: frame.deepest - frame.depth,
            calls: self.calls[entry.calls..]
                .iter()
                .take(MAX_SENSITIVE_CALLS)
                .map(|call| SensitiveCall {
                    line: call.line.saturating_sub(first_line),
                    ..call.clone()
                })
                .collect(),
        };
        if let Some(units) = self.units.as_deref_mut() {
            units.insert(entry.key, summary);
        }
    }

    /// Counts what `node` contributes; true when it nests.
    fn visit(
        &mut self,
        node: Node,
        class: NodeClass,
        parent: NodeClass,
        cursor: &TreeCursor,
    ) -> bool {
        if let Some(shape) = class.call {
            self.call(node, shape);
        }
        match class.role {
            Role::Other => false,
            Role::Branch => {
                self.branches += 1;
                false
            }
            Role::BranchNest => {
                self.branches += 1;
                true
            }
            Role::If => {
                self.branches += 1;
                // Go and Java put the `else if` straight into the `alternative` field.
                let else_if = parent.is_else || cursor.field_name() == Some("alternative");
                !else_if
            }
            Role::Nest => true,
            Role::Arm => {
                if !is_default_arm(node) {
                    self.branches += 1;
                }
                false
            }
            Role::Logical => {
                if is_logical(node) {
                    self.branches += 1;
                }
                false
            }
            Role::Closure => !parent.is_definition,
            Role::Block => parent.is_block_holder,
        }
    }

    fn call(&mut self, node: Node, shape: CallShape) {
        if self.calls.len() >= self.calls_wanted() {
            return;
        }
        if let Some(kind) = self.matcher.classify(node, shape) {
            self.calls.push(SensitiveCall {
                kind,
                line: self.line_of(node.start_byte()),
                text: one_line_text(self.rope, node.byte_range(), MAX_CALL_TEXT_CHARS).into(),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rope helpers, clamped

/// The number of lines with content (a final line break does not start another line).
fn line_count(rope: &Rope) -> usize {
    match rope.len_bytes() {
        0 => 1,
        len => rope.byte_to_line(len - 1) + 1,
    }
}

fn line_start(rope: &Rope, line: usize) -> usize {
    if line >= rope.len_lines() {
        rope.len_bytes()
    } else {
        rope.line_to_byte(line)
    }
}

/// First and last line of a clamped range; a non-empty range's last line is the line of
/// its last byte.
fn line_span(rope: &Rope, range: &Range<usize>) -> (usize, usize) {
    let len = rope.len_bytes();
    let (start, end) = (range.start.min(len), range.end.min(len));
    let first = rope.byte_to_line(start);
    let last = if end > start {
        rope.byte_to_line(end - 1)
    } else {
        first
    };
    (first, last.max(first))
}

/// The text of `range` up to the end of its first line, trimmed, at most `max_chars`.
fn one_line_text(rope: &Rope, range: Range<usize>, max_chars: usize) -> String {
    let end = range.end.min(range.start.saturating_add(max_chars * 4));
    let mut text = String::new();
    for_each_chunk(rope, range.start..end, |piece| text.push_str(piece));
    let first_line = text.lines().next().unwrap_or("");
    first_line.trim().chars().take(max_chars).collect()
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::SensitiveKind::*;
    use super::*;
    use crate::documents::{Documents, Reparse, TextChange};
    use crate::position::{LineCol, PositionEncoding};
    use crate::syntax::parse;

    use crate::syntax::test_support::{fixture, language};

    /// The target at the fixture's cursor, and its features.
    /// Also checks that a memo remembering every subtree gives the same features, on the
    /// first walk and after an edit above the target that shifts it a line down.
    fn run(lang: &str, src: &str) -> (Rope, Target, Features) {
        let lang = language(lang);
        let (text, cursor) = fixture(src);
        let mut docs = Documents::default();
        docs.open_parsed("file:///t", lang, 1, &text);
        let snap = docs.snapshot("file:///t").unwrap();
        let (rope, tree) = (snap.rope.clone(), snap.tree.clone());
        let target = enclosing_target(&rope, tree.as_ref(), lang, cursor);
        let features = features(&rope, tree.as_ref(), lang, &target);

        let mut memo = eager_memo();
        let first = memo.features(&rope, tree.as_ref(), lang, &target);
        assert_eq!(first, features, "{lang:?}: memo, first walk: {src:?}");
        insert(&mut docs, 2, (0, 0), "\n");
        let after = docs.snapshot("file:///t").unwrap();
        let moved = enclosing_target(&after.rope, after.tree.as_ref(), lang, cursor + 1);
        assert_eq!(
            memo.features(&after.rope, after.tree.as_ref(), lang, &moved),
            super::features(&after.rope, after.tree.as_ref(), lang, &moved),
            "{lang:?}: memo, after an edit: {src:?}"
        );
        (rope, target, features)
    }

    /// A memo that remembers every node with children.
    fn eager_memo() -> FeaturesMemo {
        FeaturesMemo {
            min_descendants: 0,
            ..FeaturesMemo::default()
        }
    }

    fn insert(docs: &mut Documents, version: i32, (line, col): (u32, u32), text: &str) {
        let at = LineCol { line, col };
        let change = TextChange {
            range: Some((at, at)),
            text: text.into(),
        };
        let reparse = docs.change("file:///t", version, &[change], PositionEncoding::Utf16);
        assert_eq!(reparse.map(|c| c.reparse), Ok(Reparse::Done));
    }

    /// (language, fixture, kind, name, (first line, last line))
    type TargetCase<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, (usize, usize));

    fn check_target(lang: &str, src: &str, kind: &str, name: Option<&str>, lines: (usize, usize)) {
        let (rope, target, _) = run(lang, src);
        assert_eq!(
            (
                target.kind.as_str(),
                target.name.as_deref(),
                target.line_span(&rope)
            ),
            (kind, name, lines),
            "{lang}: {src:?}"
        );
    }

    #[test]
    fn targets() {
        // (language, fixture, kind, name, (first line, last line))
        #[rustfmt::skip]
        let cases: &[TargetCase] = &[
            ("rust", "fn outer() {\n    fn inner() {\n        $0\n    }\n}", "function_item", Some("inner"), (1, 3)),
            ("rust", "struct S;\nimpl S {\n    fn m(&self) {\n        let x = 1;$0\n    }\n}", "function_item", Some("m"), (2, 4)),
            ("rust", "impl Display for S {\n    $0\n    fn fmt() {}\n}", "impl_item", Some("Display for S"), (0, 3)),
            ("rust", "fn f() {\n    let c = |x| {\n        x$0\n    };\n}", "function_item", Some("f"), (0, 4)),
            ("rust", "fn f() {\n    struct Inner {\n        a: u8,$0\n    }\n}", "function_item", Some("f"), (0, 4)),
            ("rust", "trait T {\n    fn a();$0\n}", "trait_item", Some("T"), (0, 2)),
            ("rust", "#[test]\nfn f() {}$0\n", "function_item", Some("f"), (1, 1)),
            ("rust", "use std::io;\n$0\nfn f() {}\n", "file", None, (0, 2)),
            ("python", "@app.route(\"/\")\n@login\ndef view():\n    return 1$0\n", "function_definition", Some("view"), (0, 3)),
            ("python", "def outer():\n    def inner():\n        pass$0\n    return inner\n", "function_definition", Some("inner"), (1, 2)),
            ("python", "class A:\n    x = 1\n    def m(self):\n        $0return 1\n", "function_definition", Some("m"), (2, 3)),
            ("python", "class A:\n    x = 1$0\n    def m(self):\n        pass\n", "class_definition", Some("A"), (0, 3)),
            ("python", "def f():\n    g = lambda x: x$0\n", "function_definition", Some("f"), (0, 1)),
            ("python", "@dataclass\nclass P:\n    x: int$0\n", "class_definition", Some("P"), (0, 2)),
            ("python", "import os\n$0print(os.name)\n", "file", None, (0, 1)),
            // After trailing blanks at the end of a function's last line: still the function.
            ("python", "def f(x):\n    return $0\n\nprint(1)\n", "function_definition", Some("f"), (0, 1)),
            ("rust", "fn f() {}  $0\nconst A: u8 = 1;\n", "function_item", Some("f"), (0, 0)),
            ("javascript", "const add = (a, b) => {\n  return a + b;$0\n};\n", "arrow_function", Some("add"), (0, 2)),
            ("javascript", "class A {\n  m() {\n    $0\n  }\n}", "method_definition", Some("m"), (1, 3)),
            ("javascript", "function f(xs) {\n  xs.map((x) => {\n    return x;$0\n  });\n}", "function_declaration", Some("f"), (0, 4)),
            ("javascript", "class A {\n  x = 1;$0\n  m() {}\n}", "class_declaration", Some("A"), (0, 3)),
            ("javascript", "var g = function () {\n  $0\n};", "function_expression", Some("g"), (0, 2)),
            ("javascript", "describe(\"a\", () => {\n  it(\"b\", () => {$0});\n});\n", "file", None, (0, 2)),
            ("typescript", "export const f = (x: number): number => {\n  return x;$0\n};", "arrow_function", Some("f"), (0, 2)),
            ("typescript", "abstract class B {\n  h = () => {\n    $0\n  };\n}", "arrow_function", Some("h"), (1, 3)),
            ("typescript", "interface I {\n  m(): void;$0\n}", "interface_declaration", Some("I"), (0, 2)),
            ("typescript", "class C {\n  private m(x: string): void {\n    $0\n  }\n}", "method_definition", Some("m"), (1, 3)),
            ("tsx", "const App = () => {\n  return <div>{x}$0</div>;\n};", "arrow_function", Some("App"), (0, 2)),
            ("tsx", "function Hello(props: P) {\n  return <p>$0hi</p>;\n}", "function_declaration", Some("Hello"), (0, 2)),
            ("go", "package main\n\nfunc (s *S) Run() error {\n\treturn nil$0\n}\n", "method_declaration", Some("Run"), (2, 4)),
            ("go", "package main\n\nfunc main() {\n\tgo func() {\n\t\t$0\n\t}()\n}\n", "function_declaration", Some("main"), (2, 6)),
            ("go", "package main\n\ntype S struct {\n\tA int$0\n}\n", "type_declaration", Some("S"), (2, 4)),
            ("go", "package main\n\nimport \"fmt\"$0\n", "file", None, (0, 2)),
            ("c", "static int *find(int x) {\n    return 0;$0\n}", "function_definition", Some("find"), (0, 2)),
            ("c", "struct point {\n    int x;$0\n};", "struct_specifier", Some("point"), (0, 2)),
            ("c", "#include <stdio.h>\nint g = 1;$0\n", "file", None, (0, 1)),
            ("cpp", "template <typename T>\nclass Box {\n  T get() {\n    return v;$0\n  }\n};", "function_definition", Some("get"), (2, 4)),
            ("cpp", "template <typename T>\nclass Box {\n  T v;$0\n};", "class_specifier", Some("Box"), (0, 3)),
            ("cpp", "void Box::set(int x) {\n  v = x;$0\n}", "function_definition", Some("Box::set"), (0, 2)),
            ("cpp", "namespace n {\nint a = 1;$0\n}", "file", None, (0, 2)),
            ("cpp", "int main() {\n  auto f = [](int x) {\n    return x;$0\n  };\n}", "function_definition", Some("main"), (0, 4)),
            ("java", "class A {\n  void m() {\n    int x = 1;$0\n  }\n}", "method_declaration", Some("m"), (1, 3)),
            ("java", "class A {\n  A(int x) {\n    $0\n  }\n}", "constructor_declaration", Some("A"), (1, 3)),
            ("java", "class A {\n  int x;$0\n  void m() {}\n}", "class_declaration", Some("A"), (0, 3)),
            ("java", "interface I {\n  void m();$0\n}", "interface_declaration", Some("I"), (0, 2)),
            ("java", "class A {\n  void m() {\n    r(() -> {\n      $0\n    });\n  }\n}", "method_declaration", Some("m"), (1, 5)),
            ("ruby", "class Foo\n  def run(x)\n    y = x$0\n  end\nend\n", "method", Some("run"), (1, 3)),
            ("ruby", "module M\n  class Foo < Bar\n    attr_reader :x$0\n\n    def a; end\n  end\nend\n", "class", Some("Foo"), (1, 5)),
            ("ruby", "def self.build(x)\n  [x].each do |i|\n    i$0\n  end\nend\n", "singleton_method", Some("build"), (0, 4)),
            ("ruby", "module M\n  X = 1$0\nend\n", "file", None, (0, 2)),
            ("php", "<?php\nclass A {\n    public function m($x) {\n        return $x;$0\n    }\n}\n", "method_declaration", Some("m"), (2, 4)),
            ("php", "<?php\ninterface I {\n    public function m($x);$0\n}\n", "interface_declaration", Some("I"), (1, 3)),
            ("php", "<?php\n$handler = function ($request) {\n    return $request;$0\n};\n", "anonymous_function", Some("$handler"), (1, 3)),
            ("php", "<?php\nfunction f($x) {\n    $g = fn($y) => $y;$0\n}\n", "function_definition", Some("f"), (1, 3)),
            ("lua", "local M = {}\nfunction M.run(x)\n  return x$0\nend\nreturn M\n", "function_declaration", Some("M.run"), (1, 3)),
            ("lua", "local function helper(a)\n  local g = function(b)\n    return b$0\n  end\nend\n", "function_declaration", Some("helper"), (0, 4)),
            ("bash", "#!/bin/bash\nfoo() {\n  echo hi$0\n}\n", "function_definition", Some("foo"), (1, 3)),
            ("bash", "function bar {\n  if true; then\n    x$0\n  fi\n}\n", "function_definition", Some("bar"), (0, 4)),
            ("plaintext", "hello\nworld$0\n", "file", None, (0, 1)),
        ];
        for &(lang, src, kind, name, lines) in cases {
            check_target(lang, src, kind, name, lines);
        }
    }

    /// `n` numbered lines of `line` (with `{i}` replaced), and the cursor on line `at`.
    fn big(head: &str, line: &str, n: usize, tail: &str, at: usize) -> String {
        let mut out = head.to_string();
        for i in 0..n {
            if i == at {
                out.push_str("$0");
            }
            out.push_str(&line.replace("{i}", &i.to_string()));
            out.push('\n');
        }
        out.push_str(tail);
        out
    }

    type Lines = (usize, usize);

    #[test]
    fn targets_in_large_files() {
        // (language, fixture, kind, name, (first line, last line))
        #[rustfmt::skip]
        let cases: Vec<(&str, String, &str, Option<&str>, Lines)> = vec![
            // A top-level node at the cursor.
            ("rust", big("", "const A{i}: u8 = 1;", 300, "", 150), "const_item", Some("A150"), (150, 150)),
            ("python", big("", "x{i} = {i}", 300, "", 10), "expression_statement", None, (10, 10)),
            // Still the enclosing function.
            ("rust", big("fn f() {\n", "    let a{i} = 1;", 300, "}\n", 200), "function_item", Some("f"), (0, 301)),
            // Between top-level nodes, or inside a namespace: the lines around the cursor.
            ("rust", big("", "", 300, "", 150), "region", None, (120, 179)),
            ("cpp", big("namespace n {\n", "int a{i} = 1;", 300, "}\n", 100), "region", None, (71, 130)),
            ("go", big("package main\nvar (\n", "\ta{i} = 1", 300, ")\n", 3), "region", None, (0, 59)),
            ("plaintext", big("", "words {i}", 300, "", 150), "region", None, (120, 179)),
            ("plaintext", big("", "words {i}", 300, "", 299), "region", None, (240, 299)),
        ];
        for (lang, src, kind, name, lines) in cases {
            check_target(lang, &src, kind, name, lines);
        }
    }

    #[test]
    fn selection_is_clamped_and_ordered() {
        let rope = Rope::from_str("héllo\nworld\n");
        let cases = [
            (0..5, 0..5),
            (Range { start: 5, end: 3 }, 3..5),
            (2..3, 1..3), // inside the two-byte `é`: floored
            (3..usize::MAX, 3..13),
            (usize::MAX..usize::MAX, 13..13),
        ];
        for (input, want) in cases {
            let t = selection_target(&rope, input.clone());
            assert_eq!((t.range, t.kind.as_str()), (want, "selection"), "{input:?}");
        }
    }

    #[test]
    fn cursor_out_of_range_is_clamped() {
        let rope = Rope::from_str("fn f() {\n    é\n}\n");
        let tree = parse(Language::Rust, &rope.to_string());
        for cursor in [14, usize::MAX] {
            let t = enclosing_target(&rope, tree.as_ref(), Language::Rust, cursor);
            assert!(t.range.end <= rope.len_bytes(), "{cursor}: {t:?}");
        }
    }

    #[test]
    fn branches_nesting_and_errors() {
        // (language, fixture, branches, max_nesting, syntax_errors)
        #[rustfmt::skip]
        let cases: &[(&str, &str, u32, u32, u32)] = &[
            ("rust", "fn f(x: u8) -> u8 {$0\n    if x > 1 && x < 5 {\n        for i in 0..x {\n            if i == 2 { return i; }\n        }\n    } else if x == 0 {\n        return 1;\n    }\n    match x { 1 => 2, 3 => 4, _ => 0 }\n}", 7, 3, 0),
            ("rust", "fn f(v: &[i32]) {$0\n    v.iter().for_each(|x| {\n        if *x > 0 {}\n    });\n}", 1, 2, 0),
            ("rust", "fn f() {$0\n    let a = 1;\n    { let b = 2; }\n}", 0, 1, 0),
            ("rust", "fn f() {$0\n    let x = ;\n}", 0, 0, 1),
            ("python", "def f(x):$0\n    if x and y:\n        pass\n    elif x:\n        for i in x:\n            pass\n    else:\n        pass\n    try:\n        pass\n    except ValueError:\n        pass\n    return [i for i in x if i] if x else None\n", 8, 2, 0),
            ("python", "def f(x):$0\n    match x:\n        case 1:\n            pass\n        case _:\n            pass\n", 1, 1, 0),
            ("python", "def f(x):$0\n    with open(x) as h:\n        while h:\n            g = lambda: 1 if h else 2\n", 2, 3, 0),
            ("javascript", "function f(a) {$0\n  switch (a) {\n    case 1: return a ? 1 : 2;\n    default: break;\n  }\n  try { g(); } catch (e) { if (a ?? b) {} }\n}", 5, 2, 0),
            ("javascript", "function f(a) {$0\n  if (a {\n  }\n}", 1, 1, 1),
            ("typescript", "const f = (xs: number[]) => {$0\n  for (const x of xs) {\n    if (x) { }\n  }\n};", 2, 2, 0),
            ("tsx", "function A() {$0\n  return <ul>{xs.map((x) => x ? <li /> : null)}</ul>;\n}", 1, 1, 0),
            ("go", "package main\nfunc f(x int) int {$0\n\tif x > 0 || x < -5 {\n\t\treturn 1\n\t} else if x == 0 {\n\t\treturn 0\n\t}\n\tswitch x {\n\tcase 1:\n\tcase 2:\n\tdefault:\n\t}\n\treturn 2\n}\n", 5, 1, 0),
            ("go", "package main\nfunc f(xs []int) {$0\n\tfor _, x := range xs {\n\t\tgo func() {\n\t\t\tif x > 0 {\n\t\t\t}\n\t\t}()\n\t}\n}\n", 2, 3, 0),
            ("c", "int f(int x) {$0\n    while (x) { if (x > 2) { x--; } }\n    switch (x) { case 1: break; default: break; }\n    return x ? 1 : 0;\n}", 4, 2, 0),
            ("c", "int f(int x) {$0\n    return x +;\n}", 0, 0, 1),
            ("cpp", "int f(int x) {$0\n  for (auto y : v) {\n    try { g(); } catch (...) { }\n  }\n  auto l = [&]() { return x && y; };\n  return 0;\n}", 3, 2, 0),
            ("java", "class A {\n  int m(int x) {$0\n    switch (x) { case 1 -> a(); default -> b(); }\n    for (int i : xs) { if (i > 0 && i < 9) { } }\n    return x > 0 ? 1 : 0;\n  }\n}", 5, 2, 0),
            ("java", "class A {\n  void m() {$0\n    try { a(); } catch (IOException e) { } catch (Exception e) { }\n    do { x--; } while (x > 0);\n  }\n}", 3, 1, 0),
            ("ruby", "def f(x)$0\n  if x && y\n    a\n  elsif z\n    b\n  end\n  xs.each do |i|\n    if i then puts i end\n  end\n  case x\n  when 1 then 2\n  when 3 then 4\n  else 5\n  end\nend\n", 6, 2, 0),
            ("php", "<?php\nfunction f($x) {$0\n    if ($a && $b) {\n    } elseif ($c) {\n    } else if ($d) {\n    }\n    foreach ($xs as $x) { while ($x) { } }\n    switch ($x) { case 1: break; default: break; }\n    return $x ? 1 : 0;\n}\n", 8, 2, 0),
            ("lua", "function f(x)$0\n  if x and y then\n    for i = 1, 10 do\n      print(i)\n    end\n  elseif z then\n  end\n  local g = function() return x or y end\n  repeat x = x - 1 until x == 0\nend\n", 6, 2, 0),
            ("bash", "f() {$0\n  if [ -n \"$x\" ] && [ -f a ]; then\n    for f in *.txt; do\n      echo \"$f\"\n    done\n  elif true; then\n    :\n  fi\n  case \"$x\" in\n    a) echo a ;;\n    *) echo b ;;\n  esac\n}\n", 6, 2, 0),
            ("plaintext", "if a then b$0\n", 0, 0, 0),
        ];
        for &(lang, src, branches, max_nesting, syntax_errors) in cases {
            let (_, _, f) = run(lang, src);
            assert_eq!(
                (f.branches, f.max_nesting, f.syntax_errors),
                (branches, max_nesting, syntax_errors),
                "{lang}: {src:?}"
            );
        }
    }

    static LONG_CHAIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "fn f(x: &str) {{$0\n    Command::new(\"sh\").arg(\"{}\").arg(x).output();\n}}",
            "a".repeat(300)
        )
    });

    #[test]
    fn sensitive_calls() {
        // (language, fixture, the kinds found, sorted and deduplicated)
        #[rustfmt::skip]
        let cases: &[(&str, &str, &[SensitiveKind])] = &[
            ("rust", "fn f(cmd: &str) {$0\n    std::process::Command::new(\"sh\").arg(cmd).status();\n}", &[Exec]),
            ("rust", "fn f(c: &Conn, id: &str) {$0\n    c.execute(&format!(\"DELETE FROM t WHERE id = {id}\"), []);\n}", &[Sql]),
            ("rust", "fn f(c: &Conn) {$0\n    c.execute(\"DELETE FROM t WHERE id = ?1\", [id]);\n    sqlx::query(\"SELECT 1\");\n}", &[]),
            ("rust", "fn f(p: &str) {$0\n    let _ = std::fs::read_to_string(p);\n    let _ = File::open(\"/etc/hosts\");\n    let _ = File::open(CONFIG);\n}", &[PathFromInput]),
            ("rust", "fn f(b: &[u8]) {$0\n    let h = Sha256::digest(b);\n    let v: T = bincode::deserialize(b).unwrap();\n    let j: T = serde_json::from_slice(b).unwrap();\n}", &[Crypto, Deserialize]),
            ("rust", "fn f() {$0\n    cmd!(sh, \"ls\").run();\n    println!(\"{}\", 1);\n}", &[Exec]),
            // A callee longer than MAX_CALLEE_BYTES keeps its tail.
            ("rust", &*LONG_CHAIN, &[Exec]),
            ("python", "def f(cmd):$0\n    os.system(cmd)\n    subprocess.run([\"ls\"])\n", &[Exec]),
            ("python", "def f(cur, x):$0\n    cur.execute(f\"SELECT * FROM t WHERE a = {x}\")\n", &[Sql]),
            ("python", "def f(cur, x):$0\n    cur.execute(\"SELECT * FROM t WHERE a = %s\" % x)\n", &[Sql]),
            ("python", "def f(cur, x):$0\n    cur.execute(\"SELECT * FROM t WHERE a = {}\".format(x))\n", &[Sql]),
            ("python", "def f(cur, x):$0\n    cur.execute(\"SELECT * FROM t WHERE a = %s\", (x,))\n    cur.execute(\"SELECT \" + \"1\")\n", &[]),
            ("python", "def f(s):$0\n    yaml.safe_load(s)\n    yaml.load(s, Loader=yaml.SafeLoader)\n    json.loads(s)\n", &[]),
            ("python", "def f(s):$0\n    yaml.load(s)\n    pickle.loads(s)\n", &[Deserialize]),
            ("python", "def f(s, name):$0\n    eval(s)\n    re.compile(s)\n    hashlib.md5(s)\n    open(name)\n    open(\"/etc/passwd\")\n", &[Eval, Crypto, PathFromInput]),
            ("javascript", "function f(x) {$0\n  child_process.exec(\"ls \" + x);\n  eval(x);\n}", &[Exec, Eval]),
            ("javascript", "function f(db, id) {$0\n  db.query(`SELECT * FROM t WHERE id = ${id}`);\n}", &[Sql]),
            ("javascript", "function f(db, s) {$0\n  db.query(`SELECT 1`);\n  db.query(\"SELECT * FROM t WHERE id = ?\", [id]);\n  /abc/.exec(s);\n}", &[]),
            ("javascript", "function f(p) {$0\n  fs.readFileSync(p);\n  fs.readFileSync(\"./config.json\");\n  setTimeout(() => go(), 10);\n  setTimeout(\"go()\", 10);\n  new Function(\"return 1\");\n  crypto.createHash(\"md5\");\n}", &[Eval, Crypto, PathFromInput]),
            ("typescript", "async function f(id: string) {$0\n  await prisma.$queryRawUnsafe(`SELECT ${id}`);\n  const h = crypto.createHash(\"sha1\");\n}", &[Sql, Crypto]),
            ("typescript", "function f(s: string) {$0\n  return unserialize(s);\n}", &[Deserialize]),
            ("typescript", "function f(s: string) {$0\n  setTimeout(run, 5);\n  return JSON.parse(s);\n}", &[]),
            ("tsx", "const A = (p: P) => {$0\n  eval(p.code);\n  return <div />;\n};", &[Eval]),
            ("go", "package main\nfunc f(db *sql.DB, id string) {$0\n\tdb.Query(fmt.Sprintf(\"SELECT * FROM t WHERE id = %s\", id))\n\tdb.Query(\"SELECT * FROM t WHERE id = ?\", id)\n}\n", &[Sql]),
            ("go", "package main\nfunc f(name string) {$0\n\texec.Command(\"sh\", \"-c\", name).Run()\n\tos.Open(name)\n\tos.Open(\"/etc/hosts\")\n}\n", &[Exec, PathFromInput]),
            ("go", "package main\nfunc f(b []byte) {$0\n\t_ = md5.Sum(b)\n\tdb.ExecContext(ctx, \"DELETE FROM t WHERE id = \" + id)\n}\n", &[Sql, Crypto]),
            ("go", "package main\nfunc f(b []byte) {$0\n\tjson.Unmarshal(b, &v)\n\tdb.Exec(\"DELETE FROM t\")\n}\n", &[]),
            ("c", "void f(const char *c) {$0\n    system(c);\n    FILE *f = fopen(c, \"r\");\n    FILE *g = fopen(\"/etc/hosts\", \"r\");\n}", &[Exec, PathFromInput]),
            ("c", "void f(unsigned char *d) {$0\n    MD5(d, 3, out);\n    execvp(argv[0], argv);\n}", &[Exec, Crypto]),
            ("c", "void f(void) {$0\n    printf(\"%d\", 1);\n    sqlite3_exec(db, \"SELECT 1\", 0, 0, 0);\n    execute_plan(p);\n}", &[]),
            ("cpp", "void f(std::string id) {$0\n  sqlite3_exec(db, (\"SELECT * FROM t WHERE id = \" + id).c_str(), 0, 0, 0);\n}", &[Sql]),
            ("cpp", "void f(std::string p) {$0\n  std::ifstream in;\n  in.open(p);\n  std::system(p.c_str());\n}", &[Exec, PathFromInput]),
            ("cpp", "void f() {$0\n  in.open(\"/etc/hosts\");\n  v.push_back(1);\n}", &[]),
            ("java", "class A {\n  void f(String c) throws Exception {$0\n    Runtime.getRuntime().exec(c);\n    new ProcessBuilder(c).start();\n  }\n}", &[Exec]),
            ("java", "class A {\n  void f(Statement s, String id) throws Exception {$0\n    s.executeQuery(\"SELECT * FROM t WHERE id = \" + id);\n    s.executeQuery(String.format(\"SELECT %s\", id));\n    engine.eval(script);\n  }\n}", &[Eval, Sql]),
            ("java", "class A {\n  void f(Connection c) throws Exception {$0\n    c.prepareStatement(\"SELECT * FROM t WHERE id = ?\");\n    new File(\"/etc/hosts\");\n  }\n}", &[]),
            ("java", "class A {\n  Object f(InputStream in, String p) throws Exception {$0\n    MessageDigest.getInstance(\"MD5\");\n    new File(p);\n    return new ObjectInputStream(in).readObject();\n  }\n}", &[Crypto, Deserialize, PathFromInput]),
            ("ruby", "def f(cmd)$0\n  system(\"ls \" + cmd)\n  `ls #{cmd}`\n  %x(ls)\n  Open3.popen3(cmd)\nend\n", &[Exec]),
            ("ruby", "def f(x)$0\n  eval(x)\n  obj.instance_eval(x)\n  User.where(\"name = '#{x}'\")\n  Digest::MD5.hexdigest(x)\n  Marshal.load(x)\n  File.read(x)\nend\n", &[Eval, Sql, Crypto, Deserialize, PathFromInput]),
            ("ruby", "def f(x)$0\n  puts x\n  User.where(name: x)\n  User.where(\"name = ?\", x)\n  File.read(CONFIG)\n  File.read(\"/etc/hosts\")\n  require \"json\"\nend\n", &[]),
            ("php", "<?php\nfunction f($x) {$0\n    exec(\"ls \" . $x);\n    `ls $x`;\n}\n", &[Exec]),
            ("php", "<?php\nfunction f($db, $x) {$0\n    mysqli_query($db, \"SELECT * FROM t WHERE id = $x\");\n    $db->query(\"SELECT * FROM t WHERE id = \" . $x);\n    eval($x);\n    md5($x);\n    unserialize($x);\n    file_get_contents($x);\n}\n", &[Eval, Sql, Crypto, Deserialize, PathFromInput]),
            ("php", "<?php\nfunction f($db, $x) {$0\n    mysqli_query($db, \"SELECT 1\");\n    $db->query('SELECT * FROM t WHERE id = ?');\n    $db->query(\"SELECT \" . \"1\");\n    file_get_contents(\"config.json\");\n    strlen($x);\n}\n", &[]),
            ("lua", "function f(x)$0\n  os.execute(\"ls \" .. x)\n  local g = loadstring(x)\n  io.open(x)\n  io.open(\"/etc/hosts\")\nend\n", &[Exec, Eval, PathFromInput]),
            ("lua", "function f(conn, x)$0\n  conn:execute(\"SELECT * FROM t WHERE id = \" .. x)\n  conn:execute(\"SELECT 1\")\n  print(x)\nend\n", &[Sql]),
            ("bash", "f() {$0\n  eval \"$1\"\n  sh -c \"ls $1\"\n  mysql -e \"SELECT * FROM t WHERE id=$1\"\n  openssl enc -aes-256-cbc\n  rm -rf \"$DIR/$1\"\n}\n", &[Exec, Eval, Sql, Crypto, PathFromInput]),
            ("bash", "f() {$0\n  source \"$1\"\n}\n", &[Eval]),
            ("bash", "f() {$0\n  source ./lib.sh\n  echo \"$1\"\n  rm -rf ./build\n  sh ./script.sh\n  mysql -e \"SELECT 1\"\n}\n", &[]),
            ("plaintext", "os.system(cmd)$0\n", &[]),
        ];
        for &(lang, src, want) in cases {
            let (_, _, f) = run(lang, src);
            let mut kinds: Vec<SensitiveKind> = f.sensitive_calls.iter().map(|c| c.kind).collect();
            kinds.sort();
            kinds.dedup();
            assert_eq!(kinds, want, "{lang}: {src:?}\n{:#?}", f.sensitive_calls);
            assert_eq!(f.is_sensitive(), !want.is_empty());
        }
    }

    #[test]
    fn sensitive_call_reports_line_and_first_line_of_text() {
        let (_, _, f) = run(
            "python",
            "def f(cmd):$0\n    x = 1\n    subprocess.run(\n        cmd, shell=True)\n",
        );
        assert_eq!(
            f.sensitive_calls,
            vec![SensitiveCall {
                kind: Exec,
                line: 2,
                text: "subprocess.run(".into(),
            }]
        );
    }

    #[test]
    fn size_features() {
        let (_, target, f) = run("rust", "fn f() {$0\n    é();\n}\n");
        assert_eq!(target.range, 0..20);
        assert_eq!(
            (f.node_kind.as_str(), f.lines, f.tokens),
            ("function_item", 3, 5)
        );
        assert_eq!(f.complexity(), 1);
        // A whole file's final line break does not count as a line.
        let (_, target, f) = run("plaintext", "a\nb$0\n");
        assert_eq!((target.kind.as_str(), f.lines), ("file", 2));
    }

    #[test]
    fn selection_counts_only_what_starts_inside() {
        let text = "fn f(x: u8) {\n    if x > 0 {\n        while x > 1 {\n            if x == 2 {}\n        }\n    }\n}\n";
        let rope = Rope::from_str(text);
        let tree = parse(Language::Rust, text);
        let start = text.find("while").unwrap_or(0);
        let end = text.find("\n    }\n}").unwrap_or(0);
        let target = selection_target(&rope, start..end);
        let f = features(&rope, tree.as_ref(), Language::Rust, &target);
        // The enclosing `if` is outside the selection; the `while` is the selection itself.
        assert_eq!((f.branches, f.max_nesting, f.lines), (2, 1, 3));
    }

    #[test]
    fn stale_tree_does_not_panic() {
        let old = "fn f() {\n    if a { b(\"é\"); }\n}\n";
        let tree = parse(Language::Rust, old);
        let rope = Rope::from_str("fn");
        for cursor in [0, 1, 2, 30, usize::MAX] {
            let t = enclosing_target(&rope, tree.as_ref(), Language::Rust, cursor);
            let _ = features(&rope, tree.as_ref(), Language::Rust, &t);
        }
        let t = Target {
            range: 0..usize::MAX,
            kind: "file".into(),
            name: None,
        };
        let f = features(&rope, tree.as_ref(), Language::Rust, &t);
        assert_eq!(f.lines, 1);
    }

    /// After each edit inside a 300-line function, the memo gives the features of a full
    /// walk while visiting a small part of the nodes: the edited statement and the path to
    /// it. Edits: typing inside a line, a new line with a sensitive call, a new nesting
    /// level, a syntax error and its fix, a line above the function (everything shifts).
    #[test]
    fn memo_after_edits_matches_a_full_walk_and_visits_little() {
        let mut text = String::from("import subprocess\n\ndef handler(request, db):\n");
        for i in 0..100 {
            text.push_str(&format!("    if request.get(\"k{i}\") and request.user:\n"));
            text.push_str(&format!(
                "        db.execute(f\"SELECT * FROM t WHERE n = {{request.id}} {i}\")\n"
            ));
            text.push_str("        subprocess.run([\"ls\", request.path])\n");
        }
        let mut docs = Documents::default();
        docs.open_parsed("file:///t", Language::Python, 1, &text);
        let mut memo = FeaturesMemo::default();
        // (line, col, inserted text)
        let edits: &[(u32, u32, &str)] = &[
            (150, 20, "x"),
            (150, 21, "y"),
            (151, 0, "        eval(request.body)\n"),
            (
                152,
                0,
                "        for x in request.items:\n            if x:\n                pass\n",
            ),
            (160, 8, "if ("),
            (160, 12, ") and z"),
            (0, 0, "import os\n"),
        ];
        let full = |docs: &Documents| {
            let snap = docs.snapshot("file:///t").unwrap();
            let cursor = snap.rope.line_to_byte(140);
            let target = enclosing_target(&snap.rope, snap.tree.as_ref(), Language::Python, cursor);
            let (full, visited) = walk_features(
                &snap.rope,
                snap.tree.as_ref(),
                Language::Python,
                &target,
                None,
            );
            (snap, target, full, visited)
        };
        let (snap, target, plain, visited) = full(&docs);
        assert_eq!(
            memo.features(&snap.rope, snap.tree.as_ref(), Language::Python, &target),
            plain
        );
        assert_eq!(
            memo.last_walk_nodes(),
            visited,
            "the first walk visits every node"
        );
        assert_eq!(
            memo.features(&snap.rope, snap.tree.as_ref(), Language::Python, &target),
            plain
        );
        assert_eq!(
            memo.last_walk_nodes(),
            1,
            "an unchanged tree: the target is known"
        );
        for (n, &(line, col, inserted)) in edits.iter().enumerate() {
            insert(&mut docs, 2 + n as i32, (line, col), inserted);
            let (snap, target, plain, visited) = full(&docs);
            let memoised = memo.features(&snap.rope, snap.tree.as_ref(), Language::Python, &target);
            assert_eq!(memoised, plain, "after {inserted:?}");
            assert!(
                memo.last_walk_nodes() * 10 < visited,
                "after {inserted:?}: visited {} of {visited} nodes",
                memo.last_walk_nodes()
            );
        }
        let last = full(&docs).2;
        assert_eq!((last.branches, last.syntax_errors), (203, 0), "{last:?}");
        assert_eq!(last.sensitive_calls.len(), MAX_SENSITIVE_CALLS);
    }

    /// A subtree's text hash is the hash of its bytes, whichever rope pieces hold them and
    /// whatever piece the previous hash left cached; ranges past the end are clamped.
    #[test]
    fn text_hash_is_the_hash_of_the_bytes() {
        let text: String = (0..400).map(|i| format!("line {i} é✓\n")).collect();
        let rope = Rope::from_str(&text);
        assert!(
            rope.chunks().count() > 3,
            "the ranges must cross rope pieces"
        );
        let mut chunk = Chunk::default();
        for (start, end) in [
            (0, 10),
            (5, 3000),
            (1000, 1001),
            (2999, 5800),
            (0, text.len()),
            (7, 7),
        ] {
            let want = xxh3_128(&text.as_bytes()[start..end]);
            assert_eq!(
                text_hash(&rope, &mut chunk, start..end),
                want,
                "{start}..{end}"
            );
            assert_eq!(text_hash(&rope, &mut Chunk::default(), start..end), want);
        }
        let end = text.len();
        assert_eq!(
            text_hash(&rope, &mut chunk, end - 4..end + 100),
            xxh3_128(&text.as_bytes()[end - 4..])
        );
    }
}
