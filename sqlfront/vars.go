package sqlfront

import (
	"sort"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
)

// sysVar is a system variable clients may read or set.
type sysVar struct {
	def      func(s *Session) any
	readOnly bool
}

func constVar(v any) sysVar { return sysVar{def: func(*Session) any { return v }} }

func roVar(v any) sysVar { return sysVar{def: func(*Session) any { return v }, readOnly: true} }

// sysVars are the variables this server knows. SET of any other name fails
// with 1193, as on MySQL.
var sysVars = map[string]sysVar{
	"version":                  {def: func(s *Session) any { return s.eng.cfg.Version }, readOnly: true},
	"version_comment":          {def: func(s *Session) any { return s.eng.cfg.VersionComment }, readOnly: true},
	"max_allowed_packet":       {def: func(s *Session) any { return s.eng.cfg.MaxAllowedPacket }},
	"port":                     {def: func(s *Session) any { return int64(s.eng.cfg.Port) }, readOnly: true},
	"hostname":                 {def: func(s *Session) any { return s.eng.cfg.Hostname }, readOnly: true},
	"autocommit":               {def: func(s *Session) any { return boolVal(s.autocommit) }},
	"version_compile_os":       roVar("Linux"),
	"version_compile_machine":  roVar("x86_64"),
	"protocol_version":         roVar(int64(10)),
	"license":                  roVar("MIT"),
	"have_ssl":                 roVar("DISABLED"),
	"have_openssl":             roVar("DISABLED"),
	"lower_case_table_names":   roVar(int64(0)),
	"default_storage_engine":   constVar("QUEUE"),
	"storage_engine":           constVar("QUEUE"),
	"wait_timeout":             constVar(int64(28800)),
	"interactive_timeout":      constVar(int64(28800)),
	"net_read_timeout":         constVar(int64(30)),
	"net_write_timeout":        constVar(int64(60)),
	"net_buffer_length":        constVar(int64(16384)),
	"connect_timeout":          constVar(int64(10)),
	"character_set_client":     constVar("utf8mb4"),
	"character_set_connection": constVar("utf8mb4"),
	"character_set_results":    constVar("utf8mb4"),
	"character_set_server":     constVar("utf8mb4"),
	"character_set_database":   constVar("utf8mb4"),
	"character_set_system":     roVar("utf8mb3"),
	"collation_connection":     constVar("utf8mb4_general_ci"),
	"collation_server":         constVar("utf8mb4_general_ci"),
	"collation_database":       constVar("utf8mb4_general_ci"),
	"sql_mode":                 constVar("STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION"),
	"time_zone":                constVar("SYSTEM"),
	"system_time_zone":         roVar("UTC"),
	"tx_isolation":             constVar("REPEATABLE-READ"),
	"transaction_isolation":    constVar("REPEATABLE-READ"),
	"tx_read_only":             constVar(int64(0)),
	"transaction_read_only":    constVar(int64(0)),
	"sql_auto_is_null":         constVar(int64(0)),
	"sql_select_limit":         constVar(uint64(18446744073709551615)),
	"sql_safe_updates":         constVar(int64(0)),
	"sql_quote_show_create":    constVar(int64(1)),
	"sql_notes":                constVar(int64(1)),
	"sql_warnings":             constVar(int64(0)),
	"foreign_key_checks":       constVar(int64(1)),
	"unique_checks":            constVar(int64(1)),
	"names":                    constVar("utf8mb4"),
	"max_connections":          constVar(int64(151)),
	"max_execution_time":       constVar(int64(0)),
	"read_only":                constVar(int64(0)),
	"query_cache_type":         roVar("OFF"),
	"query_cache_size":         roVar(int64(0)),
	"performance_schema":       roVar(int64(0)),
	"log_bin":                  roVar(int64(0)),
	"binlog_format":            constVar("ROW"),
	"init_connect":             constVar(""),
	"server_id":                constVar(int64(1)),
	"event_scheduler":          constVar("OFF"),
	"group_concat_max_len":     constVar(int64(1024)),
	"div_precision_increment":  constVar(int64(4)),
	"innodb_lock_wait_timeout": constVar(int64(50)),
	"lock_wait_timeout":        constVar(int64(31536000)),
	"session_track_schema":     constVar(int64(1)),
	"profiling":                constVar(int64(0)),
	"big_tables":               constVar(int64(0)),
	"timestamp":                constVar(int64(0)),
	"last_insert_id":           {def: func(s *Session) any { return s.lastInsertID }},
	"identity":                 {def: func(s *Session) any { return s.lastInsertID }},
	"warning_count":            roVar(int64(0)),
	"error_count":              roVar(int64(0)),
	// Q4M's own variables (read-only here: this server has no mmap or compaction knobs).
	"queue_mmap_max":                       roVar(uint64(16 << 30)),
	"queue_use_concurrent_compaction":      roVar(int64(0)),
	"queue_concurrent_compaction_interval": roVar(int64(1048576)),
}

// sysVarValue returns the session value of a system variable.
func (s *Session) sysVarValue(name string) (any, bool) {
	name = strings.ToLower(name)
	if v, ok := s.vars[name]; ok {
		return v, true
	}
	sv, ok := sysVars[name]
	if !ok {
		return nil, false
	}
	return sv.def(s), true
}

func (env *evalEnv) variable(x *ast.VariableExpr) (any, error) {
	if !x.IsSystem {
		return env.s.userVars[strings.ToLower(x.Name)], nil
	}
	v, ok := env.s.sysVarValue(x.Name)
	if !ok {
		return nil, errorf(ErrCodeUnknownSysVar, "Unknown system variable '%s'", x.Name)
	}
	return v, nil
}

var charsetVars = []string{"character_set_client", "character_set_connection", "character_set_results"}

func (s *Session) set(st *ast.SetStmt, params []any) (*Result, error) {
	env := &evalEnv{s: s, params: params, clause: "field list"}
	for _, a := range st.Variables {
		name := strings.ToLower(a.Name)
		switch name {
		case ast.SetNames, ast.SetCharset:
			cs := "utf8mb4"
			if v, ok := a.Value.(*ast.ColumnNameExpr); ok {
				cs = v.Name.Name.O
			} else if a.Value != nil {
				if v, err := env.eval(a.Value); err == nil && v != nil {
					cs = toString(v)
				}
			}
			for _, n := range charsetVars {
				s.vars[n] = cs
			}
			continue
		}
		var val any
		if a.Value != nil {
			if cn, ok := a.Value.(*ast.ColumnNameExpr); ok { // SET x = ON / some_word
				val = cn.Name.Name.O
			} else if _, ok := a.Value.(*ast.DefaultExpr); ok {
				val = nil
			} else {
				v, err := env.eval(a.Value)
				if err != nil {
					return nil, err
				}
				val = v
			}
		}
		if !a.IsSystem {
			s.userVars[name] = val
			continue
		}
		sv, ok := sysVars[name]
		if !ok {
			return nil, errorf(ErrCodeUnknownSysVar, "Unknown system variable '%s'", a.Name)
		}
		if sv.readOnly {
			return nil, errorf(ErrCodeReadOnlyVar, "Variable '%s' is a read only variable", a.Name)
		}
		if name == "autocommit" {
			on, ok := parseBoolVar(val)
			if !ok {
				return nil, errorf(ErrCodeWrongValueForVar, "Variable 'autocommit' can't be set to the value of '%s'", toString(val))
			}
			s.autocommit = on
			continue
		}
		if a.IsGlobal {
			continue // accepted, not kept: nothing here reads global settings
		}
		if val == nil {
			delete(s.vars, name)
			continue
		}
		s.vars[name] = val
	}
	return &Result{}, nil
}

func parseBoolVar(v any) (bool, bool) {
	switch strings.ToLower(toString(v)) {
	case "1", "on", "true":
		return true, true
	case "0", "off", "false":
		return false, true
	}
	return false, false
}

// variableRows lists the variables matching a LIKE pattern.
func (s *Session) variableRows(pattern string, hasPattern bool) [][]any {
	names := make([]string, 0, len(sysVars))
	for n := range sysVars {
		if n == "names" || n == "last_insert_id" || n == "identity" || n == "timestamp" {
			continue
		}
		if hasPattern && !likeMatch(n, strings.ToLower(pattern), '\\') {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	rows := make([][]any, 0, len(names))
	for _, n := range names {
		v, _ := s.sysVarValue(n)
		str := toString(v)
		if n == "autocommit" {
			str = "OFF"
			if s.autocommit {
				str = "ON"
			}
		}
		if u, ok := v.(uint64); ok {
			str = strconv.FormatUint(u, 10)
		}
		rows = append(rows, []any{n, str})
	}
	return rows
}
