//! Test support for the parts of `docs/` written from the code (the route table, the RPC
//! methods, the gRPC error table): each lies between `<!-- NAME:begin -->` and
//! `<!-- NAME:end -->`, and a test fails when the file and the code disagree, so the docs
//! cannot drift. `SLUICE_BLESS=1` rewrites the sections instead.

/// `text` with what stands between `<!-- NAME:begin -->` and `<!-- NAME:end -->` replaced
/// by `generated` (unchanged but marked without the markers: the check then fails).
pub(crate) fn splice(text: &str, name: &str, generated: &str) -> String {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => format!(
            "{}{begin}\n{}\n{}",
            &text[..b],
            generated.trim(),
            &text[e..]
        ),
        _ => format!("{text}\n(markers {begin} ... {end} missing)"),
    }
}

/// Checks (or with `SLUICE_BLESS=1` rewrites) `docs/DOC`'s generated `sections`; `test`
/// names the test to run to bless. Returns the file's text as it was.
pub(crate) fn check(doc: &str, sections: &[(&str, String)], test: &str) -> String {
    let path = format!("{}/../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    let expected = sections
        .iter()
        .fold(actual.clone(), |text, (name, generated)| {
            splice(&text, name, generated)
        });
    if std::env::var("SLUICE_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &expected).expect("write the doc");
        return expected;
    }
    assert!(
        actual == expected,
        "docs/{doc} is out of date: run `SLUICE_BLESS=1 cargo test -p sluice-http-gateway {test}`"
    );
    actual
}
