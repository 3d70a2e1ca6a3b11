//! Tokenizer and recursive-descent parser for Excel-like formulas.
//!
//! Precedence, lowest first, as in Excel: comparisons (`= <> < > <= >=`), `&`, `+ -`,
//! `* /`, `^` (left-associative), `%` (postfix), unary `-`/`+`. So `-2^2` is 4 and `2^3^2`
//! is 64, as a spreadsheet user expects.

use crate::FormulaError;

/// Longest formula accepted, in characters.
pub const MAX_FORMULA_CHARS: usize = 10_000;
/// Deepest nesting of parentheses, calls and operators; keeps recursion off the guard page.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: Kind,
    /// 1-based character position in the formula, for error messages.
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Number(f64),
    Text(String),
    Bool(bool),
    Var(String),
    Call(String, Vec<Expr>),
    Neg(Box<Expr>),
    Percent(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `{1, 2; 3, 4}`: rows of cells.
    Array(Vec<Vec<Expr>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Concat,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Number(f64),
    Text(String),
    Ident(String),
    Op(BinOp),
    Percent,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Semicolon,
    End,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Number(n) => format!("number {n}"),
        Tok::Text(s) => format!("text {s:?}"),
        Tok::Ident(s) => format!("name `{s}`"),
        Tok::Op(op) => format!("operator `{}`", op_text(*op)),
        Tok::Percent => "`%`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBrace => "`{`".into(),
        Tok::RBrace => "`}`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Semicolon => "`;`".into(),
        Tok::End => "the end of the formula".into(),
    }
}

pub fn op_text(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Pow => "^",
        BinOp::Concat => "&",
        BinOp::Eq => "=",
        BinOp::Ne => "<>",
        BinOp::Lt => "<",
        BinOp::Gt => ">",
        BinOp::Le => "<=",
        BinOp::Ge => ">=",
    }
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, FormulaError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '.' {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let n: f64 = text
                .parse()
                .map_err(|_| FormulaError::syntax(pos, format!("`{text}` is not a number")))?;
            out.push((Tok::Number(n), pos));
            continue;
        }
        if c == '"' {
            // Excel escapes a quote inside text by doubling it.
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(FormulaError::syntax(
                            pos,
                            "text starting here is never closed with `\"`",
                        ))
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        text.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        text.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Text(text), pos));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name.ends_with('.') {
                return Err(FormulaError::syntax(
                    pos,
                    format!("`{name}` is not a valid name"),
                ));
            }
            out.push((Tok::Ident(name), pos));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let (tok, len) = match (c, two.as_str()) {
            (_, "<>") => (Tok::Op(BinOp::Ne), 2),
            (_, "<=") => (Tok::Op(BinOp::Le), 2),
            (_, ">=") => (Tok::Op(BinOp::Ge), 2),
            // `!=` and `==` are not Excel, but models write them; their meaning is clear.
            (_, "!=") => (Tok::Op(BinOp::Ne), 2),
            (_, "==") => (Tok::Op(BinOp::Eq), 2),
            ('<', _) => (Tok::Op(BinOp::Lt), 1),
            ('>', _) => (Tok::Op(BinOp::Gt), 1),
            ('=', _) => (Tok::Op(BinOp::Eq), 1),
            ('+', _) => (Tok::Op(BinOp::Add), 1),
            ('-', _) => (Tok::Op(BinOp::Sub), 1),
            ('*', _) => (Tok::Op(BinOp::Mul), 1),
            ('/', _) => (Tok::Op(BinOp::Div), 1),
            ('^', _) => (Tok::Op(BinOp::Pow), 1),
            ('&', _) => (Tok::Op(BinOp::Concat), 1),
            ('%', _) => (Tok::Percent, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('{', _) => (Tok::LBrace, 1),
            ('}', _) => (Tok::RBrace, 1),
            (',', _) => (Tok::Comma, 1),
            (';', _) => (Tok::Semicolon, 1),
            _ => {
                return Err(FormulaError::syntax(
                    pos,
                    format!("unexpected character `{c}`"),
                ))
            }
        };
        out.push((tok, pos));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
}

/// Parses a formula; a leading `=` is optional.
pub fn parse(formula: &str) -> Result<Expr, FormulaError> {
    let count = formula.chars().count();
    if count > MAX_FORMULA_CHARS {
        return Err(FormulaError::syntax(
            1,
            format!(
                "the formula is {count} characters long; at most {MAX_FORMULA_CHARS} are accepted"
            ),
        ));
    }
    let trimmed = formula.trim_start();
    let skipped = formula.chars().count() - trimmed.chars().count();
    let (body, offset) = match trimmed.strip_prefix('=') {
        Some(rest) => (rest, skipped + 1),
        None => (trimmed, skipped),
    };
    let mut toks = tokenize(body)?;
    for (_, pos) in &mut toks {
        *pos += offset;
    }
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
    };
    if matches!(p.peek(), Tok::End) {
        return Err(FormulaError::syntax(p.pos(), "the formula is empty"));
    }
    let expr = p.comparison()?;
    match p.peek() {
        Tok::End => Ok(expr),
        Tok::RParen => Err(FormulaError::syntax(p.pos(), "`)` without a matching `(`")),
        other => Err(FormulaError::syntax(
            p.pos(),
            format!("expected an operator, found {}", describe(other)),
        )),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }

    fn pos(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].1
    }

    fn next(&mut self) -> (Tok, usize) {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn enter(&mut self) -> Result<(), FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FormulaError::syntax(
                self.pos(),
                format!("the formula nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn binary(
        &mut self,
        ops: &[BinOp],
        next: fn(&mut Parser) -> Result<Expr, FormulaError>,
    ) -> Result<Expr, FormulaError> {
        self.enter()?;
        let mut left = next(self)?;
        while let Tok::Op(op) = *self.peek() {
            if !ops.contains(&op) {
                break;
            }
            let (_, pos) = self.next();
            let right = next(self)?;
            left = Expr {
                kind: Kind::Binary(op, Box::new(left), Box::new(right)),
                pos,
            };
        }
        self.depth -= 1;
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, FormulaError> {
        use BinOp::*;
        self.binary(&[Eq, Ne, Lt, Gt, Le, Ge], Parser::concat)
    }

    fn concat(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&[BinOp::Concat], Parser::additive)
    }

    fn additive(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&[BinOp::Add, BinOp::Sub], Parser::term)
    }

    fn term(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&[BinOp::Mul, BinOp::Div], Parser::power)
    }

    fn power(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&[BinOp::Pow], Parser::unary)
    }

    fn unary(&mut self) -> Result<Expr, FormulaError> {
        match self.peek() {
            Tok::Op(BinOp::Sub) => {
                let (_, pos) = self.next();
                self.enter()?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Expr {
                    kind: Kind::Neg(Box::new(inner)),
                    pos,
                })
            }
            Tok::Op(BinOp::Add) => {
                self.next();
                self.enter()?;
                let inner = self.unary();
                self.depth -= 1;
                inner
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, FormulaError> {
        let mut expr = self.primary()?;
        while matches!(self.peek(), Tok::Percent) {
            let (_, pos) = self.next();
            expr = Expr {
                kind: Kind::Percent(Box::new(expr)),
                pos,
            };
        }
        Ok(expr)
    }

    fn primary(&mut self) -> Result<Expr, FormulaError> {
        let (tok, pos) = self.next();
        let kind = match tok {
            Tok::Number(n) => Kind::Number(n),
            Tok::Text(s) => Kind::Text(s),
            Tok::Ident(name) => {
                if matches!(self.peek(), Tok::LParen) {
                    let (_, paren_pos) = self.next();
                    let args = self.args(&name, paren_pos)?;
                    Kind::Call(name.to_ascii_uppercase(), args)
                } else if name.eq_ignore_ascii_case("true") {
                    Kind::Bool(true)
                } else if name.eq_ignore_ascii_case("false") {
                    Kind::Bool(false)
                } else {
                    Kind::Var(name)
                }
            }
            Tok::LParen => {
                self.enter()?;
                let inner = self.comparison()?;
                self.depth -= 1;
                self.expect_close(Tok::RParen, pos, "(")?;
                return Ok(inner);
            }
            Tok::LBrace => Kind::Array(self.array(pos)?),
            Tok::End => {
                return Err(FormulaError::syntax(
                    pos,
                    "the formula ends where a value was expected",
                ))
            }
            other => {
                return Err(FormulaError::syntax(
                    pos,
                    format!("expected a value, found {}", describe(&other)),
                ))
            }
        };
        Ok(Expr { kind, pos })
    }

    fn expect_close(&mut self, want: Tok, open_pos: usize, open: &str) -> Result<(), FormulaError> {
        let (tok, pos) = self.next();
        if tok == want {
            return Ok(());
        }
        Err(FormulaError::syntax(
            pos,
            format!(
                "expected {} to close the `{open}` at position {open_pos}, found {}",
                describe(&want),
                describe(&tok)
            ),
        ))
    }

    /// Arguments after `(`, through the closing `)`. Empty arguments are not allowed.
    fn args(&mut self, name: &str, open_pos: usize) -> Result<Vec<Expr>, FormulaError> {
        self.enter()?;
        let mut args = Vec::new();
        if matches!(self.peek(), Tok::RParen) {
            self.next();
            self.depth -= 1;
            return Ok(args);
        }
        loop {
            args.push(self.comparison()?);
            match self.next() {
                (Tok::Comma, _) => continue,
                (Tok::RParen, _) => break,
                (tok, pos) => {
                    return Err(FormulaError::syntax(
                        pos,
                        format!(
                            "expected `,` or `)` in the arguments of {name} opened at position \
                             {open_pos}, found {}",
                            describe(&tok)
                        ),
                    ))
                }
            }
        }
        self.depth -= 1;
        Ok(args)
    }

    /// `{a, b; c, d}` after `{`, through `}`.
    fn array(&mut self, open_pos: usize) -> Result<Vec<Vec<Expr>>, FormulaError> {
        self.enter()?;
        let mut rows = vec![Vec::new()];
        loop {
            let cell = self.comparison()?;
            if let Some(row) = rows.last_mut() {
                row.push(cell);
            }
            match self.next() {
                (Tok::Comma, _) => {}
                (Tok::Semicolon, _) => rows.push(Vec::new()),
                (Tok::RBrace, _) => break,
                (tok, pos) => {
                    return Err(FormulaError::syntax(
                        pos,
                        format!(
                            "expected `,`, `;` or `}}` in the array opened at position {open_pos}, found {}",
                            describe(&tok)
                        ),
                    ))
                }
            }
        }
        self.depth -= 1;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(formula: &str) -> (usize, String) {
        let e = parse(formula).unwrap_err();
        (e.pos, e.message)
    }

    /// The tree without positions, so differently spaced formulas compare equal.
    fn shape(e: &Expr) -> String {
        match &e.kind {
            Kind::Number(n) => n.to_string(),
            Kind::Binary(op, l, r) => format!("({} {} {})", op_text(*op), shape(l), shape(r)),
            Kind::Neg(i) => format!("(neg {})", shape(i)),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn precedence_follows_excel() {
        let p = |f: &str| shape(&parse(f).unwrap());
        assert_eq!(p("1+2*3"), p("1+(2*3)"));
        assert_eq!(p("-2^2"), p("(-2)^2"));
        assert_eq!(p("2^3^2"), p("(2^3)^2"));
        assert_eq!(p("1&2=3"), p("(1&2)=3"));
        assert_eq!(p("=1+2"), p("1+2"));
        assert_eq!(p("1-2+3*4^2"), "(+ (- 1 2) (* 3 (^ 4 2)))");
    }

    #[test]
    fn syntax_errors_name_the_position() {
        assert_eq!(
            err("=SUM(1, 2"),
            (10, "expected `,` or `)` in the arguments of SUM opened at position 5, found the end of the formula".into())
        );
        assert_eq!(
            err("1 + * 2"),
            (5, "expected a value, found operator `*`".into())
        );
        assert_eq!(
            err("(1 + 2"),
            (
                7,
                "expected `)` to close the `(` at position 1, found the end of the formula".into()
            )
        );
        assert_eq!(err("1 + 2)"), (6, "`)` without a matching `(`".into()));
        assert_eq!(
            err("\"abc"),
            (1, "text starting here is never closed with `\"`".into())
        );
        assert_eq!(err("1 # 2"), (3, "unexpected character `#`".into()));
        assert_eq!(
            err("1 2"),
            (3, "expected an operator, found number 2".into())
        );
        assert_eq!(err("   "), (4, "the formula is empty".into()));
        assert_eq!(err("{1, 2"), (6, "expected `,`, `;` or `}` in the array opened at position 1, found the end of the formula".into()));
        assert!(err(&"(".repeat(100)).1.contains("nests deeper"));
    }
}
