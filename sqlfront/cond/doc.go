// Package cond compiles and evaluates Q4M's condition expressions, the part
// after the colon in a conditional subscription such as
// queue_wait('jobs:prio=0 and ready<1700000000').
//
// An expression is compiled once against a table's columns (Compile) and then
// evaluated for each row (Expr.Eval, Expr.Match). A compiled Expr is
// immutable: any number of goroutines may evaluate it at the same time.
// Compile does not block and keeps no state between calls.
//
// # Values
//
// Every value is NULL or a signed 64-bit integer. Only integer and temporal
// columns can be used (Column.Visible); the caller supplies their values, as
// Q4M reads them, through the function passed to Eval.
//
// # Grammar
//
// The parser is a PEG: alternatives are tried in order, the first one that
// matches wins, and a failed alternative backtracks. Whitespace (space, \t,
// \n, \v, \f, \r) is skipped before every token. From lowest to highest
// precedence, all binary operators left-associative:
//
//	expr    := xorexp ( ("||" | OR) xorexp )*
//	xorexp  := andexp ( XOR andexp )*
//	andexp  := notexp ( ("&&" | AND) notexp )*
//	notexp  := NOT relexp | relexp            -- "not not x" is an error
//	relexp  := bitor ( ("=" | "!=" | "<=" | "<" | ">=" | ">") bitor
//	                 | IS [NOT] (TRUE | FALSE | NULL) )*
//	bitor   := bitand ( "|" bitand )*
//	bitand  := shift ( "&" shift )*
//	shift   := add ( ("<<" | ">>") add )*
//	add     := mul ( ("+" | "-") mul )*
//	mul     := bitxor ( ("*" | "div" | "%" | "mod") bitxor )*
//	bitxor  := unary ( "^" unary )*
//	unary   := "0x" HEX{1,16} | "0" OCT{1,22} | DEC{1,19}
//	         | "-" unary | "~" unary | "(" expr ")" | "pow(" expr "," expr ")"
//	         | NULL | "`" name "`" | bare-name
//
// OR, XOR, AND, NOT, IS, TRUE, FALSE and NULL are case-insensitive; "div",
// "mod", "pow(" and "0x" must be lower-case. Keywords need no word boundary:
// "nota=3" means "not a=3" and "a isnull" means "a is null". Not supported
// (compile errors): <>, ==, !, /, IN, BETWEEN, LIKE, strings, floats, TRUE
// and FALSE as values, functions other than pow, variables, whitespace inside
// an operator or between "pow" and "(", and trailing whitespace. An empty
// expression is an error.
//
// Numbers: "0x" then hexadecimal digits, a leading 0 means octal ("010" is 8;
// "08" and "09" fall back to decimal), otherwise decimal. A literal above
// 9223372036854775807 is an error, so the smallest int64 cannot be written.
// As in Q4M, whitespace may separate the "0x" or the leading 0 from the
// digits that follow ("0x 1F" is 31, "0 17" is 15).
//
// Column names:
//   - A bare name is matched against the lower-cased input, so it finds only
//     columns declared without upper-case letters. The longest name wins, and
//     it must not be followed by a letter, digit, '_', '$' or non-ASCII byte
//     (with a column v, "vx=1" is an error, not "v" followed by garbage).
//     Columns named like a keyword (or, and, not, is, true, false, null, div,
//     mod, xor) have no bare name.
//   - Because alternatives are ordered, a name that starts with a keyword
//     tried earlier is read as that keyword: a column "nullable" must be
//     written in backquotes, and with columns "note" and "e", "note=1" means
//     "not e=1".
//   - A backquoted name is a case-insensitive prefix: it picks the first
//     usable column, in table order, whose name starts with it (with columns
//     v1, v, `v` is v1). No match is an error. A backslash escapes the next
//     character and is kept in the name.
//   - Referring to a column that is not Visible is an error.
//
// # Evaluation
//
//   - Arithmetic, comparisons (1 or 0), bit operations, XOR, pow, unary -, ~
//     and NOT return NULL when any operand is NULL.
//   - + - * and unary - wrap around (two's complement).
//   - div and % / mod return NULL when dividing by 0, otherwise truncate
//     toward zero with the remainder taking the dividend's sign;
//     math.MinInt64 div -1 is math.MinInt64 and math.MinInt64 % -1 is 0.
//   - << and >> are signed shifts by the count modulo 64 (what x86 does with
//     Q4M's undefined C shift): 1 << 64 is 1, 1 << -1 is math.MinInt64,
//     -8 >> 1 is -4.
//   - pow(x, y) is x to the power y truncated toward zero: pow(2, -1) is 0,
//     pow(-1, -3) is -1. A result outside the int64 range, or pow(0, y) with
//     y < 0 (infinity), is math.MinInt64, as Q4M's conversion gives on x86.
//     The power is computed exactly, like the 64-bit-mantissa powl Q4M uses.
//   - x OR y is 1 if either side is true (non-NULL and non-zero), else NULL if
//     either side is NULL, else 0.
//   - x AND y is NULL only when both sides are NULL, otherwise 1 when both
//     are true and 0 otherwise: NULL AND 1 is 0, as in Q4M (SQL says NULL).
//   - IS [NOT] TRUE/FALSE/NULL never return NULL.
//   - A row matches when the value is non-NULL and non-zero.
//
// Sub-expressions whose operands are all constants are evaluated at compile
// time. Evaluation has no side effects, so this is not observable, except
// that Eval does not call its column function for a constant expression.
//
// # Differences from Q4M
//
// Q4M maps bare names to the wrong column after a keyword-named column (its
// symbol table skips the column but not the index); here every column maps
// to itself. Q4M's semantic actions can corrupt its node stack when an
// alternative fails after building nodes and another one then matches the
// same text; that needs column names made of operator characters and is
// not reproduced: this parser builds a tree. Q4M checks the escapes inside
// backquotes more strictly. Expressions nested deeper than a fixed limit are
// rejected instead of exhausting the stack.
package cond
