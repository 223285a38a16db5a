//! The dependency rules of `docs/ARCHITECTURE.md`, enforced: every top-level module of `src/`
//! may use only the modules its row of the rules table lists (plus `error`, `output` and
//! `registry`, open to all). The table is read from the document itself, so the rules and the
//! check cannot drift apart. Product code only: `#[cfg(test)]` code and `tests.rs` files may use
//! any module for their fixtures. (After rust-analyzer's tidy tests.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Modules every module may use.
const OPEN_TO_ALL: [&str; 3] = ["error", "output", "registry"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The rules table: module -> the modules it may use.
fn rules() -> BTreeMap<String, BTreeSet<String>> {
    let doc = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let begin = doc.find("<!-- dependency-rules: begin -->").unwrap();
    let end = doc.find("<!-- dependency-rules: end -->").unwrap();
    doc[begin..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let names = |cell: &str| -> Vec<String> {
                cell.split(',')
                    .map(|name| name.trim().trim_matches('`').to_string())
                    .filter(|name| !name.is_empty())
                    .collect()
            };
            let module = names(cells[1]).remove(0);
            (module, names(cells[2]).into_iter().collect())
        })
        .collect()
}

/// The top-level modules of `src/` (files and folders, without `lib.rs` and `main.rs`).
fn modules() -> BTreeSet<String> {
    fs::read_dir(root().join("src"))
        .unwrap()
        .map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.trim_end_matches(".rs").to_string()
        })
        .filter(|name| name != "lib" && name != "main")
        .collect()
}

/// The Rust files of module `module`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = root().join("src").join(format!("{module}.rs"));
    let mut files = Vec::new();
    if file.is_file() {
        files.push(file);
    }
    let mut folders = vec![root().join("src").join(module)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Names reachable at the crate root that are not modules, by the module that defines them:
/// macros exported there (`crate::name!`) and items `lib.rs` re-exports (`crate::Error`).
fn root_names() -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let lib = fs::read_to_string(root().join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (module, items) = path.trim_end_matches(';').split_once("::").unwrap();
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            names.insert(item.trim().to_string(), module.to_string());
        }
    }
    for module in modules() {
        for file in files_of(&module) {
            let text = fs::read_to_string(&file).unwrap();
            let mut exported = false;
            for line in text.lines().map(str::trim) {
                if line == "#[macro_export]" {
                    exported = true;
                } else if let Some(rest) = line.strip_prefix("macro_rules! ")
                    && exported
                {
                    let name = rest.trim_end_matches(" {").trim().to_string();
                    names.insert(name, module.clone());
                    exported = false;
                }
            }
        }
    }
    names
}

/// Every `crate::<module>` that the product code of `file` uses, with its line number; test
/// code (a `tests.rs` file, everything from the first `#[cfg(test)]`) and comments are skipped.
fn uses(file: &Path, root_names: &BTreeMap<String, String>) -> Vec<(String, usize)> {
    if file.file_name().is_some_and(|n| n == "tests.rs") {
        return Vec::new();
    }
    let text = fs::read_to_string(file).unwrap();
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = line.trim();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let module = root_names.get(&name).cloned().unwrap_or(name);
            found.push((module, index + 1));
        }
    }
    found
}

/// The forbidden edges of the source tree, as `module -> used (file:line)`.
fn forbidden_edges() -> Vec<String> {
    let rules = rules();
    let root_names = root_names();
    let mut forbidden = Vec::new();
    for module in modules() {
        let allowed = &rules[&module];
        for file in files_of(&module) {
            for (used, line) in uses(&file, &root_names) {
                let ok = used == module
                    || OPEN_TO_ALL.contains(&used.as_str())
                    || allowed.contains(&used);
                if !ok {
                    let relative = file.strip_prefix(root()).unwrap().display().to_string();
                    forbidden.push(format!("{module} -> {used} ({relative}:{line})"));
                }
            }
        }
    }
    forbidden
}

#[test]
fn every_module_has_a_row_and_every_row_a_module() {
    let rules: BTreeSet<String> = rules().into_keys().collect();
    let modules = modules();
    assert_eq!(
        rules, modules,
        "docs/ARCHITECTURE.md's dependency table must list exactly the modules of src/"
    );
    for (module, allowed) in self::rules() {
        for used in &allowed {
            assert!(
                modules.contains(used),
                "{module}'s row names `{used}`, which is not a module"
            );
        }
    }
}

#[test]
fn no_module_uses_one_its_row_does_not_allow() {
    let forbidden = forbidden_edges();
    assert!(
        forbidden.is_empty(),
        "forbidden dependencies (see docs/ARCHITECTURE.md):\n{}",
        forbidden.join("\n")
    );
}

#[test]
fn the_dependency_rules_have_no_cycle() {
    // Depth-first search over the allowed edges: a module reachable from itself would let two
    // libraries reach back into each other.
    let rules = rules();
    fn visit(
        module: &str,
        rules: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(module) {
            return;
        }
        assert!(
            !path.iter().any(|m| m == module),
            "cycle in docs/ARCHITECTURE.md's rules: {} -> {module}",
            path.join(" -> ")
        );
        path.push(module.to_string());
        for next in &rules[module] {
            visit(next, rules, path, done);
        }
        path.pop();
        done.insert(module.to_string());
    }
    let mut done = BTreeSet::new();
    for module in rules.keys() {
        visit(module, &rules, &mut Vec::new(), &mut done);
    }
}
