//! A tenant's statement as MariaDB will read it. The WIT speaks Postgres' `$1, $2` placeholders;
//! MariaDB binds `?` in order of appearance, so each `$n` becomes a `?` and the parameters are
//! laid out in that order (`$2 … $1 … $1` binds p2, p1, p1). The same pass refuses what
//! privileges cannot: statements that would leave state on a pooled session (`SET`, transaction
//! control, `HANDLER`, `PREPARE`, user variables), the server-wide named-lock functions, table
//! files placed outside the data directory (`DATA DIRECTORY` needs no privilege in MariaDB), and
//! executable comments (`/*! … */`, which the server runs but a reader takes for a comment).
//!
//! The lexer follows the session's quoting rules, which Wharf fixes and a tenant cannot change
//! (`SET` is refused): no `ANSI_QUOTES`, no `NO_BACKSLASH_ESCAPES`.

use crate::capabilities::HostError;

/// A statement ready for MariaDB: its text with `?`, and for each `?` the 0-based index of the
/// plugin parameter it binds.
#[derive(Debug, PartialEq)]
pub(super) struct Statement {
    pub sql: String,
    pub order: Vec<usize>,
    /// The first keyword, upper-cased (`SELECT`, `INSERT`, …), empty if none.
    pub first: String,
}

/// First keywords refused: each leaves state on the session that would outlive the host call
/// (or, for `SET`, would lift Wharf's own session limits: `SET STATEMENT max_statement_time=0 FOR`).
const SESSION_STATEMENTS: &[&str] = &[
    "SET",
    "USE",
    "HANDLER",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "START",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "XA",
    "LOCK",
    "UNLOCK",
];

/// MariaDB's named locks live in one server-wide namespace: a tenant's `GET_LOCK('x')` would
/// block every other tenant's. Refused by name; see mysql.rs for the server-side part.
const LOCK_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
];

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn denied(what: &str) -> HostError {
    HostError::Denied(format!("{what} is not available to plugins on MariaDB"))
}

/// Translates `$n` to `?` and refuses what the module comment lists.
pub(super) fn prepare(statement: &str, params: usize) -> Result<Statement, HostError> {
    let b = statement.as_bytes();
    let mut sql = String::with_capacity(statement.len());
    let mut order = Vec::new();
    let mut first = String::new();
    let mut copied = 0; // bytes of `statement` already in `sql`
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => i = skip_quoted(b, i, q)?,
            b'#' => i = line_end(b, i),
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                i = line_end(b, i)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let rest = &b[i + 2..];
                if rest.starts_with(b"!") || rest.starts_with(b"M!") {
                    return Err(denied("an executable comment (/*! */)"));
                }
                i = match statement[i + 2..].find("*/") {
                    Some(end) => i + 2 + end + 2,
                    None => return Err(HostError::Invalid("unterminated comment".into())),
                };
            }
            b'?' => {
                return Err(HostError::Invalid(
                    "write parameters as $1, $2, … (`?` is Wharf's own on MariaDB)".into(),
                ))
            }
            b'@' if b.get(i + 1) == Some(&b'@') => {
                // A system variable read (`@@version`): skip its name, it is no user variable.
                i += 2;
                while i < b.len() && (ident_byte(b[i]) || b[i] == b'.') {
                    i += 1;
                }
            }
            b'@' => return Err(denied("a user variable (@name)")),
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i < b.len() && ident_byte(b[i]) {
                    return Err(HostError::Invalid(format!(
                        "{} is neither a parameter nor a name",
                        &statement[start..=i]
                    )));
                }
                let n: usize = statement[start + 1..i].parse().unwrap_or(0);
                if n == 0 || n > params {
                    return Err(HostError::Invalid(format!(
                        "${n} names no parameter ({params} given)"
                    )));
                }
                sql.push_str(&statement[copied..start]);
                sql.push('?');
                copied = i;
                order.push(n - 1);
            }
            c if ident_byte(c) => {
                let start = i;
                while i < b.len() && ident_byte(b[i]) {
                    i += 1;
                }
                let word = statement[start..i].to_ascii_uppercase();
                if first.is_empty() && !word.as_bytes()[0].is_ascii_digit() {
                    if SESSION_STATEMENTS.contains(&word.as_str()) {
                        return Err(denied(&format!(
                            "{word} (each call is one statement in a fresh session)"
                        )));
                    }
                    first.clone_from(&word);
                }
                if LOCK_FUNCTIONS.contains(&word.as_str()) {
                    return Err(denied(&format!("{word} (named locks are server-wide)")));
                }
                if word == "DIRECTORY" {
                    return Err(denied("DATA/INDEX DIRECTORY"));
                }
            }
            _ => i += 1,
        }
    }
    sql.push_str(&statement[copied..]);
    if let Some(unused) = (0..params).find(|p| !order.contains(p)) {
        return Err(HostError::Invalid(format!(
            "parameter ${} is given but not used",
            unused + 1
        )));
    }
    Ok(Statement { sql, order, first })
}

/// The index just past a quoted string or name starting at `start` (quote `q`): a doubled
/// quote continues it, and inside strings a backslash escapes the next byte.
fn skip_quoted(b: &[u8], start: usize, q: u8) -> Result<usize, HostError> {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
        } else if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return Ok(i + 1);
            }
        } else {
            i += 1;
        }
    }
    Err(HostError::Invalid("unterminated quote".into()))
}

fn line_end(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| start + p + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::prepare;
    use crate::capabilities::HostError;

    #[test]
    fn placeholders_become_question_marks_in_order_of_appearance() {
        let s = prepare("SELECT a FROM t WHERE b = $2 AND c = $1 OR d = $2", 2).unwrap();
        assert_eq!(s.sql, "SELECT a FROM t WHERE b = ? AND c = ? OR d = ?");
        assert_eq!(s.order, vec![1, 0, 1]);
        assert_eq!(s.first, "SELECT");
    }

    #[test]
    fn literals_names_and_comments_are_left_alone() {
        let stmt = "SELECT '$1 ?', \"it\\'s $2\", `col$1`, a$1 -- $1 ?\n# $2\n/* $1 ? */ FROM t WHERE x = $1";
        let s = prepare(stmt, 1).unwrap();
        assert_eq!(
            s.sql,
            "SELECT '$1 ?', \"it\\'s $2\", `col$1`, a$1 -- $1 ?\n# $2\n/* $1 ? */ FROM t WHERE x = ?"
        );
        assert_eq!(s.order, vec![0]);
        // `--` not followed by a space is an operator, not a comment.
        assert_eq!(prepare("SELECT 1--$1", 1).unwrap().sql, "SELECT 1--?");
        assert_eq!(
            prepare("SELECT 'a''$1'", 0).unwrap().order,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn wrong_parameters_are_invalid() {
        for (stmt, n) in [
            ("SELECT $3", 2),
            ("SELECT $0", 1),
            ("SELECT $1", 2),
            ("SELECT ?", 1),
            ("SELECT $1x", 1),
            ("SELECT 'open", 0),
            ("SELECT 1 /* open", 0),
        ] {
            assert!(
                matches!(prepare(stmt, n), Err(HostError::Invalid(_))),
                "{stmt}"
            );
        }
    }

    #[test]
    fn session_state_locks_and_escapes_are_denied() {
        for stmt in [
            "SET @a = 1",
            "set statement max_statement_time=0 for select sleep(9)",
            " /* x */ SET GLOBAL max_connections = 1",
            "START TRANSACTION",
            "xa start 'x'",
            "LOCK TABLES t READ",
            "HANDLER t OPEN",
            "SELECT GET_LOCK('x', 10)",
            "SELECT get_lock /* */ ('x', 10)",
            "DO RELEASE_ALL_LOCKS()",
            "SELECT IS_USED_LOCK('x')",
            "SELECT @a",
            "SELECT 1 INTO @a",
            "SELECT 1 /*!50000 , GET_LOCK('x', 1) */",
            "SELECT 1 /*M!100000 , 2 */",
            "CREATE TABLE t (x int) DATA DIRECTORY = '/tmp'",
        ] {
            assert!(
                matches!(prepare(stmt, 0), Err(HostError::Denied(_))),
                "{stmt}: {:?}",
                prepare(stmt, 0)
            );
        }
        // The same words in literals or names, and system variable reads, are fine.
        for stmt in [
            "SELECT 'GET_LOCK(1)', `set`, 'a@b.c', @@version, @@session.time_zone",
            "UPDATE t SET v = 1",
            "SELECT 1 AS get_lock_count_x",
        ] {
            assert!(prepare(stmt, 0).is_ok(), "{stmt}");
        }
    }
}
