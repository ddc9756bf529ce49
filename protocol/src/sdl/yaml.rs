//! A small YAML tree with a line on every node, built from `saphyr-parser` events.
//!
//! Scalars keep their source text (no floats: `0.5` stays `"0.5"`), so units and prices are
//! parsed exactly later. The builder uses an explicit stack, bounds the depth, the input size
//! and alias expansion, and refuses duplicate keys (as Akash's Go YAML decoder does). Only the
//! first document is read, as Akash does.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::error::SdlError;

/// Largest SDL text accepted, in bytes. Real files are a few KiB.
pub const MAX_SDL_BYTES: usize = 1024 * 1024;
/// Deepest nesting of maps and lists accepted. Real files nest about 8 deep.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may have once aliases are expanded ("billion laughs" guard).
pub const MAX_NODES: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// 1-based line where the node starts.
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `plain` is false for quoted and block scalars: those are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub text: String,
    pub line: usize,
}

impl Node {
    /// Plain `~`, `null`, empty: YAML's null.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What the node is, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "nothing (null)",
            Kind::Scalar { .. } => "a value",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + v.size()).sum::<usize>(),
        }
    }
}

enum Frame {
    Seq { line: usize, anchor: usize, items: Vec<Node> },
    Map { line: usize, anchor: usize, entries: Vec<(Key, Node)>, key: Option<Key> },
}

fn line_of(span: &Span) -> usize {
    span.start.line().max(1)
}

fn yaml_error(line: usize, column: usize, message: impl Into<String>) -> SdlError {
    SdlError::Yaml { line, column, message: message.into() }
}

/// Parses the first YAML document of `text`; `Ok(None)` for an empty stream.
pub(crate) fn load(text: &str) -> Result<Option<Node>, SdlError> {
    if text.len() > MAX_SDL_BYTES {
        return Err(yaml_error(
            1,
            1,
            format!("the file is {} bytes; at most {MAX_SDL_BYTES} are accepted", text.len()),
        ));
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut in_document = false;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            yaml_error(e.marker().line().max(1), e.marker().col() + 1, e.info().to_owned())
        })?;
        let line = line_of(&span);
        let (node, anchor) = match event {
            Event::StreamStart | Event::Nothing => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if in_document || root.is_some() {
                    break;
                }
                in_document = true;
                continue;
            }
            Event::DocumentEnd => break,
            Event::Scalar(value, style, anchor, tag) => {
                // `!!str 5` is a string; other tags do not change how the value is read.
                let string_tag =
                    tag.as_ref().is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let plain = matches!(style, ScalarStyle::Plain) && !string_tag;
                (Node { line, kind: Kind::Scalar { text: value.into_owned(), plain } }, anchor)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(yaml_error(
                        line,
                        span.start.col() + 1,
                        format!("nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { line, anchor, items: Vec::new() }
                } else {
                    Frame::Map { line, anchor, entries: Vec::new(), key: None }
                };
                stack.push(frame);
                nodes += 1;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { line, anchor, items }) => {
                    (Node { line, kind: Kind::Seq(items) }, anchor)
                }
                Some(Frame::Map { line, anchor, entries, key }) => {
                    if let Some(k) = key {
                        return Err(yaml_error(
                            k.line,
                            1,
                            format!("key {:?} has no value", k.text),
                        ));
                    }
                    (Node { line, kind: Kind::Map(entries) }, anchor)
                }
                None => {
                    return Err(yaml_error(
                        line,
                        span.start.col() + 1,
                        "unbalanced end of a collection",
                    ))
                }
            },
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(yaml_error(
                        line,
                        span.start.col() + 1,
                        "alias to an unknown anchor",
                    ));
                };
                nodes = nodes.saturating_add(target.size());
                if nodes > MAX_NODES {
                    return Err(yaml_error(
                        line,
                        span.start.col() + 1,
                        format!("more than {MAX_NODES} nodes once aliases are expanded"),
                    ));
                }
                let mut copy = target.clone();
                copy.line = line;
                (copy, 0)
            }
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(yaml_error(line, 1, format!("more than {MAX_NODES} nodes")));
        }
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => {
                root = Some(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let Kind::Scalar { text, .. } = node.kind else {
                        return Err(yaml_error(
                            node.line,
                            1,
                            "a map key must be a plain value, not a list or map",
                        ));
                    };
                    if text == "<<" {
                        return Err(yaml_error(
                            node.line,
                            1,
                            "YAML merge keys (<<) are not supported; write the keys out",
                        ));
                    }
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == text) {
                        return Err(yaml_error(
                            node.line,
                            1,
                            format!("key {text:?} is already defined at line {}", first.line),
                        ));
                    }
                    *key = Some(Key { text, line: node.line });
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    if !stack.is_empty() {
        return Err(yaml_error(
            text.lines().count().max(1),
            1,
            "the document ends inside a list or map",
        ));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scalar_text_and_lines() {
        let n = load("a: 0.5\nb:\n  - 'x'\n  - 1Gi\n").unwrap().unwrap();
        let Kind::Map(entries) = &n.kind else { panic!("not a map") };
        assert_eq!(entries[0].0.text, "a");
        assert_eq!(entries[0].1.kind, Kind::Scalar { text: "0.5".into(), plain: true });
        assert_eq!(entries[1].0.line, 2);
        let Kind::Seq(items) = &entries[1].1.kind else { panic!("not a list") };
        assert_eq!(items[0].kind, Kind::Scalar { text: "x".into(), plain: false });
        assert_eq!(items[1].line, 4);
    }

    #[test]
    fn refuses_duplicates_depth_and_merge_keys() {
        let e = load("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("already defined at line 1"), "{e}");
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(load(&deep).is_err());
        let deep_block = "- ".repeat(500) + "x";
        assert!(load(&deep_block).unwrap_err().to_string().contains("nested deeper"));
        assert!(load("a: &x {b: 1}\nc:\n  <<: *x\n").is_err());
    }

    #[test]
    fn bounds_alias_expansion() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            s.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let e = load(&s).unwrap_err();
        assert!(e.to_string().contains("aliases"), "{e}");
    }

    #[test]
    fn reads_only_the_first_document() {
        let n = load("a: 1\n---\nb: [\n").unwrap().unwrap();
        assert!(matches!(n.kind, Kind::Map(ref e) if e.len() == 1));
        assert_eq!(load("").unwrap(), None);
    }
}
