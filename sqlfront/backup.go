package sqlfront

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/q4mproxy/q4mproxy/queue"
)

// queueBackup is SELECT queue_backup('name'): an online, consistent copy
// of the whole store (every queue table of every database) in
// Config.BackupDir/name/store, a data directory a server can be started on
// (--data-dir Config.BackupDir/name). It returns that directory.
//
// The name is a name, not a path (letters, digits, '_', '-' and '.', not
// starting with '.', at most 64 bytes): a SQL user chooses what the copy is
// called, the operator where copies go, as with MySQL's secure_file_priv.
// An existing name is 1086, as SELECT ... INTO OUTFILE answers for an
// existing file, and is never overwritten.
func (s *Session) queueBackup(env *evalEnv, fc *ast.FuncCallExpr) (any, error) {
	args, err := env.args(fc)
	if err != nil {
		return nil, err
	}
	if s.eng.cfg.BackupDir == "" {
		return nil, notSupported("queue_backup() without a backup directory (--backup-dir)")
	}
	name, ok := args[0].(string)
	if b, isBytes := args[0].([]byte); isBytes {
		name, ok = string(b), true
	}
	if !ok || !validBackupName(name) {
		return nil, errorf(ErrCodeWrongArguments, "Incorrect arguments to queue_backup")
	}
	dir := filepath.Join(s.eng.cfg.BackupDir, name)
	if _, err := os.Lstat(dir); err == nil {
		return nil, errorf(ErrCodeFileExists, "File '%s' already exists", dir)
	}
	cp, ok := s.eng.db.(queue.Checkpointer)
	if !ok {
		return nil, notSupported("queue_backup() on this storage backend")
	}
	err = cp.Checkpoint(filepath.Join(dir, "store"))
	switch {
	case err == nil:
		return dir, nil
	case errors.Is(err, fs.ErrExist): // another session took the name meanwhile
		return nil, errorf(ErrCodeFileExists, "File '%s' already exists", dir)
	}
	_ = os.Remove(dir) // the directory the failed copy created, if empty
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return nil, errorf(ErrCodeCantCreateFile, "Can't create file '%s' (Errcode: %d - %s)", dir, int(errno), errno.Error())
	}
	return nil, err
}

// validBackupName reports whether name may name a backup.
func validBackupName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
