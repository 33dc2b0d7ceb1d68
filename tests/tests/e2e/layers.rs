//! The layering of the library's modules, checked from its source: no module of `shared/src`
//! uses a module of a higher layer, and the modules' `crate::` references form no cycle.
//!
//! The layers are the ones `shared/src/lib.rs` and `docs/architecture.md` describe. A new
//! top-level module must be added to [`LAYERS`]; the test fails until it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every top-level module of the library, by layer, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "ids",
            "clock",
            "redis_url",
            "telemetry",
            "events",
            "schedule",
            "config",
        ],
    ),
    ("storage", &["store"]),
    (
        "domain",
        &[
            "wechat", "throttle", "token", "confirm", "import", "webhook", "sync", "export",
            "inspect",
        ],
    ),
    ("service", &["worker", "serve", "sandbox"]),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The top-level module a file belongs to: `store/lease.rs` → `store`, `clock.rs` → `clock`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file under shared/src");
    let first = rel.components().next().expect("a non-empty path");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("reading shared/src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments (line and block) and without string literals, so a module named
/// in prose or in a message is not taken for a use of it.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            (b'r', Some(b'#' | b'"')) if i == 0 || !is_ident(bytes[i - 1]) => {
                // A raw string r"…" or r#"…"#: skip to the closing quote and as many hashes.
                let mut j = i + 1;
                let mut hashes = 0;
                while bytes.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if bytes.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let closing: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < bytes.len() && !bytes[j..].starts_with(&closing) {
                    j += 1;
                }
                i = j + closing.len();
                out.push_str("\"\"");
            }
            (b'"', _) => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            (b'\'', _) => {
                // A char literal ('x', '\n', '\'') or a lifetime ('a): copy a lifetime as is.
                let end = if bytes.get(i + 1) == Some(&b'\\') {
                    bytes[i + 2..]
                        .iter()
                        .position(|&b| b == b'\'')
                        .map(|p| i + 2 + p)
                } else if bytes.get(i + 2) == Some(&b'\'') {
                    Some(i + 2)
                } else {
                    None
                };
                match end {
                    Some(end) => {
                        out.push_str("' '");
                        i = end + 1;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            (b, _) => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The top-level modules a file names through `crate::` paths, including grouped imports
/// (`use crate::{a::X, b}`) and the root re-exports (`crate::AppId` → the module that defines it).
fn referenced_modules(code: &str, reexports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].bytes().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|b| is_ident(b) && b != b'$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The first path segment of every item at the group's top level.
            let mut depth = 0usize;
            let mut segment_start = true;
            let mut ident = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => segment_start = true,
                    c if is_ident(c as u8) && c.is_ascii() => {
                        if segment_start {
                            ident.push(c);
                        }
                    }
                    _ => {
                        if !ident.is_empty() {
                            found.insert(std::mem::take(&mut ident));
                            segment_start = false;
                        }
                    }
                }
            }
            if !ident.is_empty() {
                found.insert(ident);
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii() && is_ident(*c as u8))
                .collect();
            if !ident.is_empty() {
                found.insert(ident);
            }
        }
    }
    found
        .into_iter()
        .filter_map(|name| {
            if name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                reexports.get(&name).cloned()
            } else if name == "self" {
                None
            } else {
                Some(name)
            }
        })
        .collect()
}

/// The code without its `#[cfg(test)] mod … { … }` blocks: a unit test may use the sandbox or
/// any other module as a fixture without the library depending on it.
fn without_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        if !after.starts_with("mod ") {
            out.push_str("#[cfg(test)]");
            rest = &rest[at + "#[cfg(test)]".len()..];
            continue;
        }
        let Some(open) = after.find(['{', ';']) else {
            return out;
        };
        if after.as_bytes()[open] == b';' {
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, b) in after.bytes().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `pub use module::{A, B};` lines of lib.rs: which module each root re-export comes from.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in code_only(lib).lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim_end_matches(';');
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            let name = item.rsplit("::").next().unwrap_or(item);
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    map
}

/// Module → the modules it uses, from every file of shared/src except lib.rs.
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src_dir();
    let lib = fs::read_to_string(src.join("lib.rs")).expect("reading shared/src/lib.rs");
    let reexports = root_reexports(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        if file == src.join("lib.rs") {
            continue;
        }
        let module = module_of(&src, &file);
        let code = without_test_modules(&code_only(
            &fs::read_to_string(&file).expect("reading a source file"),
        ));
        let uses = graph.entry(module.clone()).or_default();
        uses.extend(
            referenced_modules(&code, &reexports)
                .into_iter()
                .filter(|m| *m != module),
        );
    }
    graph
}

#[test]
fn every_module_is_in_a_layer() {
    let missing: Vec<String> = dependency_graph()
        .into_keys()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "modules of shared/src with no layer: {missing:?}; add each to LAYERS in \
         tests/tests/e2e/layers.rs, to lib.rs's Layout and to docs/architecture.md"
    );
}

#[test]
fn no_module_uses_a_higher_layer() {
    let mut violations = Vec::new();
    for (module, uses) in dependency_graph() {
        let Some(own) = layer_of(&module) else {
            continue;
        };
        for used in uses {
            if let Some(theirs) = layer_of(&used)
                && theirs > own
            {
                violations.push(format!(
                    "{module} ({}) uses {used} ({})",
                    LAYERS[own].0, LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn modules_form_no_cycle() {
    let graph = dependency_graph();
    // Depth-first search with colours; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, Colour>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(node.to_owned(), Colour::Grey);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match colour.get(next).copied().unwrap_or(Colour::White) {
                Colour::Grey => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Colour::White => {
                    if let Some(cycle) = visit(next, graph, colour, path) {
                        return Some(cycle);
                    }
                }
                Colour::Black => {}
            }
        }
        path.pop();
        colour.insert(node.to_owned(), Colour::Black);
        None
    }
    let mut colour = BTreeMap::new();
    for node in graph.keys() {
        if colour.get(node).copied().unwrap_or(Colour::White) == Colour::White
            && let Some(cycle) = visit(node, &graph, &mut colour, &mut Vec::new())
        {
            panic!("import cycle between modules: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_reference_scanner_sees_grouped_and_reexported_uses() {
    let reexports = root_reexports("pub use ids::{AppId, BatchId};\npub use clock::Clock;\n");
    let code = code_only(
        "use crate::{store::{Keys, Queue}, wechat};\n\
         // crate::worker is only named in a comment\n\
         let s = \"crate::import in a string\";\n\
         fn f(a: crate::AppId, c: &crate::Clock) -> crate::token::T { todo!() }\n",
    );
    let code = without_test_modules(&format!(
        "{code}#[cfg(test)]\nmod tests {{ use crate::sandbox::Sandbox; fn g() {{ }} }}\nuse crate::events;\n"
    ));
    let found = referenced_modules(&code, &reexports);
    let expected: BTreeSet<String> = ["store", "wechat", "ids", "clock", "token", "events"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}
