//! The docs name only commands, flags and stack names that exist.
//!
//! Every `relay <subcommand> ... --flag` in the code of README.md and docs/*.md (fenced
//! blocks and inline code; `cargo run -p relay-cli -- <subcommand>` too) is checked
//! against the built binary's `relay <subcommand> --help`: an unknown subcommand or a flag
//! that subcommand does not take fails, with file and line. Stack outputs and parameters
//! the docs name (CamelCase words ending in `Url`, `Name` or `Arn`, and overrides such as
//! `MappingsParameter=...`), and those the commands' help texts name, must exist in
//! template.yaml. Generic: a subcommand
//! documented later is checked once it is documented, against whatever the binary has.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md and every docs/*.md, as (name, text).
fn documents() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The code of a Markdown text with the line it starts on: each line of a fenced block
/// (a line ending in ` \` joined with the next), and each inline code span elsewhere.
fn code_segments(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_fence = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            if let Some(p) = pending.take() {
                out.push(p);
            }
            continue;
        }
        if in_fence {
            let (start, mut joined) = pending.take().unwrap_or((n, String::new()));
            joined.push_str(line);
            match joined.strip_suffix('\\') {
                Some(rest) => pending = Some((start, format!("{rest} "))),
                None => out.push((start, joined)),
            }
        } else {
            // Inline code: the text between pairs of backticks.
            for (k, part) in line.split('`').enumerate() {
                if k % 2 == 1 {
                    out.push((n, part.to_string()));
                }
            }
        }
    }
    out.extend(pending);
    out
}

/// A documented invocation: subcommand (None: `relay --flag` alone) and its flags.
#[derive(Debug)]
struct Invocation {
    subcommand: Option<String>,
    /// The plain word after the subcommand, if any (a nested subcommand such as
    /// `dlq list`, or a positional argument).
    next_word: Option<String>,
    flags: Vec<String>,
}

fn flag_of(token: &str) -> Option<String> {
    let t = token.trim_start_matches(['[', '(', '`', '"', '\'']);
    let rest = t.strip_prefix("--")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase()))
        .then(|| format!("--{name}"))
}

/// The `relay` invocations in one code segment.
fn invocations(segment: &str) -> Vec<Invocation> {
    let tokens: Vec<&str> = segment.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].trim_start_matches(['`', '$', '(']);
        let start = if token == "relay" {
            Some(i + 1)
        } else if token == "relay-cli" && tokens.get(i + 1) == Some(&"--") {
            Some(i + 2)
        } else {
            None
        };
        let Some(mut j) = start else {
            i += 1;
            continue;
        };
        let subcommand = match tokens.get(j) {
            Some(t) if t.starts_with("--") => None,
            Some(t) => {
                let word: String = t
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                    .collect();
                // `relay.toml`, `relay's`: not an invocation.
                if word.is_empty() || word.len() != t.trim_end_matches(['`', ')']).len() {
                    i += 1;
                    continue;
                }
                j += 1;
                Some(word)
            }
            None => {
                i += 1;
                continue;
            }
        };
        let next_word = tokens
            .get(j)
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .map(|t| (*t).to_string());
        let mut flags = Vec::new();
        let mut depth = 0i32;
        while let Some(t) = tokens.get(j) {
            if matches!(*t, "&&" | ";" | "||" | "#") || t.starts_with('#') {
                break;
            }
            if *t == "|" && depth <= 0 {
                break;
            }
            let trimmed = t.trim_start_matches(['`', '$', '(']);
            if trimmed == "relay" || trimmed == "relay-cli" {
                break;
            }
            depth += i32::try_from(t.matches('[').count()).unwrap();
            depth -= i32::try_from(t.matches(']').count()).unwrap();
            flags.extend(flag_of(t));
            j += 1;
        }
        out.push(Invocation {
            subcommand,
            next_word,
            flags,
        });
        i = j;
    }
    out
}

fn help(args: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `help` documents `flag` (as `--flag`, not as the start of a longer one).
fn takes(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        let next = help[at + flag.len()..].chars().next();
        let before = help[..at].chars().last();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// The subcommands `relay --help` lists.
fn subcommands() -> BTreeSet<String> {
    commands_of(&help(&[]).unwrap())
}

/// The commands a help text lists under `Commands:`.
fn commands_of(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_documented_command_and_flag_exists() {
    let known = subcommands();
    assert!(
        known.contains("plan") && known.contains("send"),
        "{known:?}"
    );
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (name, text) in documents() {
        for (line, segment) in code_segments(&text) {
            for inv in invocations(&segment) {
                if let Some(sub) = &inv.subcommand
                    && !known.contains(sub)
                {
                    problems.push(format!(
                        "{name}:{line}: `relay {sub}`: no such subcommand (relay --help lists {known:?})"
                    ));
                    continue;
                }
                let mut args: Vec<String> = inv.subcommand.iter().cloned().collect();
                if let (Some(sub), Some(word)) = (&inv.subcommand, &inv.next_word) {
                    let outer = helps
                        .entry(sub.clone())
                        .or_insert_with(|| help(&[sub.as_str()]).unwrap());
                    // `relay dlq list --flag`: the flags belong to the nested subcommand.
                    if commands_of(outer).contains(word) {
                        args.push(word.clone());
                    }
                }
                let key = args.join(" ");
                let text = helps.entry(key.clone()).or_insert_with(|| {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    help(&args).unwrap()
                });
                for flag in &inv.flags {
                    checked += 1;
                    if flag != "--help" && flag != "--version" && !takes(text, flag) {
                        problems.push(format!("{name}:{line}: `relay {key}` has no flag {flag}"));
                    }
                }
            }
        }
    }
    assert!(
        checked >= 20,
        "the docs name flags; only {checked} found: the extraction is broken"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Logical ids of one top-level section of template.yaml (`Parameters`, `Outputs`, ...).
fn template_section(section: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    text.lines()
        .skip_while(|l| *l != format!("{section}:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter_map(|l| {
            let id = l.strip_prefix("  ")?.strip_suffix(':')?;
            id.chars()
                .all(|c| c.is_ascii_alphanumeric())
                .then(|| id.to_string())
        })
        .collect()
}

/// CamelCase words ending in `Url`, `Name` or `Arn`, and `...Parameter=` overrides, in `text`.
fn stack_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // `ssm:GetParameter` is an IAM action, not a stack name.
    for raw in text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '='))
        .filter(|w| !w.contains(':'))
    {
        let (word, assigned) = match raw.split_once('=') {
            Some((w, _)) => (w, true),
            None => (raw, false),
        };
        let camel = word.len() > 4
            && word.starts_with(|c: char| c.is_ascii_uppercase())
            && word.chars().all(|c| c.is_ascii_alphanumeric())
            && word.chars().skip(1).any(|c| c.is_ascii_uppercase())
            && word.chars().any(|c| c.is_ascii_lowercase());
        // AWS API operations (`GetParameter`, `PutItem`) are not stack names either.
        let operation = [
            "Get", "Put", "List", "Describe", "Delete", "Create", "Update",
        ]
        .iter()
        .any(|verb| word.starts_with(verb));
        let named = ["Url", "Name", "Arn"].iter().any(|s| word.ends_with(s))
            || (assigned && word.ends_with("Parameter"));
        if camel && !operation && named {
            out.insert(word.to_string());
        }
    }
    out
}

#[test]
fn every_stack_output_and_parameter_the_docs_and_help_name_exists() {
    let outputs = template_section("Outputs");
    let parameters = template_section("Parameters");
    assert!(outputs.contains("QueueUrl") && parameters.contains("LogLevel"));
    let exists = |n: &String| outputs.contains(n) || parameters.contains(n);
    let mut problems = Vec::new();
    let mut seen = 0;
    for (name, text) in documents() {
        for (line, segment) in code_segments(&text) {
            for n in stack_names(&segment) {
                seen += 1;
                if !exists(&n) {
                    problems.push(format!(
                        "{name}:{line}: `{n}` is neither an output nor a parameter of template.yaml"
                    ));
                }
            }
        }
    }
    for sub in subcommands() {
        for n in stack_names(&help(&[sub.as_str()]).unwrap()) {
            if !exists(&n) {
                problems.push(format!(
                    "`relay {sub} --help` names `{n}`, which template.yaml does not have"
                ));
            }
        }
    }
    assert!(
        seen >= 10,
        "only {seen} names found: the extraction is broken"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_extraction_finds_flags_and_refuses_made_up_ones() {
    let seg =
        "relay plan --mappings m.toml --source typeform [--payload e.json] && relay send --url x";
    let found = invocations(seg);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].subcommand.as_deref(), Some("plan"));
    assert_eq!(found[0].flags, ["--mappings", "--source", "--payload"]);
    assert_eq!(found[1].flags, ["--url"]);
    let cargo = invocations("cargo run -p relay-cli -- check-config --mappings m.toml");
    assert_eq!(cargo[0].subcommand.as_deref(), Some("check-config"));
    assert!(invocations("cp relay.example.toml relay.toml").is_empty());
    let plan = help(&["plan"]).unwrap();
    assert!(takes(&plan, "--payload"));
    assert!(
        !takes(&plan, "--pay"),
        "a prefix of a flag is not that flag"
    );
    assert!(!takes(&plan, "--dry-run"));
    assert_eq!(
        stack_names(
            "--queue <DeliveryQueueUrl> MappingsParameter=/x QueueUrl ssm:GetParameter GetParameter RefreshingParameter"
        ),
        ["DeliveryQueueUrl", "MappingsParameter", "QueueUrl"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
