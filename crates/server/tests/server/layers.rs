//! The server's modules (and the agent's) import in one direction: leaves (the CA model,
//! config, errors, text, metrics) below the services that take the store, below the
//! shared state and the runtime, below the HTTP glue. A cycle fails this test, naming it.
//!
//! A module depends on another when it names `crate::that` (in a `use` or a path), and on
//! the crate root when it names one of the root's own items; a type's inherent `impl`
//! block in another module makes the type's module depend on that one (its methods are
//! called as the type's own), so an `impl AppState` cannot hide a cycle either.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crate root: it declares every module, so any module naming it closes a cycle.
const ROOT: &str = "(crate root)";

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source a module is made of, without comments, string contents or its unit tests.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let after_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            // A comment (doc links are not imports), to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == 'r' && !after_ident {
            // A raw string, `r"…"` or `r#"…"#`: it ends at a quote with as many hashes.
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) == Some(&'"') {
                let mut j = i + 2 + hashes;
                while j < chars.len()
                    && !(chars[j] == '"'
                        && chars[j + 1..].iter().take(hashes).all(|&c| c == '#')
                        && chars.len() >= j + 1 + hashes)
                {
                    j += 1;
                }
                out.push_str("\"\"");
                i = j + 1 + hashes;
                continue;
            }
        }
        if c == '"' {
            // A string (a path inside a message is not an import).
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
            continue;
        }
        if c == '\'' {
            // A character literal (`'"'`, `'\''`); a lifetime (`'a`) is kept.
            let end = if chars.get(i + 1) == Some(&'\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 2 + p)
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            if let Some(end) = end {
                out.push_str("' '");
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first identifier of `text` (after spaces).
fn ident(text: &str) -> &str {
    let text = text.trim_start();
    let end = text.find(|c| !is_ident(c)).unwrap_or(text.len());
    &text[..end]
}

/// What follows each `crate::`: a name, or each first name of a `crate::{…}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && is_ident(code[..at].chars().next_back().unwrap()) {
            continue; // `evergreen_server::crate::…` does not occur; `foo_crate::` is not ours.
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        names.push(ident(&group[i..]).to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.push(ident(rest).to_owned());
        }
    }
    names
}

/// Type names a module defines (`struct`, `enum`, `type`, `trait`), and the types it has
/// inherent `impl` blocks for.
fn types(code: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut defined = BTreeSet::new();
    let mut implemented = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        let line = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        for keyword in ["struct ", "enum ", "type ", "trait "] {
            if let Some(rest) = line.strip_prefix(keyword) {
                defined.insert(ident(rest).to_owned());
            }
        }
        if let Some(rest) = line.strip_prefix("impl") {
            let rest = match rest.strip_prefix('<') {
                Some(generics) => &generics[generics.find('>').map_or(0, |i| i + 1)..],
                None => rest,
            };
            if !rest.starts_with([' ', '<']) || line.contains(" for ") {
                continue;
            }
            // The type's last path segment: `impl crate::state::AppState` is `AppState`.
            let path = rest.trim_start();
            let path = &path[..path.find([' ', '<', '{']).unwrap_or(path.len())];
            implemented.insert(path.rsplit("::").next().unwrap_or(path).to_owned());
        }
    }
    (defined, implemented)
}

/// The module graph of the crate whose sources are the `.rs` files of `src` (one level:
/// these crates keep every module in its own file).
fn graph(src: &Path) -> Graph {
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            !path.is_dir(),
            "{}: a module directory; teach this test to read it",
            path.display()
        );
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let name = if stem == "lib" || stem == "main" {
                ROOT.to_owned()
            } else {
                stem
            };
            sources.insert(name, code(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut defined_in = BTreeMap::new();
    let mut impls = Vec::new();
    for (module, code) in &sources {
        let (defined, implemented) = types(code);
        for name in defined {
            defined_in.insert(name, module.clone());
        }
        impls.extend(implemented.into_iter().map(|t| (module.clone(), t)));
        if module == ROOT {
            // The root declares every module.
            graph
                .get_mut(ROOT)
                .unwrap()
                .extend(modules.iter().filter(|m| *m != ROOT).cloned());
            continue;
        }
        for name in crate_paths(code) {
            let target = if modules.contains(&name) && name != ROOT {
                name
            } else {
                ROOT.to_owned()
            };
            if &target != module {
                graph.get_mut(module).unwrap().insert(target);
            }
        }
    }
    for (module, ty) in impls {
        if let Some(home) = defined_in.get(&ty)
            && home != &module
        {
            graph.get_mut(home).unwrap().insert(module);
        }
    }
    graph
}

/// A cycle of `graph`, if it has one, as the modules along it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'a>(
        graph: &'a Graph,
        node: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in &graph[node] {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(graph, start, &mut Vec::new(), &mut done))
}

#[test]
fn the_server_and_the_agent_have_no_module_cycle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (name, at_least) in [("server", 20), ("agent", 5)] {
        let graph = graph(&crates.join(name).join("src"));
        assert!(
            graph.len() >= at_least,
            "{name}: {} modules read",
            graph.len()
        );
        if let Some(cycle) = cycle(&graph) {
            panic!(
                "{name}: modules import each other in a cycle: {}",
                cycle.join(" → ")
            );
        }
    }
}

/// The check itself: it sees a cycle through a path, a `use` group, the crate root and an
/// inherent `impl` in another module, and none in a chain.
#[test]
fn the_module_check_finds_every_kind_of_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.path().join(file), text).unwrap();
    let check = || cycle(&graph(dir.path()));
    write("lib.rs", "mod a;\nmod b;\nmod c;\npub fn start() {}\n");
    write(
        "a.rs",
        "use crate::b::Thing;\n// crate::c in a comment is no import\n",
    );
    write(
        "b.rs",
        "pub struct Thing;\nfn f() { let _ = \"crate::a\"; }\n",
    );
    write("c.rs", "#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n");
    assert_eq!(check(), None, "a → b is a chain");
    write("c.rs", "use crate::{b::Thing, a};\n");
    write("b.rs", "pub struct Thing;\nfn f() { crate::c::g(); }\n");
    assert!(check().is_some(), "b → c → b, c naming b in a use group");
    write("b.rs", "pub struct Thing;\n");
    write("c.rs", "fn f() { crate::start(); }\n");
    assert!(check().is_some(), "naming the root's items is a cycle");
    write("c.rs", "impl crate::b::Thing {\n    fn g(&self) {}\n}\n");
    assert!(
        check().is_some(),
        "Thing's methods live in c, so b depends on c, and c names b"
    );
    write("c.rs", "impl std::fmt::Debug for crate::b::Thing {}\n");
    assert_eq!(check(), None, "a trait impl adds no inherent methods");
    write(
        "c.rs",
        "const A: &str = r#\"{\"code\"}\"#;\nconst B: char = '\"';\nfn f<'a>(_: &'a str) { crate::a::g(); }\n",
    );
    write("a.rs", "use crate::c;\n");
    assert!(
        check().is_some(),
        "quotes inside a raw string or a char literal hide no import: c → a → c"
    );
}
