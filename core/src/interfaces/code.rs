//! What steps, services and jobs share: their language, base class and code file.

use sha2::{Digest, Sha256};

use super::yaml::{Ctx, Fields};
use super::Code;

pub(super) const SUPPORTED_LANG: &str = "python";

/// The required `lang`, which must be Python.
pub(super) fn lang(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<String> {
    let (lang, line) = fields.req_string(ctx, "lang")?;
    if lang == SUPPORTED_LANG {
        Some(lang)
    } else {
        ctx.error(
            line,
            format!("lang '{lang}' is not supported; Sluice supports only '{SUPPORTED_LANG}'"),
        );
        None
    }
}

/// The required `base-class-name`, which must be `supported`.
pub(super) fn base_class(ctx: &mut Ctx, fields: &Fields<'_>, supported: &str) -> Option<String> {
    let (base, line) = fields.req_string(ctx, "base-class-name")?;
    if base == supported {
        Some(base)
    } else {
        ctx.error(
            line,
            format!(
                "base-class-name '{base}' is not supported yet; \
                 Sluice supports only {supported} now"
            ),
        );
        None
    }
}

/// The required `code`: the file named relative to the YAML file's directory, as Qorus's
/// oload reads it, with its hash.
pub(super) fn code(ctx: &mut Ctx, fields: &Fields<'_>) -> Option<Code> {
    let (file, line) = fields.req_string(ctx, "code")?;
    read_code(ctx, &file, line)
}

fn read_code(ctx: &mut Ctx, file: &str, line: usize) -> Option<Code> {
    let dir = ctx.file().parent().unwrap_or(std::path::Path::new(""));
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(source) => {
            let hash = hex(&Sha256::digest(source.as_bytes()));
            Some(Code { path, source, hash })
        }
        Err(err) => {
            ctx.error(
                line,
                format!(
                    "key 'code': cannot read code file '{file}' ({}): {err}",
                    path.display()
                ),
            );
            None
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}
