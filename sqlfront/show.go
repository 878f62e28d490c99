package sqlfront

import (
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
)

func (s *Session) show(sh *ast.ShowStmt) (*Result, error) {
	if sh.Where != nil && (sh.Tp == ast.ShowStatus || sh.Tp == ast.ShowVariables) {
		return s.showWhere(sh) // opsinfo.go
	}
	pattern, hasPattern, err := s.showPattern(sh)
	if err != nil {
		return nil, err
	}
	match := func(name string) bool {
		return !hasPattern || likeMatch(strings.ToLower(name), strings.ToLower(pattern), '\\')
	}
	switch sh.Tp {
	case ast.ShowDatabases:
		res := &Result{Columns: textColumns("Database")}
		for _, d := range s.eng.db.Databases() {
			if match(d) {
				res.Rows = append(res.Rows, []any{d})
			}
		}
		return res, nil
	case ast.ShowTables, ast.ShowTableStatus:
		db := sh.DBName
		if db == "" {
			db = s.db
		}
		if db == "" {
			return nil, errorf(ErrCodeNoDB, "No database selected")
		}
		names, err := s.eng.db.Tables(db)
		if err != nil {
			return nil, errorf(ErrCodeBadDB, "Unknown database '%s'", db)
		}
		if sh.Tp == ast.ShowTableStatus {
			return s.tableStatus(db, names, match)
		}
		title := "Tables_in_" + db
		if hasPattern {
			title += " (" + pattern + ")"
		}
		res := &Result{Columns: textColumns(title)}
		if sh.Full {
			res.Columns = append(res.Columns, textCol("Table_type"))
		}
		for _, n := range names {
			if !match(n) {
				continue
			}
			row := []any{n}
			if sh.Full {
				row = append(row, "BASE TABLE")
			}
			res.Rows = append(res.Rows, row)
		}
		return res, nil
	case ast.ShowCreateTable:
		t, sch, err := s.resolve(sh.Table)
		if err != nil {
			return nil, err
		}
		return &Result{Columns: textColumns("Table", "Create Table"), Rows: [][]any{{t.Name(), showCreate(t.Name(), sch)}}}, nil
	case ast.ShowColumns:
		tn := sh.Table
		if sh.DBName != "" {
			tn.Schema = ast.NewCIStr(sh.DBName)
		}
		_, sch, err := s.resolve(tn)
		if err != nil {
			return nil, err
		}
		names := []string{"Field", "Type", "Null", "Key", "Default", "Extra"}
		if sh.Full {
			names = []string{"Field", "Type", "Collation", "Null", "Key", "Default", "Extra", "Privileges", "Comment"}
		}
		res := &Result{Columns: textColumns(names...)}
		for _, c := range sch.Columns {
			if sh.Column != nil && !strings.EqualFold(sh.Column.Name.O, c.Name) {
				continue
			}
			if !match(c.Name) {
				continue
			}
			null := "YES"
			if c.NotNull {
				null = "NO"
			}
			var def any
			switch {
			case c.DefaultNow:
				def = "CURRENT_TIMESTAMP"
			case c.HasDefault && c.Default != nil:
				def = toString(c.Default)
			}
			if sh.Full {
				var coll any
				if c.isText() && !c.Binary {
					coll = "utf8mb4_general_ci"
				}
				res.Rows = append(res.Rows, []any{c.Name, c.TypeStr, coll, null, "", def, "", "select,insert,update,references", c.Comment})
			} else {
				res.Rows = append(res.Rows, []any{c.Name, c.TypeStr, null, "", def, ""})
			}
		}
		return res, nil
	case ast.ShowVariables:
		res := &Result{Columns: textColumns("Variable_name", "Value")}
		res.Rows = s.variableRows(pattern, hasPattern)
		return res, nil
	case ast.ShowStatus:
		res := &Result{Columns: textColumns("Variable_name", "Value")}
		for _, kv := range s.statusRows(sh.GlobalScope) {
			if match(kv[0].(string)) {
				res.Rows = append(res.Rows, kv)
			}
		}
		return res, nil
	case ast.ShowReplicaStatus, ast.ShowMasterStatus:
		// No replication here: an empty set, as from a server that is
		// not a replica (or logs no binlog).
		if sh.Tp == ast.ShowMasterStatus {
			return &Result{Columns: textColumns("File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB", "Executed_Gtid_Set")}, nil
		}
		return &Result{Columns: textColumns(replicaStatusColumns...)}, nil
	case ast.ShowProcessList:
		res := &Result{Columns: []Column{intCol("Id"), textCol("User"), textCol("Host"), textCol("db"),
			textCol("Command"), intCol("Time"), textCol("State"), textCol("Info")}}
		if s.eng.cfg.ProcessList != nil {
			res.Rows = s.eng.cfg.ProcessList(sh.Full)
		}
		return res, nil
	case ast.ShowWarnings, ast.ShowErrors:
		var rows [][]any
		for _, w := range s.warnings {
			if sh.Tp == ast.ShowWarnings || w[0] == "Error" {
				rows = append(rows, w)
			}
		}
		if sh.CountWarningsOrErrors {
			return &Result{Columns: []Column{intCol("@@session.warning_count")}, Rows: [][]any{{int64(len(rows))}}}, nil
		}
		return &Result{Columns: textColumns("Level", "Code", "Message"), Rows: rows}, nil
	case ast.ShowEngines:
		res := &Result{Columns: textColumns("Engine", "Support", "Comment", "Transactions", "XA", "Savepoints")}
		res.Rows = [][]any{{"QUEUE", "DEFAULT", "Queue storage engine for MySQL (q4mproxy emulation)", "NO", "NO", "NO"}}
		return res, nil
	case ast.ShowPlugins:
		res := &Result{Columns: textColumns("Name", "Status", "Type", "Library", "License")}
		res.Rows = [][]any{{"QUEUE", "ACTIVE", "STORAGE ENGINE", "libqueue_engine.so", "GPL"}}
		return res, nil
	case ast.ShowCharset:
		res := &Result{Columns: textColumns("Charset", "Description", "Default collation", "Maxlen")}
		res.Rows = [][]any{{"binary", "Binary pseudo charset", "binary", "1"}, {"utf8mb4", "UTF-8 Unicode", "utf8mb4_general_ci", "4"}}
		return res, nil
	case ast.ShowCollation:
		res := &Result{Columns: textColumns("Collation", "Charset", "Id", "Default", "Compiled", "Sortlen")}
		res.Rows = [][]any{{"binary", "binary", "63", "Yes", "Yes", "1"}, {"utf8mb4_general_ci", "utf8mb4", "45", "Yes", "Yes", "1"}}
		return res, nil
	case ast.ShowCreateDatabase:
		if !s.eng.db.HasDatabase(sh.DBName) {
			return nil, errorf(ErrCodeBadDB, "Unknown database '%s'", sh.DBName)
		}
		ifNotExists := "" // mysqldump --databases asks IF NOT EXISTS, to restore over a database that exists
		if sh.IfNotExists {
			ifNotExists = "/*!32312 IF NOT EXISTS*/ "
		}
		return &Result{Columns: textColumns("Database", "Create Database"), Rows: [][]any{{sh.DBName,
			fmt.Sprintf("CREATE DATABASE %s%s /*!40100 DEFAULT CHARACTER SET utf8mb4 */", ifNotExists, quoteIdent(sh.DBName))}}}, nil
	case ast.ShowIndex:
		if _, _, err := s.resolve(sh.Table); err != nil {
			return nil, err
		}
		return &Result{Columns: textColumns("Table", "Non_unique", "Key_name", "Seq_in_index", "Column_name", "Collation", "Cardinality", "Sub_part", "Packed", "Null", "Index_type", "Comment", "Index_comment")}, nil
	case ast.ShowTriggers:
		// No triggers on queue tables: MySQL's columns, no rows (older
		// mysqldumps send SHOW TRIGGERS LIKE 't').
		return &Result{Columns: textColumns("Trigger", "Event", "Table", "Statement", "Timing", "Created", "sql_mode",
			"Definer", "character_set_client", "collation_connection", "Database Collation")}, nil
	case ast.ShowProcedureStatus, ast.ShowFunctionStatus:
		return &Result{Columns: textColumns("Db", "Name", "Type", "Definer", "Modified", "Created", "Security_type",
			"Comment", "character_set_client", "collation_connection", "Database Collation")}, nil
	case ast.ShowEvents:
		return &Result{Columns: textColumns("Db", "Name", "Definer", "Time zone", "Type", "Execute at", "Interval value",
			"Interval field", "Starts", "Ends", "Status", "Originator", "character_set_client", "collation_connection",
			"Database Collation")}, nil
	}
	return nil, notSupported("this SHOW statement")
}

// replicaStatusColumns are SHOW SLAVE STATUS's columns (MySQL 5.7).
var replicaStatusColumns = []string{"Slave_IO_State", "Master_Host", "Master_User", "Master_Port", "Connect_Retry",
	"Master_Log_File", "Read_Master_Log_Pos", "Relay_Log_File", "Relay_Log_Pos", "Relay_Master_Log_File",
	"Slave_IO_Running", "Slave_SQL_Running", "Replicate_Do_DB", "Replicate_Ignore_DB", "Replicate_Do_Table",
	"Replicate_Ignore_Table", "Replicate_Wild_Do_Table", "Replicate_Wild_Ignore_Table", "Last_Errno", "Last_Error",
	"Skip_Counter", "Exec_Master_Log_Pos", "Relay_Log_Space", "Until_Condition", "Until_Log_File", "Until_Log_Pos",
	"Master_SSL_Allowed", "Master_SSL_CA_File", "Master_SSL_CA_Path", "Master_SSL_Cert", "Master_SSL_Cipher",
	"Master_SSL_Key", "Seconds_Behind_Master", "Master_SSL_Verify_Server_Cert", "Last_IO_Errno", "Last_IO_Error",
	"Last_SQL_Errno", "Last_SQL_Error", "Replicate_Ignore_Server_Ids", "Master_Server_Id", "Master_UUID",
	"Master_Info_File", "SQL_Delay", "SQL_Remaining_Delay", "Slave_SQL_Running_State", "Master_Retry_Count",
	"Master_Bind", "Last_IO_Error_Timestamp", "Last_SQL_Error_Timestamp", "Master_SSL_Crl", "Master_SSL_Crlpath",
	"Retrieved_Gtid_Set", "Executed_Gtid_Set", "Auto_Position", "Replicate_Rewrite_DB", "Channel_Name",
	"Master_TLS_Version"}

// statusRows are the status variables (Variable_name, Value), global or
// of this session.
func (s *Session) statusRows(global bool) [][]any {
	if s.eng.cfg.Status == nil {
		return [][]any{{"Threads_connected", "1"}, {"Uptime", "1"}}
	}
	return s.eng.cfg.Status(s.connID, global)
}

func (s *Session) showPattern(sh *ast.ShowStmt) (string, bool, error) {
	if sh.Pattern != nil {
		v, err := s.evalConst(sh.Pattern.Pattern)
		if err != nil {
			return "", false, err
		}
		return toString(v), true, nil
	}
	if sh.Where != nil {
		// SHOW ... WHERE Variable_name = 'x' (or LIKE): the common client
		// probe. Only that shape is understood.
		switch w := sh.Where.(type) {
		case *ast.BinaryOperationExpr:
			if v, err := s.evalConst(w.R); err == nil {
				return toString(v), true, nil
			}
		case *ast.PatternLikeOrIlikeExpr:
			if v, err := s.evalConst(w.Pattern); err == nil {
				return toString(v), true, nil
			}
		}
		return "", false, notSupported("SHOW ... WHERE with this condition")
	}
	return "", false, nil
}

func (s *Session) tableStatus(db string, names []string, match func(string) bool) (*Result, error) {
	res := &Result{Columns: textColumns("Name", "Engine", "Version", "Row_format", "Rows", "Avg_row_length",
		"Data_length", "Max_data_length", "Index_length", "Data_free", "Auto_increment", "Create_time",
		"Update_time", "Check_time", "Collation", "Checksum", "Create_options", "Comment")}
	for _, n := range names {
		if !match(n) {
			continue
		}
		t, sch, err := s.resolveName(db, n)
		if err != nil {
			continue
		}
		rows := int64(s.eng.db.Count(t))
		if s.owner.InOwnerMode() {
			rows = 0
			if s.owner.OwnsRowIn(t) {
				rows = 1
			}
		}
		res.Rows = append(res.Rows, []any{n, "QUEUE", "10", "Fixed", rows, int64(0), int64(0), int64(0), int64(0),
			int64(0), nil, nil, nil, nil, "utf8mb4_general_ci", nil, "", sch.Comment})
	}
	return res, nil
}

// FieldList describes the columns of table matching wildcard (COM_FIELD_LIST).
func (s *Session) FieldList(table, wildcard string) ([]Column, error) {
	if s.db == "" {
		return nil, errorf(ErrCodeNoDB, "No database selected")
	}
	t, sch, err := s.resolveName(s.db, table)
	if err != nil {
		return nil, err
	}
	var cols []Column
	for _, c := range sch.Columns {
		if wildcard == "" || likeMatch(strings.ToLower(c.Name), strings.ToLower(wildcard), '\\') {
			cols = append(cols, c.resultColumn(t.Database(), t.Name()))
		}
	}
	return cols, nil
}
