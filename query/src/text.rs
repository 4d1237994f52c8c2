//! Writing DriftQL text from names that come from outside (model ids, versions): identifiers
//! as they are, anything else as a string, so no name can end a string early and add clauses
//! to a query. The server's HTTP series routes, its rule evaluator and the report builder write
//! their queries through these.

/// Whether `s` is a DriftQL identifier, `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name (model id, version) as DriftQL text: as is when it is an identifier, otherwise a
/// double-quoted string with `"` and `\` escaped (DriftQL's only escapes), so the name can
/// never end the string early and add clauses to the query.
pub fn name(s: &str) -> String {
    if is_identifier(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `model` or `model@version` as DriftQL text.
pub fn model_ref(model: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{}@{}", name(model), name(v)),
        None => name(model),
    }
}
