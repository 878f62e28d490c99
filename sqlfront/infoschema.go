package sqlfront

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
)

// systemTable returns the few information_schema tables that clients of a
// Q4M server read: PLUGINS (Perl clients check the QUEUE plugin's version
// on connect), ENGINES, SCHEMATA, TABLES and COLUMNS.
func (s *Session) systemTable(tn *ast.TableName) (*source, error) {
	schema := tn.Schema.L
	if schema == "" {
		schema = strings.ToLower(s.db)
	}
	if schema != "information_schema" {
		return nil, notSupported("queries on " + schema)
	}
	var cols []*columnDef
	var rows [][]any
	str := func(name string) *columnDef {
		return &columnDef{Name: name, Type: pmysql.TypeVarchar, Flen: 64, TypeStr: "varchar(64)"}
	}
	num := func(name string) *columnDef {
		return &columnDef{Name: name, Type: pmysql.TypeLonglong, Unsigned: true, TypeStr: "bigint(21) unsigned"}
	}
	switch strings.ToUpper(tn.Name.O) {
	case "PLUGINS":
		for _, n := range []string{"PLUGIN_NAME", "PLUGIN_VERSION", "PLUGIN_STATUS", "PLUGIN_TYPE", "PLUGIN_TYPE_VERSION",
			"PLUGIN_LIBRARY", "PLUGIN_LIBRARY_VERSION", "PLUGIN_AUTHOR", "PLUGIN_DESCRIPTION", "PLUGIN_LICENSE", "LOAD_OPTION"} {
			cols = append(cols, str(n))
		}
		rows = [][]any{{"QUEUE", "0.9", "ACTIVE", "STORAGE ENGINE", "50799.0", "libqueue_engine.so", "1.7",
			"Kazuho Oku at Cybozu Labs, Inc.", "Queue storage engine for MySQL", "GPL", "ON"}}
	case "ENGINES":
		for _, n := range []string{"ENGINE", "SUPPORT", "COMMENT", "TRANSACTIONS", "XA", "SAVEPOINTS"} {
			cols = append(cols, str(n))
		}
		rows = [][]any{{"QUEUE", "DEFAULT", "Queue storage engine for MySQL (q4mproxy emulation)", "NO", "NO", "NO"}}
	case "SCHEMATA":
		for _, n := range []string{"CATALOG_NAME", "SCHEMA_NAME", "DEFAULT_CHARACTER_SET_NAME", "DEFAULT_COLLATION_NAME", "SQL_PATH"} {
			cols = append(cols, str(n))
		}
		for _, d := range s.eng.db.Databases() {
			rows = append(rows, []any{"def", d, "utf8mb4", "utf8mb4_general_ci", nil})
		}
	case "TABLES":
		cols = []*columnDef{str("TABLE_CATALOG"), str("TABLE_SCHEMA"), str("TABLE_NAME"), str("TABLE_TYPE"),
			str("ENGINE"), num("TABLE_ROWS"), str("TABLE_COLLATION"), str("TABLE_COMMENT")}
		for _, d := range s.eng.db.Databases() {
			names, _ := s.eng.db.Tables(d)
			for _, n := range names {
				t, sch, err := s.resolveName(d, n)
				if err != nil {
					continue
				}
				rows = append(rows, []any{"def", d, n, "BASE TABLE", "QUEUE", uint64(s.tableSource(t, sch).count()), "utf8mb4_general_ci", sch.Comment})
			}
		}
	case "COLUMNS":
		cols = []*columnDef{str("TABLE_CATALOG"), str("TABLE_SCHEMA"), str("TABLE_NAME"), str("COLUMN_NAME"),
			num("ORDINAL_POSITION"), str("COLUMN_DEFAULT"), str("IS_NULLABLE"), str("DATA_TYPE"), str("COLUMN_TYPE"),
			str("COLUMN_KEY"), str("EXTRA"), str("COLUMN_COMMENT")}
		for _, d := range s.eng.db.Databases() {
			names, _ := s.eng.db.Tables(d)
			for _, n := range names {
				_, sch, err := s.resolveName(d, n)
				if err != nil {
					continue
				}
				for i, c := range sch.Columns {
					null := "YES"
					if c.NotNull {
						null = "NO"
					}
					var def any
					if c.HasDefault && c.Default != nil {
						def = toString(c.Default)
					}
					dataType, _, _ := strings.Cut(c.TypeStr, "(")
					rows = append(rows, []any{"def", d, n, c.Name, uint64(i + 1), def, null, dataType, c.TypeStr, "", "", c.Comment})
				}
			}
		}
	default:
		return nil, notSupported("information_schema." + tn.Name.O)
	}
	sch := &tableSchema{Columns: cols}
	name := strings.ToUpper(tn.Name.O)
	return &source{
		db: "information_schema", name: name, sch: sch,
		scan: func(fn func(uint64, []any) bool) error {
			for i, r := range rows {
				if !fn(uint64(i+1), r) {
					return nil
				}
			}
			return nil
		},
	}, nil
}
