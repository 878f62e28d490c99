package sqlfront

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
)

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) (*token.FileSet, []*ast.File) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return fset, files
}

// TestEngineErrorsCatalogued: every error package queue exports (each
// exported Err* variable and *Error type of queue/*.go, found by reading the
// source) has an entry in engineErrors, so none reaches a client as 1105.
func TestEngineErrorsCatalogued(t *testing.T) {
	// A value of each exported error type; a new type must be added here.
	typeSamples := map[string]error{
		"FullError": &queue.FullError{Database: "test", Table: "q"},
	}
	_, files := parseDir(t, "../queue")
	var sentinels []string
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, sp := range gd.Specs {
				switch sp := sp.(type) {
				case *ast.TypeSpec:
					if name := sp.Name.Name; ast.IsExported(name) && strings.HasSuffix(name, "Error") {
						e, ok := typeSamples[name]
						if !ok {
							t.Errorf("queue.%s: add a value of it to typeSamples, and give it a code in engineErrors", name)
							continue
						}
						if c, ok := Cast(e); !ok || c.Code == ErrCodeUnknown {
							t.Errorf("queue.%s has no code in engineErrors", name)
						}
					}
				case *ast.ValueSpec:
					for i, id := range sp.Names {
						if !ast.IsExported(id.Name) || !strings.HasPrefix(id.Name, "Err") {
							continue
						}
						msg, ok := errorsNewText(sp, i)
						if !ok {
							t.Errorf("queue.%s is not errors.New(\"...\"): teach this test to find its value", id.Name)
							continue
						}
						sentinels = append(sentinels, id.Name)
						checkSentinel(t, id.Name, msg)
					}
				}
			}
		}
	}
	if len(sentinels) < 5 {
		t.Fatalf("found only %v in queue/*.go: is the parsing broken?", sentinels)
	}
	t.Logf("queue's sentinels: %v", sentinels)
}

// errorsNewText returns the message of the i-th value of sp if it is
// errors.New("...").
func errorsNewText(sp *ast.ValueSpec, i int) (string, bool) {
	if i >= len(sp.Values) {
		return "", false
	}
	call, ok := sp.Values[i].(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return "", false
	}
	if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "New" || fmt.Sprint(sel.X) != "errors" {
		return "", false
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// checkSentinel finds the engineErrors entry of the queue sentinel whose
// message is msg, and checks that Cast gives its code, bare and wrapped.
func checkSentinel(t *testing.T, name, msg string) {
	t.Helper()
	for _, m := range engineErrors {
		if m.err.Error() != msg {
			continue
		}
		if m.code == ErrCodeUnknown {
			t.Errorf("queue.%s maps to 1105: give it the code a MySQL server would", name)
		}
		for _, err := range []error{
			m.err,
			fmt.Errorf("context: %w", m.err),
			&TableError{Database: "test", Table: "q", Err: m.err},
			&DatabaseError{Database: "test", Err: m.err},
		} {
			if e, ok := Cast(err); !ok || e.Code != m.code {
				t.Errorf("Cast(%v) = %v, %v; want code %d", err, e, ok, m.code)
			}
		}
		return
	}
	t.Errorf("queue.%s (%q) has no entry in engineErrors: give it the code a MySQL server would (and document it in README's Errors table)", name, msg)
}

// TestCast: the code and message each queue error gets, naming the object
// of the wrapper around it.
func TestCast(t *testing.T) {
	full := &queue.FullError{Database: "test", Table: "q"}
	for _, c := range []struct {
		err  error
		code uint16
		msg  string
	}{
		{errorf(ErrCodeParse, "syntax"), ErrCodeParse, "syntax"},
		{fmt.Errorf("wrapped: %w", errorf(ErrCodeNoDB, "No database selected")), ErrCodeNoDB, "No database selected"},
		{&TableError{Database: "test", Table: "q", Err: queue.ErrNoSuchTable}, 1146, "Table 'test.q' doesn't exist"},
		{&TableError{Database: "test", Table: "q", Err: queue.ErrTableExists}, 1050, "Table 'q' already exists"},
		{&DatabaseError{Database: "d", Err: queue.ErrNoSuchDatabase}, 1049, "Unknown database 'd'"},
		{&TableError{Database: "d", Table: "q", Err: queue.ErrNoSuchDatabase}, 1049, "Unknown database 'd'"},
		{&DatabaseError{Database: "d", Err: queue.ErrDatabaseExists}, 1007, "Can't create database 'd'; database exists"},
		{&TableError{Database: "test", Table: "q", Err: queue.ErrTableChanged}, 1412, "Table definition has changed, please retry transaction"},
		{queue.ErrNotOwner, 1123, "Can't initialize function; not in owner mode"},
		{queue.ErrNoRow, 1123, "Can't initialize function; no row is owned"},
		{queue.ErrClosed, 1053, "Server shutdown in progress"},
		{&TableError{Database: "test", Table: "q", Err: queue.ErrClosed}, 1053, "Server shutdown in progress"},
		{fmt.Errorf("pebble: %w", queue.ErrStorage), 1030, "Got error 5 'Input/output error' from storage engine"},
		{full, 1114, "The table 'q' is full"},
		{&TableError{Database: "test", Table: "q", Err: full}, 1114, "The table 'q' is full"},
		{&DatabaseError{Database: "d2", Err: &queue.FullError{Database: "d2"}}, 1114, "The table 'd2' is full"},
	} {
		e, ok := Cast(c.err)
		if !ok || e.Code != c.code || e.Message != c.msg {
			t.Errorf("Cast(%v) = %v, %v; want %d %q", c.err, e, ok, c.code, c.msg)
		}
	}
	for _, err := range []error{errors.New("other"), errCorruptRow, &TableError{Database: "test", Table: "q", Err: errors.New("other")}} {
		if e, ok := Cast(err); ok {
			t.Errorf("Cast(%v) = %v; want not ok (an internal error)", err, e)
		}
	}
}

// TestSQLStates: the catalog's SQLSTATEs agree with go-mysql's table
// wherever it has the code, and are MySQL's default HY000 elsewhere.
func TestSQLStates(t *testing.T) {
	for code, st := range sqlStates {
		want, ok := mysql.MySQLState[code]
		if !ok {
			want = "HY000"
		}
		if st != want {
			t.Errorf("sqlStates[%d] = %s; go-mysql says %s", code, st, want)
		}
		if SQLState(code) != st {
			t.Errorf("SQLState(%d) = %s; want %s", code, SQLState(code), st)
		}
	}
	if got := SQLState(mysql.ER_DUP_ENTRY); got != "23000" { // not raised here: go-mysql's
		t.Errorf("SQLState(1062) = %s; want 23000", got)
	}
	if got := SQLState(9999); got != "HY000" {
		t.Errorf("SQLState(9999) = %s; want HY000", got)
	}
}

// TestErrorCodesNamed reads the source of sqlfront and server: wherever an
// error or warning is raised (errorf, newError, errorPacket, SetWarning,
// mysql.NewError, an Error or MyError literal), its code is a named
// constant (an ErrCode* of the catalog or go-mysql's mysql.ER_*), never a
// bare number, and the catalog gives it a SQLSTATE.
func TestErrorCodesNamed(t *testing.T) {
	alias, stated := readCatalog(t)
	checked := 0
	for _, dir := range []string{".", "../server"} {
		fset, files := parseDir(t, dir)
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				var code ast.Expr
				switch n := n.(type) {
				case *ast.CallExpr:
					switch funcName(n.Fun) {
					case "errorf", "newError", "errorPacket", "SetWarning", "NewError", "NewDefaultError":
						if len(n.Args) > 0 {
							code = n.Args[0]
						}
					}
				case *ast.CompositeLit:
					switch funcName(n.Type) {
					case "Error", "MyError":
						for _, el := range n.Elts {
							if kv, ok := el.(*ast.KeyValueExpr); ok && fmt.Sprint(kv.Key) == "Code" {
								code = kv.Value
							}
						}
					}
				}
				if code == nil {
					return true
				}
				pos := fset.Position(code.Pos())
				name, ok := codeName(code)
				switch {
				case name == "" && ok:
					t.Errorf("%s: bare error number %s: use a name of the catalog (sqlfront/errors.go) or go-mysql's mysql.ER_*", pos, code.(*ast.BasicLit).Value)
				case name == "":
					// A code passed through (a parameter, e.Code): checked where it is named.
				default:
					checked++
					canon := name
					if strings.HasPrefix(name, "ErrCode") {
						if canon, ok = alias[name]; !ok {
							t.Errorf("%s: %s is not in the catalog's const block", pos, name)
							return true
						}
					}
					if !stated[canon] {
						t.Errorf("%s: %s (%s) has no SQLSTATE in sqlStates (sqlfront/errors.go)", pos, name, canon)
					}
				}
				return true
			})
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d codes: is the parsing broken?", checked)
	}
}

// funcName is the name a call or type refers to: f, pkg.f or x.f give f.
func funcName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

// codeName names a code expression: "ErrCodeX" for ErrCodeX or
// sqlfront.ErrCodeX, "mysql.ER_X" for go-mysql's constant. For a number it
// returns "", true; for anything else (a variable) "", false.
func codeName(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		return "", true
	case *ast.Ident:
		if strings.HasPrefix(e.Name, "ErrCode") {
			return e.Name, true
		}
	case *ast.SelectorExpr:
		switch fmt.Sprint(e.X) {
		case "sqlfront":
			return e.Sel.Name, true
		case "mysql":
			return "mysql." + e.Sel.Name, true
		}
	}
	return "", false
}

// readCatalog reads errors.go: alias maps each ErrCode* name to go-mysql's
// constant it is ("mysql.ER_X"), or to itself for a number; stated holds
// the codes sqlStates gives a SQLSTATE, by the same canonical names.
func readCatalog(t *testing.T) (alias map[string]string, stated map[string]bool) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	alias, stated = map[string]string{}, map[string]bool{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, sp := range gd.Specs {
			vs, ok := sp.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, id := range vs.Names {
				switch {
				case gd.Tok == token.CONST && strings.HasPrefix(id.Name, "ErrCode"):
					name, ok := codeName(vs.Values[i])
					switch {
					case name != "":
						alias[id.Name] = name
					case ok:
						alias[id.Name] = id.Name
					default:
						t.Fatalf("%s: unexpected value", id.Name)
					}
				case gd.Tok == token.VAR && id.Name == "sqlStates":
					for _, el := range vs.Values[i].(*ast.CompositeLit).Elts {
						name, _ := codeName(el.(*ast.KeyValueExpr).Key)
						if name == "" {
							t.Fatalf("sqlStates: key %v is not a named code", el.(*ast.KeyValueExpr).Key)
						}
						stated[name] = true
					}
				}
			}
		}
	}
	canon := map[string]bool{}
	for k := range stated {
		if a, ok := alias[k]; ok {
			k = a
		}
		canon[k] = true
	}
	stated = canon
	if len(alias) < 20 || len(stated) < 20 {
		t.Fatalf("read %d names and %d states from errors.go: is the parsing broken?", len(alias), len(stated))
	}
	return alias, stated
}
