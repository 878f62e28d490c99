package sqlfront

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
)

// The statements mysqldump sends around its SELECTs, and those its dumps
// hold around their INSERTs, on queue tables. Q4M tables live in mysqld,
// which answers them for every engine; here they are accepted as a
// non-transactional, lock-free engine can: as no-ops after checking that
// the tables exist.

// lockTables accepts LOCK TABLES t READ [LOCAL] | WRITE, ...: the tables
// must exist (1146 otherwise), no lock is taken. Q4M's rows are handed out
// by queue_wait, which a table lock never held back either.
func (s *Session) lockTables(lt *ast.LockTablesStmt) (*Result, error) {
	for _, tl := range lt.TableLocks {
		if _, _, err := s.resolve(tl.Table); err != nil {
			return nil, err
		}
	}
	return &Result{}, nil
}

// flush accepts FLUSH TABLES [t, ...] [WITH READ LOCK] and FLUSH LOGS,
// PRIVILEGES, STATUS, HOSTS (mysqldump --lock-all-tables, --flush-logs,
// --flush-privileges; mysqladmin): every write is in the store when its
// statement returns, and there are no logs, grant tables or host caches.
func (s *Session) flush(f *ast.FlushStmt) (*Result, error) {
	switch f.Tp {
	case ast.FlushTables, ast.FlushLogs, ast.FlushPrivileges, ast.FlushStatus, ast.FlushHosts:
	default:
		return nil, notSupported("this FLUSH statement")
	}
	for _, tn := range f.Tables {
		if _, _, err := s.resolve(tn); err != nil {
			return nil, err
		}
	}
	if f.Tp == ast.FlushStatus && s.eng.cfg.FlushStatus != nil {
		s.eng.cfg.FlushStatus(s.connID) // the status counters (opsinfo.go)
	}
	return &Result{}, nil
}

// transaction handles BEGIN, COMMIT, ROLLBACK [TO SAVEPOINT], SAVEPOINT
// and RELEASE SAVEPOINT. Q4M is not transactional: every statement takes
// effect at once and no rollback undoes it; what is kept is the bookkeeping
// clients see: savepoints exist inside a transaction (BEGIN, or autocommit
// off) and naming one that does not is 1305, as on MySQL.
func (s *Session) transaction(stmt ast.StmtNode) (*Result, error) {
	switch x := stmt.(type) {
	case *ast.BeginStmt:
		s.inTxn, s.savepoints = true, nil
	case *ast.CommitStmt:
		s.inTxn, s.savepoints = false, nil
	case *ast.RollbackStmt:
		if x.SavepointName == "" {
			s.inTxn, s.savepoints = false, nil
			break
		}
		i := s.savepoint(x.SavepointName)
		if i < 0 {
			return nil, errorf(ErrCodeNoSuchSavepoint, "SAVEPOINT %s does not exist", x.SavepointName)
		}
		s.savepoints = s.savepoints[:i+1] // the later ones go, this one stays
	case *ast.SavepointStmt:
		if !s.inTxn && s.autocommit {
			break // the statement's own transaction ends with it
		}
		if i := s.savepoint(x.Name); i >= 0 {
			s.savepoints = append(s.savepoints[:i], s.savepoints[i+1:]...)
		}
		s.savepoints = append(s.savepoints, x.Name)
	case *ast.ReleaseSavepointStmt:
		i := s.savepoint(x.Name)
		if i < 0 {
			return nil, errorf(ErrCodeNoSuchSavepoint, "SAVEPOINT %s does not exist", x.Name)
		}
		s.savepoints = s.savepoints[:i]
	}
	return &Result{}, nil
}

// savepoint returns the index of the savepoint name, or -1.
func (s *Session) savepoint(name string) int {
	for i, n := range s.savepoints {
		if strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// keysNoop answers ALTER TABLE t DISABLE KEYS / ENABLE KEYS, which every
// dump wraps its INSERTs in: a queue table has no index, so, as MySQL
// answers for an engine without the option, it is a note (1031), not an
// error; with sql_notes off (as dumps set it) not even that.
func (s *Session) keysNoop(at *ast.AlterTableStmt) (*Result, bool, error) {
	for _, spec := range at.Specs {
		if spec.Tp != ast.AlterTableDisableKeys && spec.Tp != ast.AlterTableEnableKeys {
			return nil, false, nil
		}
	}
	t, _, err := s.resolve(at.Table)
	if err != nil {
		return nil, true, err
	}
	if v, _ := s.sysVarValue("sql_notes"); !truth(v) {
		return &Result{}, true, nil
	}
	s.warnings = [][]any{{"Note", int64(ErrCodeTableNoOption), "Table storage engine for '" + t.Name() + "' doesn't have this option"}}
	return &Result{Warnings: 1}, true, nil
}
