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
		// MySQL's columns, in its order (mysqld_exporter's
		// info_schema.tables collector reads VERSION, ROW_FORMAT,
		// DATA_LENGTH, INDEX_LENGTH, DATA_FREE and CREATE_OPTIONS); what a
		// queue table does not keep is NULL, as MySQL gives for a view.
		cols = []*columnDef{str("TABLE_CATALOG"), str("TABLE_SCHEMA"), str("TABLE_NAME"), str("TABLE_TYPE"),
			str("ENGINE"), num("VERSION"), str("ROW_FORMAT"), num("TABLE_ROWS"), num("AVG_ROW_LENGTH"),
			num("DATA_LENGTH"), num("MAX_DATA_LENGTH"), num("INDEX_LENGTH"), num("DATA_FREE"), num("AUTO_INCREMENT"),
			str("CREATE_TIME"), str("UPDATE_TIME"), str("CHECK_TIME"), str("TABLE_COLLATION"), num("CHECKSUM"),
			str("CREATE_OPTIONS"), str("TABLE_COMMENT")}
		for _, d := range s.eng.db.Databases() {
			names, _ := s.eng.db.Tables(d)
			for _, n := range names {
				t, sch, err := s.resolveName(d, n)
				if err != nil {
					continue
				}
				rows = append(rows, []any{"def", d, n, "BASE TABLE", "QUEUE", uint64(10), nil,
					uint64(s.tableSource(t, sch).count()), nil, nil, nil, nil, nil, nil,
					nil, nil, nil, "utf8mb4_general_ci", nil, "", sch.Comment})
			}
		}
	case "COLUMNS":
		cols = []*columnDef{str("TABLE_CATALOG"), str("TABLE_SCHEMA"), str("TABLE_NAME"), str("COLUMN_NAME"),
			num("ORDINAL_POSITION"), str("COLUMN_DEFAULT"), str("IS_NULLABLE"), str("DATA_TYPE"), str("COLUMN_TYPE"),
			str("COLUMN_KEY"), str("EXTRA"), str("COLUMN_COMMENT"), str("CHARACTER_SET_NAME"), str("COLLATION_NAME"),
			str("PRIVILEGES"), str("GENERATION_EXPRESSION"), str("IS_GENERATED")}
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
					var cs, coll any
					if c.isText() && !c.Binary {
						cs, coll = "utf8mb4", "utf8mb4_general_ci"
					}
					// GENERATION_EXPRESSION is MySQL 5.7's (mysqldump reads
					// it to leave generated columns out), IS_GENERATED
					// MariaDB's: a queue table has no generated column.
					rows = append(rows, []any{"def", d, n, c.Name, uint64(i + 1), def, null, dataType, c.TypeStr,
						"", "", c.Comment, cs, coll, "select,insert,update,references", "", "NEVER"})
				}
			}
		}
	case "TRIGGERS", "VIEWS", "ROUTINES", "EVENTS", "FILES":
		// What a queue table never has (triggers, views, stored programs)
		// and tablespace files (NDB's and InnoDB's): always empty here.
		// mysqldump asks for them on every dump.
		for _, n := range emptySystemTables[strings.ToUpper(tn.Name.O)] {
			cols = append(cols, str(n))
		}
	default:
		var ok bool
		if cols, rows, ok = s.opsTable(strings.ToUpper(tn.Name.O)); !ok { // opsinfo.go
			return nil, notSupported("information_schema." + tn.Name.O)
		}
	}
	name := strings.ToUpper(tn.Name.O)
	rows = s.withUpstreamRows(name, cols, rows) // catalogeval.go
	sch := &tableSchema{Columns: cols}
	return &source{
		db: "information_schema", name: name, sch: sch, empty: len(rows) == 0,
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

// emptySystemTables are the columns of the information_schema tables that
// are empty here (MySQL 5.7's columns, MariaDB's where it has more).
var emptySystemTables = map[string][]string{
	"TRIGGERS": {"TRIGGER_CATALOG", "TRIGGER_SCHEMA", "TRIGGER_NAME", "EVENT_MANIPULATION", "EVENT_OBJECT_CATALOG",
		"EVENT_OBJECT_SCHEMA", "EVENT_OBJECT_TABLE", "ACTION_ORDER", "ACTION_CONDITION", "ACTION_STATEMENT",
		"ACTION_ORIENTATION", "ACTION_TIMING", "ACTION_REFERENCE_OLD_TABLE", "ACTION_REFERENCE_NEW_TABLE",
		"ACTION_REFERENCE_OLD_ROW", "ACTION_REFERENCE_NEW_ROW", "CREATED", "SQL_MODE", "DEFINER",
		"CHARACTER_SET_CLIENT", "COLLATION_CONNECTION", "DATABASE_COLLATION"},
	"VIEWS": {"TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "VIEW_DEFINITION", "CHECK_OPTION", "IS_UPDATABLE",
		"DEFINER", "SECURITY_TYPE", "CHARACTER_SET_CLIENT", "COLLATION_CONNECTION", "ALGORITHM"},
	"ROUTINES": {"SPECIFIC_NAME", "ROUTINE_CATALOG", "ROUTINE_SCHEMA", "ROUTINE_NAME", "ROUTINE_TYPE", "DATA_TYPE",
		"ROUTINE_BODY", "ROUTINE_DEFINITION", "EXTERNAL_NAME", "EXTERNAL_LANGUAGE", "PARAMETER_STYLE",
		"IS_DETERMINISTIC", "SQL_DATA_ACCESS", "SQL_PATH", "SECURITY_TYPE", "CREATED", "LAST_ALTERED", "SQL_MODE",
		"ROUTINE_COMMENT", "DEFINER", "CHARACTER_SET_CLIENT", "COLLATION_CONNECTION", "DATABASE_COLLATION"},
	"EVENTS": {"EVENT_CATALOG", "EVENT_SCHEMA", "EVENT_NAME", "DEFINER", "TIME_ZONE", "EVENT_BODY", "EVENT_DEFINITION",
		"EVENT_TYPE", "EXECUTE_AT", "INTERVAL_VALUE", "INTERVAL_FIELD", "SQL_MODE", "STARTS", "ENDS", "STATUS",
		"ON_COMPLETION", "CREATED", "LAST_ALTERED", "LAST_EXECUTED", "EVENT_COMMENT", "ORIGINATOR",
		"CHARACTER_SET_CLIENT", "COLLATION_CONNECTION", "DATABASE_COLLATION"},
	"FILES": {"FILE_ID", "FILE_NAME", "FILE_TYPE", "TABLESPACE_NAME", "TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME",
		"LOGFILE_GROUP_NAME", "LOGFILE_GROUP_NUMBER", "ENGINE", "FULLTEXT_KEYS", "DELETED_ROWS", "UPDATE_COUNT",
		"FREE_EXTENTS", "TOTAL_EXTENTS", "EXTENT_SIZE", "INITIAL_SIZE", "MAXIMUM_SIZE", "AUTOEXTEND_SIZE",
		"CREATION_TIME", "LAST_UPDATE_TIME", "LAST_ACCESS_TIME", "RECOVER_TIME", "TRANSACTION_COUNTER", "VERSION",
		"ROW_FORMAT", "TABLE_ROWS", "AVG_ROW_LENGTH", "DATA_LENGTH", "MAX_DATA_LENGTH", "INDEX_LENGTH", "DATA_FREE",
		"CREATE_TIME", "UPDATE_TIME", "CHECK_TIME", "CHECKSUM", "STATUS", "EXTRA"},
}
